"""Verify Services: settings an account keeps for its verifications (stored by gateway/v2_store.py)."""
from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.v2_store import V2Store
from gateway.verify_v2 import forms
from gateway.verify_v2.errors import invalid, not_found

CHAINABLE = ("sms", "call")
IVR_MODES = ("code", "confirm")
# Twilio's Attempts API covers the last 30 days.
ATTEMPTS_DAYS = 30


@dataclass(frozen=True)
class Service:
    """A Verify Service: Twilio's settings plus the gateway's documented extensions."""

    sid: str
    account_sid: str
    friendly_name: str
    date_created: float
    date_updated: float
    code_length: int = 6
    lookup_enabled: bool = False
    skip_sms_to_landlines: bool = False
    dtmf_input_required: bool = True
    tts_name: str | None = None
    psd2_enabled: bool = False
    do_not_share_warning_enabled: bool = False
    custom_code_enabled: bool = False
    default_template_sid: str | None = None
    verify_event_subscription_enabled: bool = False
    # Extensions (form fields FallbackChannels, DeliveryDeadline, IvrMode, CodeLifetime).
    fallback_channels: tuple[str, ...] | None = None  # None: the gateway's FALLBACK_CHANNELS
    delivery_deadline: int | None = None  # None: the gateway's DELIVERY_DEADLINE
    ivr_mode: str = "code"
    code_lifetime: int = 600  # Twilio's 10 minutes

    def to_record(self) -> str:
        """The JSON kept in Redis."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_record(cls, raw: bytes | str) -> "Service":
        """A Service from its stored JSON."""
        data = json.loads(raw)
        if data.get("fallback_channels") is not None:
            data["fallback_channels"] = tuple(data["fallback_channels"])
        return cls(**data)


def changes(form: Mapping[str, str]) -> dict[str, object]:
    """The settings a create or update form sets (absent fields change nothing)."""
    found: dict[str, object] = {
        "friendly_name": forms.text(form, "FriendlyName", 30),
        "code_length": forms.integer(form, "CodeLength", 4, 10),
        "lookup_enabled": forms.boolean(form, "LookupEnabled"),
        "skip_sms_to_landlines": forms.boolean(form, "SkipSmsToLandlines"),
        "dtmf_input_required": forms.boolean(form, "DtmfInputRequired"),
        "tts_name": forms.text(form, "TtsName", 64),
        "psd2_enabled": forms.boolean(form, "Psd2Enabled"),
        "do_not_share_warning_enabled": forms.boolean(form, "DoNotShareWarningEnabled"),
        "custom_code_enabled": forms.boolean(form, "CustomCodeEnabled"),
        "default_template_sid": forms.text(form, "DefaultTemplateSid", 34),
        "verify_event_subscription_enabled": forms.boolean(form, "VerifyEventSubscriptionEnabled"),
        "delivery_deadline": forms.integer(form, "DeliveryDeadline", 1, 3600),
        "code_lifetime": forms.integer(form, "CodeLifetime", 120, 86400),
    }
    name = found["friendly_name"]
    if isinstance(name, str) and sum(ch.isdigit() for ch in name) > 4:
        raise invalid("FriendlyName", "no more than 4 digits")  # Twilio's rule, against codes in names
    mode = form.get("IvrMode")
    if mode is not None:
        if mode not in IVR_MODES:
            raise invalid("IvrMode", "code or confirm")
        found["ivr_mode"] = mode
    if "FallbackChannels" in form:
        chain = tuple(c.strip() for c in form["FallbackChannels"].split(",") if c.strip())
        if any(c not in CHAINABLE for c in chain) or len(chain) > 2:
            raise invalid("FallbackChannels", "a comma-separated list of sms, call; empty for none")
        found["fallback_channels"] = chain
    return {k: v for k, v in found.items() if v is not None}


class ServiceStore:
    """Services as an account sees them: validated, its own only; v2_store keeps them in Redis."""

    def __init__(self, db: V2Store) -> None:
        self.db = db

    def create(self, account_sid: str, form: Mapping[str, str]) -> Service:
        """Validate everything first, then write the Service and its index in one transaction."""
        settings = changes(form)
        if "friendly_name" not in settings:
            raise invalid("FriendlyName", "required")
        now = float(int(self.db.now()))
        service = Service(sid="VA" + secrets.token_hex(16), account_sid=account_sid, date_created=now,
                          date_updated=now, **settings)  # type: ignore[arg-type]
        self.db.add_service(account_sid, service.sid, service.to_record(), now)
        return service

    def get(self, account_sid: str, sid: str) -> Service:
        """The account's Service, else 404/20404 (another account's Service is not there for it)."""
        raw = self.db.service(sid) if forms.sid(sid, "VA") else None
        service = Service.from_record(raw) if raw else None
        if service is None or service.account_sid != account_sid:
            raise not_found(f"/Services/{sid}")
        return service

    def update(self, account_sid: str, sid: str, form: Mapping[str, str]) -> Service:
        """Change the given settings atomically, leaving the others as they are."""
        settings = changes(form)

        def change(raw: bytes | None, now: float) -> str:
            current = Service.from_record(raw) if raw else None
            if current is None or current.account_sid != account_sid:
                raise not_found(f"/Services/{sid}")
            return dataclasses.replace(current, date_updated=float(int(now)), **settings).to_record()  # type: ignore[arg-type]

        return Service.from_record(self.db.change_service(sid, change))

    def delete(self, account_sid: str, sid: str) -> None:
        """Remove the Service; its pending verifications can no longer be read or checked through /v2."""
        self.get(account_sid, sid)
        self.db.remove_service(account_sid, sid)

    def remember(self, account_sid: str, verification_id: str, created_at: float) -> None:
        """Index a verification started through /v2 under its account (the Attempts API reads it)."""
        self.db.remember(account_sid, verification_id, created_at, ATTEMPTS_DAYS * 86400)

    def page(self, account_sid: str, number: int, size: int) -> tuple[list[Service], bool]:
        """One page of the account's Services, oldest first; and whether another page follows."""
        raws, more = self.db.service_page(account_sid, number * size, size)
        return [Service.from_record(r) for r in raws], more
