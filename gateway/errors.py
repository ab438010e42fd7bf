"""Domain exceptions with stable codes, and the one JSON error shape."""
from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)
# An API with an error shape of its own (/v2 speaks Twilio's), by path prefix: a URL that
# matches no route belongs to no blueprint, so only the app's handler sees it.
_SHAPES: dict[str, Callable[[HTTPException], Response]] = {}


def register_shape(prefix: str, render: Callable[[HTTPException], Response]) -> None:
    """Answer routing failures under a path prefix with another API's error shape."""
    _SHAPES[prefix] = render


class GatewayError(Exception):
    """Base of every error the API reports; carries a stable code and an HTTP status."""

    code = "internal_error"
    http_status = 500
    retry_after: int | None = None
    reason: str | None = None  # a machine-readable why, for abuse refusals (contract §6)

    def __init__(self, message: str, *, retry_after: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retry_after is not None:
            self.retry_after = retry_after
        self.reason = reason


class InvalidRequest(GatewayError):
    code, http_status = "invalid_request", 400


class InvalidPhoneNumber(GatewayError):
    code, http_status = "invalid_phone_number", 400


class TotpNotEnrolled(GatewayError):
    code, http_status = "totp_not_enrolled", 400


class NoRecoveryCodes(GatewayError):
    code, http_status = "no_recovery_codes", 400


class Unauthorized(GatewayError):
    code, http_status = "unauthorized", 401


class Forbidden(GatewayError):
    code, http_status = "forbidden", 403


class DestinationBlocked(GatewayError):
    code, http_status = "destination_blocked", 403


class ProofRequired(GatewayError):
    code, http_status = "proof_required", 403


class NotFound(GatewayError):
    code, http_status = "not_found", 404


class IdempotencyConflict(GatewayError):
    code, http_status = "idempotency_conflict", 409


class NotPending(GatewayError):
    code, http_status = "not_pending", 409


class NoPendingAuthenticator(GatewayError):
    code, http_status = "no_pending_authenticator", 409


class NoActiveMethod(GatewayError):
    code, http_status = "no_active_method", 409


class RateLimited(GatewayError):
    code, http_status = "rate_limited", 429


class Unavailable(GatewayError):
    code, http_status, retry_after = "unavailable", 503, 5


class Unconfirmed(Unavailable):
    """A change applied on the primary that fewer than REDIS_WAIT_REPLICAS replicas confirmed in time."""


_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "invalid_request",
    429: "rate_limited",
}


def error_response(
    code: str, message: str, status: int, retry_after: int | None = None, reason: str | None = None
) -> Response:
    """The one error body: {"error": {"code", "message"}}, plus "reason" for abuse refusals."""
    body = {"code": code, "message": message, **({"reason": reason} if reason else {})}
    response = jsonify(error=body)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def register_error_handlers(app: Flask) -> None:
    """Turn every failure into the JSON error shape, never a page or a trace."""

    @app.errorhandler(GatewayError)
    def _domain(exc: GatewayError) -> Response:
        return error_response(exc.code, exc.message, exc.http_status, exc.retry_after, exc.reason)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = "The request body is too large."
        render = next((r for prefix, r in _SHAPES.items() if request.path.startswith(prefix)), None)
        response = render(exc) if render else error_response(_HTTP_CODES.get(status, "http_error"), message, status)
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    def _redis_down(exc: Exception) -> Response:
        log.warning("redis unavailable: %s", exc)
        return error_response("unavailable", "The gateway's storage is unavailable; try again shortly.", 503, 5)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response("internal_error", "An internal error occurred.", 500)
