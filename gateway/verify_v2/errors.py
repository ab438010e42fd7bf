"""Twilio's error body for /v2: {code, message, more_info, status}, and the map from the gateway's errors."""
from __future__ import annotations

import logging

import redis
from flask import Blueprint, Response, jsonify
from werkzeug.exceptions import HTTPException

from gateway.errors import (
    DestinationBlocked, GatewayError, InvalidPhoneNumber, InvalidRequest, NotFound, NotPending, RateLimited,
    TotpNotEnrolled, Unauthorized, register_shape,
)

log = logging.getLogger(__name__)

# Codes of https://www.twilio.com/docs/api/errors/<code> (reference: twilio-verify-compat.md §4).
INVALID_PARAMETER = 60200
MAX_CHECKS = 60202
MAX_SENDS = 60203
LANDLINE = 60205
CHANNEL_DISABLED = 60223
FRAUD_BLOCKED = 60410
GEO_BLOCKED = 60605
NOT_FOUND = 20404
TOO_MANY = 20429
# The gateway's abuse refusals (reason) in Twilio's terms: sends to one entity are 60203, a
# suspended range is Fraud Guard's 60410, the rest (country, global, budget) 20429.
_RATE_CODES = {
    "max_sends": (MAX_SENDS, 429), "number": (MAX_SENDS, 429), "user": (MAX_SENDS, 429),
    "client_ip": (MAX_SENDS, 429), "fraud_suspected": (FRAUD_BLOCKED, 403),
}
AUTHENTICATE = 20003


class TwilioError(GatewayError):
    """An error answered with Twilio's code for it."""

    def __init__(self, twilio_code: int, http_status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.twilio_code = twilio_code
        self.http_status = http_status


def invalid(parameter: str, why: str = "") -> TwilioError:
    """400/60200 naming the parameter, as Twilio's message does ("Invalid parameter: To")."""
    return TwilioError(INVALID_PARAMETER, 400, f"Invalid parameter: {parameter}" + (f" ({why})" if why else ""))


def not_found(what: str) -> TwilioError:
    """404/20404: unknown, another account's, or (Verify's soft delete) no longer pending."""
    return TwilioError(NOT_FOUND, 404, f"The requested resource {what} was not found")


def _translate(exc: GatewayError) -> tuple[int, int]:
    """(Twilio code, HTTP status) of a gateway error raised under /v2."""
    if isinstance(exc, TwilioError):
        return exc.twilio_code, exc.http_status
    if isinstance(exc, (InvalidRequest, InvalidPhoneNumber, TotpNotEnrolled)):
        return INVALID_PARAMETER, 400
    if isinstance(exc, Unauthorized):
        return AUTHENTICATE, 401
    if isinstance(exc, (NotFound, NotPending)):
        return NOT_FOUND, 404
    if isinstance(exc, RateLimited):
        return _RATE_CODES.get(exc.reason or "max_sends", (TOO_MANY, 429))
    if isinstance(exc, DestinationBlocked):
        return (GEO_BLOCKED, 403) if exc.message.startswith("Destination country") else (FRAUD_BLOCKED, 403)
    return exc.http_status * 100 if exc.http_status >= 500 else exc.http_status, exc.http_status


def twilio_error(code: int, message: str, status: int, retry_after: int | None = None) -> Response:
    """The body the twilio SDKs read into TwilioRestException (never `type` with `title`: RFC 9457)."""
    response = jsonify(code=code, message=message, more_info=f"https://www.twilio.com/docs/errors/{code}",
                       status=status)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
    return response


def register(bp: Blueprint) -> None:
    """Every failure under /v2 in Twilio's shape."""

    @bp.errorhandler(GatewayError)
    def _domain(exc: GatewayError) -> Response:
        code, status = _translate(exc)
        return twilio_error(code, exc.message, status, exc.retry_after)

    @bp.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        return twilio_error(20004 if status == 405 else status, exc.description or exc.name, status)

    register_shape(f"{bp.url_prefix}/", _http)

    @bp.errorhandler(redis.exceptions.ConnectionError)
    @bp.errorhandler(redis.exceptions.TimeoutError)
    def _redis_down(exc: Exception) -> Response:
        log.warning("redis unavailable: %s", exc)
        return twilio_error(20503, "The gateway's storage is unavailable; try again shortly.", 503, 5)

    @bp.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return twilio_error(20500, "An internal error occurred.", 500)
