"""Twilio's validations for Create Message / Create Call / Update Call form parameters."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from werkzeug.datastructures import MultiDict

from . import numbering
from .config import SimulatorConfig
from .errors import TwilioError, twilio_error

CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
MACHINE_DETECTION = ("Enable", "DetectMessageEnd")


@dataclass
class MessageRequest:
    """A validated Create Message request."""

    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    media_urls: list[str]


@dataclass
class CallRequest:
    """A validated Create Call request."""

    to: str
    from_: str
    url: str | None
    method: str
    twiml: str | None
    fallback_url: str | None
    fallback_method: str
    status_callback: str | None
    status_callback_method: str
    events: tuple[str, ...]
    timeout: int
    machine_detection: str | None
    async_amd: bool
    async_amd_callback: str | None
    async_amd_callback_method: str
    send_digits: str | None


def is_valid_url(value: str, allow_underscore_host: bool = True) -> bool:
    """Absolute http(s) URL with a host, at most 4000 characters (Twilio's webhook URL rules)."""
    if not value or len(value) > 4000 or any(ch.isspace() for ch in value):
        return False
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    return allow_underscore_host or "_" not in parts.hostname


def _get(form: MultiDict, name: str) -> str | None:
    """A single form value; empty strings count as absent (Twilio treats them so)."""
    value = form.get(name)
    return value if value not in (None, "") else None


def _method(form: MultiDict, name: str) -> str:
    """An HTTP-method parameter (GET/POST, default POST); anything else is a 400."""
    value = (_get(form, name) or "POST").upper()
    if value not in ("GET", "POST"):
        raise twilio_error(20001, message=f"{name} must be GET or POST, got {form.get(name)!r}")
    return value


def validate_message(form: MultiDict, config: SimulatorConfig) -> MessageRequest:
    """Check a Create Message form like Twilio does; raises TwilioError on the first problem."""
    to = _get(form, "To")
    if to is None:
        raise twilio_error(21604)
    if not numbering.is_valid_e164(to):
        raise twilio_error(21211, to)
    from_ = _get(form, "From")
    service = _get(form, "MessagingServiceSid")
    if from_ is None and service is None:
        raise twilio_error(21603)
    if service is not None and service not in config.messaging_services:
        raise twilio_error(21701, service)
    if from_ is not None and from_ not in config.numbers:
        raise twilio_error(21606, from_)
    if from_ is not None and from_ == to:
        raise twilio_error(21266, to)
    body = form.get("Body") or ""
    media = [u for u in form.getlist("MediaUrl") if u]
    if not body and not media and _get(form, "ContentSid") is None:
        raise twilio_error(21602)
    if len(body) > 1600:
        raise twilio_error(21617)
    if len(media) > 10:
        raise twilio_error(21623)
    if any(not is_valid_url(u) for u in media):
        raise twilio_error(21620)
    callback = _get(form, "StatusCallback")
    if callback is not None and not is_valid_url(callback, allow_underscore_host=False):
        raise twilio_error(21609, callback)
    validity = _get(form, "ValidityPeriod")
    if validity is not None:
        try:
            seconds = int(validity)
        except ValueError:
            raise twilio_error(21624) from None
        if not 1 <= seconds <= 36000:
            raise twilio_error(21624)
    return MessageRequest(to=to, from_=from_, messaging_service_sid=service, body=body,
                          status_callback=callback, media_urls=media)


def validate_call(form: MultiDict, config: SimulatorConfig) -> CallRequest:
    """Check a Create Call form like Twilio does; raises TwilioError on the first problem."""
    to = _get(form, "To")
    if to is None:
        raise twilio_error(21201)
    if not numbering.is_valid_e164(to):
        raise twilio_error(21211, to)
    from_ = _get(form, "From")
    if from_ is None:
        raise twilio_error(21213)
    if from_ not in config.numbers:
        if not numbering.E164_RE.match(from_):
            raise twilio_error(21212, from_)
        raise twilio_error(21210, from_)
    url, twiml, app = _get(form, "Url"), _get(form, "Twiml"), _get(form, "ApplicationSid")
    if app is not None and url is None and twiml is None:
        raise twilio_error(21218, message=f"ApplicationSid {app} is not known to the simulator")
    if url is None and twiml is None:
        raise twilio_error(21205, message="Url parameter is required (or Twiml / ApplicationSid).")
    if url is not None:
        twiml = None  # Twilio ignores Twiml when Url is also given
        if not is_valid_url(url):
            raise twilio_error(21205, message=f"Url is not a valid URL: {url}")
    elif twiml is not None and len(twiml) > 4000:
        raise twilio_error(20001, message="Twiml must be at most 4000 characters")
    fallback = _get(form, "FallbackUrl")
    if fallback is not None and not is_valid_url(fallback):
        raise twilio_error(21205, message=f"FallbackUrl is not a valid URL: {fallback}")
    callback = _get(form, "StatusCallback")
    if callback is not None and not is_valid_url(callback, allow_underscore_host=False):
        raise twilio_error(21609, callback)
    events = tuple(e.strip() for e in form.getlist("StatusCallbackEvent") if e.strip())
    bad = [e for e in events if e not in CALL_EVENTS]
    if bad:
        raise twilio_error(20001, message=f"StatusCallbackEvent must be among {', '.join(CALL_EVENTS)}: {bad[0]}")
    timeout = 60
    if _get(form, "Timeout") is not None:
        try:
            timeout = int(form["Timeout"])
        except ValueError:
            raise twilio_error(20001, message=f"Timeout must be an integer: {form['Timeout']!r}") from None
        if not 1 <= timeout <= 600:
            raise twilio_error(20001, message=f"Timeout must be between 1 and 600 seconds, got {timeout}")
    amd = _get(form, "MachineDetection")
    if amd is not None and amd not in MACHINE_DETECTION:
        raise twilio_error(20001, message=f"MachineDetection must be Enable or DetectMessageEnd, got {amd!r}")
    async_amd = (_get(form, "AsyncAmd") or "false").lower()
    if async_amd not in ("true", "false"):
        raise twilio_error(20001, message="AsyncAmd must be true or false")
    amd_callback = _get(form, "AsyncAmdStatusCallback")
    if amd_callback is not None and not is_valid_url(amd_callback):
        raise twilio_error(20001, message=f"AsyncAmdStatusCallback is not a valid URL: {amd_callback}")
    send_digits = _get(form, "SendDigits")
    if send_digits is not None and (len(send_digits) > 32 or any(c not in "0123456789ABCD#*wW" for c in send_digits)):
        raise twilio_error(20001, message="SendDigits may hold at most 32 of 0-9 A-D # * w W")
    if send_digits is not None:
        amd = None  # Twilio ignores MachineDetection when SendDigits is set
    return CallRequest(
        to=to, from_=from_, url=url, method=_method(form, "Method"), twiml=twiml,
        fallback_url=fallback, fallback_method=_method(form, "FallbackMethod"),
        status_callback=callback, status_callback_method=_method(form, "StatusCallbackMethod"),
        events=events or ("completed",), timeout=timeout, machine_detection=amd,
        async_amd=async_amd == "true", async_amd_callback=amd_callback,
        async_amd_callback_method=_method(form, "AsyncAmdStatusCallbackMethod"), send_digits=send_digits)


def check_account(path_sid: str, config: SimulatorConfig) -> None:
    """The AccountSid in the path must be the simulator's account (else 20404)."""
    if path_sid != config.account_sid:
        raise TwilioError(code=20404, status=404,
                          message=f"The requested resource /2010-04-01/Accounts/{path_sid} was not found")
