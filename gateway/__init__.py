"""The verification gateway: create_app() builds the Flask app and its services."""
from __future__ import annotations

import time

from flask import Flask, Response, g, request

from config import Settings, load_settings


def create_app(config: Settings | None = None) -> Flask:
    """Build the app from settings (the environment when none are given)."""
    import ivr
    import sms
    from gateway import admin_api, api, console, metrics, ops, verify_v2
    from gateway.durability import check_redis
    from gateway.errors import register_error_handlers
    from gateway.logs import configure_logging
    from gateway.services import build_services

    settings = config or load_settings()
    configure_logging(settings.log_level)
    app = Flask(__name__, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, TESTING=settings.testing)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["gateway"] = build_services(settings)
    svc = app.extensions["gateway"]
    check_redis(svc.redis)
    if svc.queue.connection is not svc.redis:  # the queue's own Redis keeps every scheduled timer
        check_redis(svc.queue.connection, "RQ_REDIS_URL")
    register_error_handlers(app)
    for blueprint in (api.bp, admin_api.bp, console.bp, verify_v2.bp, ops.bp, sms.bp, ivr.bp):
        app.register_blueprint(blueprint)

    @app.before_request
    def _clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        if "started" in g:
            metrics.REQUEST_LATENCY.labels(
                request.method, request.url_rule.rule if request.url_rule else "unmatched", response.status_code
            ).observe(time.perf_counter() - g.started)
        return response

    return app
