"""The JSON Twilio Verify answers, built from the gateway's records (reference §3)."""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from flask import request

from gateway.models import Attempt, Channel, Reason, Status, Verification, iso
from gateway.verify_v2.service import Service

# Twilio's Verification statuses; the gateway's denials other than max attempts have no
# Twilio name, and a denial is a failure to verify.
_STATUS = {Status.PENDING: "pending", Status.APPROVED: "approved", Status.CANCELED: "canceled",
           Status.EXPIRED: "expired", Status.FAILED: "failed", Status.DENIED: "failed"}
_CHANNEL = {Channel.SMS: "sms", Channel.SMS_REPLY: "sms", Channel.CALL: "call", Channel.TOTP: "totp"}
_LOOKUP_TYPE = {"mobile": "mobile", "fixed_line": "landline", "voip": "voip", "fixed_line_or_mobile": "mobile"}


def base() -> str:
    """The gateway's address as this client reached it (a path prefix included)."""
    return request.url_root.rstrip("/")


def ve_sid(v: Verification) -> str:
    """The Twilio SID of a verification: VE and the 32 hex digits of its gateway id (vf_…)."""
    return "VE" + v.id[3:]


def verification_id(sid: str) -> str:
    """The gateway id of a VE SID."""
    return "vf_" + sid[2:]


def _mask(n: int) -> int:
    return int(hashlib.sha256(f"verify-attempt:{n}".encode()).hexdigest()[:32], 16)


def vl_sid(v: Verification, attempt: int) -> str:
    """An attempt's VL SID: the verification's hex XOR a fixed mask of the attempt number.

    Derived rather than stored, so attempts made by any path (fallback, resend) have a SID and
    a VL SID leads back to its verification with no index (see attempt_of)."""
    return "VL" + format(int(v.id[3:], 16) ^ _mask(attempt), "032x")


def attempt_candidates(sid: str, most: int = 20) -> list[tuple[str, int]]:
    """The (verification id, attempt) pairs a VL SID may stand for; the one whose record exists is it."""
    value = int(sid[2:], 16)
    return [("vf_" + format(value ^ _mask(n), "032x"), n) for n in range(1, most + 1)]


def status(v: Verification) -> str:
    """The Twilio status of a verification."""
    if v.status is Status.DENIED and v.reason is Reason.MAX_ATTEMPTS:
        return "max_attempts_reached"
    return _STATUS[v.status]


def channel(c: Channel) -> str:
    """The Twilio channel of a gateway channel."""
    return _CHANNEL[c]


def _lookup(v: Verification, service: Service) -> dict[str, Any]:
    if not service.lookup_enabled:
        return {}
    kind = _LOOKUP_TYPE.get(v.number_type)
    return {"carrier": {"error_code": None if kind else 60600, "name": None, "mobile_country_code": None,
                        "mobile_network_code": None, "type": kind}}


def _common(v: Verification, service: Service) -> dict[str, Any]:
    return {
        "sid": ve_sid(v), "service_sid": service.sid, "account_sid": service.account_sid, "to": v.to,
        "channel": channel(v.channel), "status": status(v), "valid": v.status is Status.APPROVED,
        "amount": None, "payee": None,
    }


def verification(v: Verification, service: Service) -> dict[str, Any]:
    """A Verification resource."""
    updated = max([v.created_at] + [a.started_at for a in v.attempts])
    return {
        **_common(v, service),
        "lookup": _lookup(v, service),
        "send_code_attempts": [
            {"attempt_sid": vl_sid(v, a.number), "channel": channel(a.channel), "time": iso(a.started_at)}
            for a in v.attempts
        ],
        "sna": None,
        "date_created": iso(v.created_at), "date_updated": iso(updated),
        "url": f"{base()}/v2/Services/{service.sid}/Verifications/{ve_sid(v)}",
        "gateway_id": v.id,
    }


def verification_check(v: Verification, service: Service, checked_at: float) -> dict[str, Any]:
    """A VerificationCheck resource (no url, as Twilio's)."""
    return {**_common(v, service), "date_created": iso(v.created_at), "date_updated": iso(checked_at),
            "sna_attempts_error_codes": []}


def service(s: Service) -> dict[str, Any]:
    """A Service resource, with the gateway's extensions under their own names."""
    url = f"{base()}/v2/Services/{s.sid}"
    fields = dataclasses.asdict(s)
    extensions = {name: fields.pop(name) for name in ("fallback_channels", "delivery_deadline", "ivr_mode",
                                                        "code_lifetime")}
    return {
        **fields, "date_created": iso(s.date_created), "date_updated": iso(s.date_updated),
        "push": None, "totp": None, "whatsapp": None, "passkeys": None, "url": url,
        "links": {name: f"{url}/{path}" for name, path in (
            ("verifications", "Verifications"), ("verification_checks", "VerificationCheck"))},
        "gateway": {k: list(v) if isinstance(v, tuple) else v for k, v in extensions.items()},
    }


def attempt(v: Verification, a: Attempt, service_sid: str, account_sid: str) -> dict[str, Any]:
    """A VerificationAttempt resource (Attempts API): one delivery attempt."""
    converted = v.status is Status.APPROVED and a.number == v.attempt.number
    sid = vl_sid(v, a.number)
    carrier_sid = "call_sid" if a.channel is Channel.CALL else "message_sid"
    return {
        "sid": sid, "account_sid": account_sid, "service_sid": service_sid, "verification_sid": ve_sid(v),
        "date_created": iso(a.started_at), "date_updated": iso(a.started_at),
        "conversion_status": "converted" if converted else "unconverted", "channel": channel(a.channel),
        "price": None,
        "channel_data": {"to": v.to, carrier_sid: a.sid, "status": a.status.value, "error_code": a.error_code,
                         "country": v.country},
        "url": f"{base()}/v2/Attempts/{sid}",
    }


def page_meta(key: str, path: str, number: int, size: int, more: bool, query: str = "") -> dict[str, Any]:
    """The `meta` of a list page, with absolute URLs on the gateway (the SDK requests them as given)."""
    def url(n: int) -> str:
        return f"{base()}{path}?{query}{'&' if query else ''}PageSize={size}&Page={n}"

    return {
        "key": key, "page": number, "page_size": size, "url": url(number), "first_page_url": url(0),
        "previous_page_url": url(number - 1) if number > 0 else None,
        "next_page_url": url(number + 1) if more else None,
    }
