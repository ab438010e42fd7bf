"""The internal verify API (/v1): parse, one domain call, serialise."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from gateway import breakers, methods, operators, verifications
from gateway.auth import Scope, current_caller, guard, requires
from gateway.errors import InvalidRequest, NotFound
from gateway.schemas import parse_code, parse_confirm, parse_proof, parse_resend, parse_start
from gateway.services import services

bp = Blueprint("api", __name__, url_prefix="/v1")


guard(bp)  # every route declares its scope; one that declares none needs admin


def _json_body(optional: bool = False) -> Any:
    if optional and not request.get_data():
        return None
    body = request.get_json(silent=True)
    if body is None:
        raise InvalidRequest("The body must be valid JSON with Content-Type: application/json.")
    return body


@bp.post("/verifications")
@requires(Scope.VERIFY)
def start() -> tuple[Response, int, dict[str, str]]:
    """Start a verification."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 255:
        raise InvalidRequest("Idempotency-Key must be 1 to 255 characters.")
    verification, created = verifications.start(services(), parse_start(_json_body()), key)
    # The read route's path, spelled out: url_for cost a start as much as its JSON answer (an id is URL-safe).
    headers = {"Location": f"{request.script_root}{bp.url_prefix}/verifications/{verification.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return jsonify(verification.to_json()), 201, headers


@bp.get("/verifications/<verification_id>")
@requires(Scope.VERIFY)
def read(verification_id: str) -> Response:
    """Read a verification; ?wait=N blocks until it leaves pending (N <= 30)."""
    raw = request.args.get("wait")
    if raw is None:
        return jsonify(verifications.get(services(), verification_id).to_json())
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 30:  # isdigit alone takes "²", which int() refuses
        raise InvalidRequest("'wait' must be a whole number of seconds from 0 to 30.")
    return jsonify(verifications.wait(services(), verification_id, int(raw)).to_json())


@bp.post("/verifications/<verification_id>/check")
@requires(Scope.VERIFY)
def check(verification_id: str) -> Response:
    """Check a code."""
    verification, valid = verifications.check(services(), verification_id, parse_code(_json_body()))
    return jsonify({**verification.to_json(), "valid": valid})


@bp.post("/verifications/<verification_id>/cancel")
@requires(Scope.VERIFY)
def cancel(verification_id: str) -> Response:
    """Cancel a pending verification."""
    return jsonify(verifications.cancel(services(), verification_id).to_json())


@bp.post("/verifications/<verification_id>/resend")
@requires(Scope.VERIFY)
def resend(verification_id: str) -> Response:
    """Start a new attempt with a new code."""
    channel = parse_resend(_json_body(optional=True))
    return jsonify(verifications.resend(services(), verification_id, channel).to_json())


@bp.post("/users/<user_id>/totp")
@requires(Scope.VERIFY)
def enrol_totp(user_id: str) -> tuple[Response, int]:
    """Start enrolling an authenticator app (pending until confirmed); the secret is shown this once."""
    return jsonify(methods.enrol_totp(services(), user_id).to_json()), 201


@bp.post("/users/<user_id>/totp/confirm")
@requires(Scope.VERIFY)
def confirm_totp(user_id: str) -> Response:
    """Activate the pending authenticator with its first code; the recovery codes are shown this once."""
    confirmation = methods.confirm_totp(services(), user_id, parse_confirm(_json_body()), _admin())
    if confirmation.how == "admin":
        operators.record(services(), current_caller(), "replace_authenticator", user_id, "without proof")
    return jsonify(confirmation.to_json())


@bp.post("/users/<user_id>/recovery_codes")
@requires(Scope.VERIFY)
def regenerate_recovery_codes(user_id: str) -> Response:
    """A new set of recovery codes (the old set stops working); shown this once."""
    proof = parse_proof(_json_body(optional=True))
    codes, how = methods.regenerate_recovery_codes(services(), user_id, proof, _admin())
    if how == "admin":
        operators.record(services(), current_caller(), "regenerate_recovery_codes", user_id, "without proof")
    return jsonify(recovery_codes=codes)


def _admin() -> bool:
    """Whether the caller holds the admin scope: it changes a user's methods without proof (audited)."""
    return current_caller().may(Scope.ADMIN)


@bp.delete("/users/<user_id>")
@requires(Scope.ADMIN)
def reset_user(user_id: str) -> tuple[str, int]:
    """Remove every method kept for a user (the lost-phone reset)."""
    removed = methods.reset_user(services(), user_id)
    operators.record(services(), current_caller(), "reset_user", user_id, f"{removed} method(s) removed")
    return "", 204


@bp.get("/breakers")
@requires(Scope.ADMIN)
def list_breakers() -> Response:
    """The SMS-pumping breakers tripped now."""
    return jsonify(breakers=[breakers.to_json(b) for b in breakers.tripped(services())])


@bp.delete("/breakers/<scope>/<breaker_id>")
@requires(Scope.ADMIN)
def reset_breaker(scope: str, breaker_id: str) -> tuple[str, int]:
    """Close a tripped breaker at once (audited)."""
    caller = current_caller()
    if not breakers.reset(services(), scope, breaker_id, caller.key_id):
        raise NotFound(f"No {scope} breaker {breaker_id} is tripped.")
    operators.record(services(), caller, "reset_breaker", f"{scope}:{breaker_id}")
    return "", 204
