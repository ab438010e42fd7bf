"""Operations endpoints: liveness, readiness, metrics (no API key)."""
from __future__ import annotations

import logging

import redis
from flask import Blueprint, Response, jsonify

from gateway import metrics
from gateway.errors import error_response
from gateway.services import services

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz() -> Response:
    """200 while the process runs."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """200 when Redis answers and the queue is reachable."""
    svc = services()
    try:
        svc.redis.ping()
        svc.queue.count  # noqa: B018 - touches the queue's key
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        # The exception names Redis's host and port: for the operator's log, not for any caller.
        log.warning("not ready: %s", exc)
        return error_response("unavailable", "Redis is not answering.", 503, 5)
    return jsonify(status="ready")


@bp.get("/metrics")
def prometheus() -> Response:
    """Prometheus text format."""
    return Response(metrics.render(services()), mimetype="text/plain; version=0.0.4")
