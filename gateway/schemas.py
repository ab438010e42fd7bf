"""Validation of the API's JSON bodies into dataclasses."""
from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.errors import InvalidRequest
from gateway.i18n import LOCALES
from gateway.models import Channel, CodeOptions

IVR_MODES = ("confirm", "code")
START_FIELDS = {"to", "country", "channel", "fallback", "user_id", "locale", "ivr_mode", "client_ip", "user"}
USER_FIELDS = {"first_name", "last_name", "email"}
# ASCII only: look-alike letters of other scripts (a Cyrillic "а" for "a") would make a second
# user that reads the same; \Z, because $ also matches before a final newline.
USER_ID = re.compile(r"\A[A-Za-z0-9._@+\-]{1,128}\Z")
CODE = re.compile(r"\A[0-9]{4,10}\Z")
EMAIL = re.compile(r"\A[^@\s]{1,64}@[^@\s]{1,255}\Z")
# A recovery code as shown (two groups of five base32 characters), in either case, hyphen optional.
RECOVERY_CODE = re.compile(r"\A[A-Za-z2-7]{5}-?[A-Za-z2-7]{5}\Z")
APP_CODE = re.compile(r"\A[0-9]{6}\Z")
VERIFICATION_ID = re.compile(r"\A[A-Za-z0-9_\-]{1,64}\Z")


@dataclass(frozen=True)
class StartRequest:
    """A validated POST /v1/verifications body."""

    to: str
    country: str | None = None
    channel: str = "auto"
    fallback: tuple[Channel, ...] | None = None
    user_id: str | None = None
    locale: str = "en"
    ivr_mode: str = "confirm"
    client_ip: str | None = None
    user: dict[str, str] = field(default_factory=dict)
    options: CodeOptions = field(default_factory=CodeOptions)

    def fingerprint(self) -> str:
        """A hash of the request, to tell a repeat from a different body."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=list).encode()).hexdigest()


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.")
    return body


def _optional_str(body: dict[str, Any], name: str, limit: int = 128) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidRequest(f"'{name}' must be a non-empty string of at most {limit} characters.")
    return value


def _channel(value: Any, name: str, allow_auto: bool) -> str:
    allowed = [c.value for c in Channel] + (["auto"] if allow_auto else [])
    if not isinstance(value, str) or value not in allowed:
        raise InvalidRequest(f"'{name}' must be one of {', '.join(allowed)}.")
    return value


def parse_start(body: Any) -> StartRequest:
    """Validate a start request; raise InvalidRequest naming the bad field."""
    body = _object(body)
    unknown = set(body) - START_FIELDS
    if unknown:
        raise InvalidRequest(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    if "to" not in body:
        raise InvalidRequest("'to' is required.")
    if not isinstance(body["to"], str):
        raise InvalidRequest("'to' must be a string.")
    country = _optional_str(body, "country", 2)
    fallback = None
    if body.get("fallback") is not None:
        items = body["fallback"]
        if not isinstance(items, list) or len(items) > 4:
            raise InvalidRequest("'fallback' must be a list of at most 4 channels.")
        fallback = tuple(Channel(_channel(c, "fallback", False)) for c in items)
    user_id = _optional_str(body, "user_id")
    if user_id is not None and not USER_ID.match(user_id):
        raise InvalidRequest("'user_id' may use the ASCII letters, digits and . _ @ + - only.")
    locale = body.get("locale", "en")
    if locale not in LOCALES:
        raise InvalidRequest(f"'locale' must be one of {', '.join(LOCALES)}.")
    ivr_mode = body.get("ivr_mode", "confirm")
    if ivr_mode not in IVR_MODES:
        raise InvalidRequest(f"'ivr_mode' must be one of {', '.join(IVR_MODES)}.")
    client_ip = _optional_str(body, "client_ip", 45)
    if client_ip is not None:
        try:
            client_ip = str(ipaddress.ip_address(client_ip))
        except ValueError:
            raise InvalidRequest("'client_ip' must be an IPv4 or IPv6 address.") from None
    user = body.get("user")
    user = {} if user is None else user
    if not isinstance(user, dict) or set(user) - USER_FIELDS:
        raise InvalidRequest("'user' must be an object with first_name, last_name and email only.")
    for name, value in user.items():
        if value is not None and (not isinstance(value, str) or len(value) > 128):
            raise InvalidRequest(f"'user.{name}' must be a string of at most 128 characters.")
    if user.get("email") and not EMAIL.match(user["email"]):
        raise InvalidRequest("'user.email' is not an e-mail address.")
    channel = _channel(body.get("channel", "auto"), "channel", True)
    if channel in (Channel.TOTP.value, Channel.RECOVERY_CODE.value) and user_id is None:
        raise InvalidRequest(f"'user_id' is required for the {channel} channel.")
    return StartRequest(
        to=body["to"], country=country, channel=channel, fallback=fallback, user_id=user_id,
        locale=locale, ivr_mode=ivr_mode, client_ip=client_ip,
        user={k: v for k, v in user.items() if v},
    )


def parse_code(body: Any) -> str:
    """The code of a check request: 4 to 10 digits, or a recovery code (xxxxx-xxxxx)."""
    code = _object(body).get("code")
    if not isinstance(code, str) or not (CODE.match(code) or RECOVERY_CODE.match(code)):
        raise InvalidRequest("'code' must be a string of 4 to 10 digits, or a recovery code.")
    return code


@dataclass(frozen=True)
class ConfirmRequest:
    """A validated POST /v1/users/<id>/totp/confirm body."""

    code: str
    verification_id: str | None


def parse_confirm(body: Any) -> ConfirmRequest:
    """The code from the authenticator app (6 digits) and the optional proving verification."""
    body = _object(body)
    unknown = set(body) - {"code", "verification_id"}
    if unknown:
        raise InvalidRequest(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    code = body.get("code")
    if not isinstance(code, str) or not APP_CODE.match(code):
        raise InvalidRequest("'code' must be the 6 digits the authenticator app shows.")
    return ConfirmRequest(code, _verification_id(body))


def parse_proof(body: Any) -> str | None:
    """The optional proving verification of a request that changes a user's methods."""
    if body is None:
        return None
    body = _object(body)
    if set(body) - {"verification_id"}:
        raise InvalidRequest(f"Unknown field(s): {', '.join(sorted(set(body) - {'verification_id'}))}.")
    return _verification_id(body)


def _verification_id(body: dict[str, Any]) -> str | None:
    value = body.get("verification_id")
    if value is not None and (not isinstance(value, str) or not VERIFICATION_ID.match(value)):
        raise InvalidRequest("'verification_id' must be the id of a verification.")
    return value


def parse_resend(body: Any) -> Channel | None:
    """The optional channel of a resend request."""
    if body is None:
        return None
    channel = _object(body).get("channel")
    return None if channel is None else Channel(_channel(channel, "channel", False))
