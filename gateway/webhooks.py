"""Twilio webhooks: signature checking (fail closed), callback URLs, TwiML answers."""
from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import Response, current_app, request
from twilio.request_validator import RequestValidator

from gateway.errors import error_response
from gateway.services import services

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


def public_url(endpoint: str, **values: object) -> str:
    """The absolute URL of a gateway endpoint as Twilio reaches it (PUBLIC_BASE_URL)."""
    # Jobs run with an app context only, where url_for needs SERVER_NAME; the host comes
    # from PUBLIC_BASE_URL anyway, so build the path from a map bound to a placeholder.
    path = current_app.url_map.bind("gateway").build(endpoint, values)
    return services().settings.public_base_url + path


def _signed_url() -> str:
    # request.url decodes the query string, which breaks signatures (wire reference §6):
    # rebuild it from the public base, the path and the raw query bytes.
    url = services().settings.public_base_url + request.script_root + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    return url


def _valid(validator: RequestValidator, url: str, signature: str) -> bool:
    """Whether Twilio signed this request: first over the URL exactly as we rebuilt it (one
    signature, the library's compute_signature, compared in constant time), else as twilio's
    validate() does it, over the URL both with and without its port."""
    # validate() always computes both port forms (twilio-python request_validator.py: "check
    # signature of uri with and without port, since sig generation on back end is inconsistent");
    # the exact URL is one of the two, so this accepts nothing validate() refuses, and a callback
    # signed over the URL we were given costs one HMAC instead of two (~0.24 M instructions less).
    if hmac.compare_digest(validator.compute_signature(url, request.form), signature):
        return True
    return bool(validator.validate(url, request.form, signature))


def twilio_signed(view: Callable[P, R]) -> Callable[P, R | Response]:
    """Refuse (403) any request without a valid X-Twilio-Signature; no token, no entry."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        token = services().settings.twilio_auth_token
        signature = request.headers.get("X-Twilio-Signature", "")
        if not token or not signature or not _valid(RequestValidator(token), _signed_url(), signature):
            log.warning("rejected unsigned or forged webhook %s", request.path)
            return error_response("forbidden", "Invalid or missing X-Twilio-Signature.", 403)
        return view(*args, **kwargs)

    return wrapper


def twiml(document: object) -> Response:
    """A TwiML answer (VoiceResponse or MessagingResponse) as text/xml."""
    return Response(str(document), mimetype="text/xml")
