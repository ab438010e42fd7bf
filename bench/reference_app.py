"""The bench's yardstick: bare Flask + Redis, one Lua call per request.

POST /start {"to", "code"} stores a keyed hash of the code (the load generator plays the
SMS, so no code is ever answered in clear); POST /check {"id", "code"} compares it. Served
by the Procfile's gunicorn line with `bench.reference_app:create_app()` as the app.
Environment: REDIS_URL, GATEWAY_API_KEYS, GATEWAY_SECRET_KEY (read here directly: this
is not the gateway, and config/ would bring the gateway's validation along).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time

import redis
from flask import Flask, Response, jsonify, request

START = """
local count = redis.call('INCR', KEYS[2])
if count == 1 then redis.call('EXPIRE', KEYS[2], ARGV[6]) end
if count > tonumber(ARGV[5]) then return 'rate_limited' end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'to', ARGV[2], 'status', 'pending', 'code', ARGV[3],
           'created', ARGV[4], 'fails', 0)
redis.call('EXPIRE', KEYS[1], 3900)
return 'created'
"""

CHECK = """
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then return 'finished' end
if redis.call('HGET', KEYS[1], 'code') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'status', 'approved', 'code', '')
  return 'approved'
end
if redis.call('HINCRBY', KEYS[1], 'fails', 1) >= 5 then
  redis.call('HSET', KEYS[1], 'status', 'denied', 'code', '')
  return 'denied'
end
return 'pending'
"""


def create_app() -> Flask:
    """The reference app."""
    app = Flask(__name__)
    connection = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"))
    start_script, check_script = connection.register_script(START), connection.register_script(CHECK)
    keys = [k.strip().encode() for k in os.environ.get("GATEWAY_API_KEYS", "").split(",") if k.strip()]
    secret = hmac.new(os.environ.get("GATEWAY_SECRET_KEY", "").encode(), b"code-hmac", hashlib.sha256).digest()

    def digest(verification_id: str, code: str) -> str:
        return hmac.new(secret, f"{verification_id}:{code}".encode(), hashlib.sha256).hexdigest()

    @app.before_request
    def authorise() -> tuple[Response, int] | None:
        if request.path == "/healthz":
            return None
        given = request.headers.get("Authorization", "").partition(" ")[2].strip().encode()
        if not any(hmac.compare_digest(given, key) for key in keys):
            return jsonify({"error": "unauthorized"}), 401
        return None

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"ok": True})

    @app.post("/start")
    def start() -> tuple[Response, int]:
        body = request.get_json(silent=True) or {}
        to, code = body.get("to"), body.get("code")
        if not isinstance(to, str) or not isinstance(code, str):
            return jsonify({"error": "to and code are required"}), 400
        verification_id = "vf_" + secrets.token_hex(16)
        kind = start_script(
            keys=[f"ref:vf:{verification_id}", f"ref:rate:{to}"],
            args=[verification_id, to, digest(verification_id, code), f"{time.time():.6f}", 100000, 600],
        )
        if kind != b"created":
            return jsonify({"error": kind.decode()}), 429
        return jsonify({"id": verification_id, "status": "pending"}), 201

    @app.post("/check")
    def check() -> tuple[Response, int]:
        body = request.get_json(silent=True) or {}
        verification_id, code = body.get("id"), body.get("code")
        if not isinstance(verification_id, str) or not isinstance(code, str):
            return jsonify({"error": "id and code are required"}), 400
        status = check_script(keys=[f"ref:vf:{verification_id}"], args=[digest(verification_id, code)]).decode()
        return jsonify({"id": verification_id, "status": status, "valid": status == "approved"}), 200

    return app
