"""The internal verify API (/v1): parse, one domain call, serialise."""
from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from gateway import methods, verifications
from gateway.errors import InvalidRequest, Unauthorized
from gateway.schemas import parse_code, parse_resend, parse_start
from gateway.services import services

bp = Blueprint("api", __name__, url_prefix="/v1")


@bp.before_request
def require_api_key() -> None:
    """Every /v1 request needs a configured key; compared in constant time."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    keys = services().settings.api_keys
    ok = False
    for key in keys:  # no early exit: the time taken does not say which key was close
        ok |= scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode())
    if not ok:
        raise Unauthorized("A valid API key is required: Authorization: Bearer <key>.")


def _json_body(optional: bool = False) -> Any:
    if optional and not request.get_data():
        return None
    body = request.get_json(silent=True)
    if body is None:
        raise InvalidRequest("The body must be valid JSON with Content-Type: application/json.")
    return body


@bp.post("/verifications")
def start() -> tuple[Response, int, dict[str, str]]:
    """Start a verification."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 255:
        raise InvalidRequest("Idempotency-Key must be 1 to 255 characters.")
    verification, created = verifications.start(services(), parse_start(_json_body()), key)
    headers = {"Location": url_for("api.read", verification_id=verification.id)}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return jsonify(verification.to_json()), 201, headers


@bp.get("/verifications/<verification_id>")
def read(verification_id: str) -> Response:
    """Read a verification; ?wait=N blocks until it leaves pending (N <= 30)."""
    raw = request.args.get("wait")
    if raw is None:
        return jsonify(verifications.get(services(), verification_id).to_json())
    if not raw.isdigit() or int(raw) > 30:
        raise InvalidRequest("'wait' must be a whole number of seconds from 0 to 30.")
    return jsonify(verifications.wait(services(), verification_id, int(raw)).to_json())


@bp.post("/verifications/<verification_id>/check")
def check(verification_id: str) -> Response:
    """Check a code."""
    verification, valid = verifications.check(services(), verification_id, parse_code(_json_body()))
    return jsonify({**verification.to_json(), "valid": valid})


@bp.post("/verifications/<verification_id>/cancel")
def cancel(verification_id: str) -> Response:
    """Cancel a pending verification."""
    return jsonify(verifications.cancel(services(), verification_id).to_json())


@bp.post("/verifications/<verification_id>/resend")
def resend(verification_id: str) -> Response:
    """Start a new attempt with a new code."""
    channel = parse_resend(_json_body(optional=True))
    return jsonify(verifications.resend(services(), verification_id, channel).to_json())


@bp.post("/users/<user_id>/totp")
def enrol_totp(user_id: str) -> tuple[Response, int]:
    """Enrol an authenticator app; the secret is shown this once."""
    return jsonify(methods.enrol_totp(services(), user_id)), 201


@bp.delete("/users/<user_id>")
def reset_user(user_id: str) -> tuple[str, int]:
    """Remove every method kept for a user (the lost-phone reset)."""
    methods.reset_user(services(), user_id)
    return "", 204
