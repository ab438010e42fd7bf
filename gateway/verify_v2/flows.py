"""Verify v2 verifications on the gateway's own state machine (gateway/verifications.py)."""
from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from gateway import i18n, keys, phone, verifications
from gateway.errors import InvalidPhoneNumber, NotFound, NotPending
from gateway.models import Channel, CodeOptions, Reason, Status, Verification
from gateway.schemas import StartRequest
from gateway.services import Services
from gateway.verify_v2 import forms
from gateway.verify_v2.errors import (
    CHANNEL_DISABLED, LANDLINE, MAX_CHECKS, TwilioError, invalid, not_found,
)
from gateway.verify_v2.render import verification_id
from gateway.verify_v2.service import Service

# Twilio Verify: 5 sends per verification within its validity, then 60203
# (https://www.twilio.com/docs/api/errors/60203; reference §5.3).
SEND_LIMIT = 5
CHANNELS = ("sms", "call", "auto")
# Twilio channels the gateway does not deliver on: 60223 (reference §4).
DISABLED = ("whatsapp", "email", "sna", "rbm")
# Voices of TwiML <Say> (https://www.twilio.com/docs/voice/twiml/say#voice): Amazon Polly and
# Google voices by name, and the basic man, woman and alice.
TTS_VOICE = re.compile(r"^((Polly|Google)\.[A-Za-z0-9-]{2,40}|man|woman|alice)$")


@dataclass(frozen=True)
class CreateRequest:
    """A validated Verification create form."""

    to: phone.PhoneNumber
    channel: str
    locale: str
    friendly_name: str | None
    custom_code: str | None
    device_ip: str | None = None


def _channel(form: Mapping[str, str]) -> str:
    value = forms.text(form, "Channel", 16, required=True)
    if value in DISABLED:
        raise TwilioError(CHANNEL_DISABLED, 400, f"Delivery channel disabled: {value} is not offered by this "
                          "gateway; use sms or call")
    if value not in CHANNELS:
        raise invalid("Channel", f"one of {', '.join(CHANNELS + DISABLED)}")
    return value  # type: ignore[return-value]


def _locale(form: Mapping[str, str]) -> str:
    value = form.get("Locale") or "en"
    if not forms.LOCALE.fullmatch(value):
        raise invalid("Locale", "a language tag like en or pt-BR")
    language = value.split("-")[0]
    return language if language in i18n.LOCALES else i18n.DEFAULT


def parse_create(form: Mapping[str, str], service: Service) -> CreateRequest:
    """Validate a create form against its Service; raise 400/60200 naming the parameter."""
    raw_to = forms.e164(form, "To")
    channel = _channel(form)
    try:
        number = phone.parse(raw_to)
    except InvalidPhoneNumber:
        raise invalid("To", "not a valid phone number") from None
    custom = forms.code(form, "CustomCode")
    if custom is not None and not service.custom_code_enabled:
        raise invalid("CustomCode", "the Service does not allow custom codes (CustomCodeEnabled)")
    if channel == "sms" and service.skip_sms_to_landlines and number.type is phone.NumberType.FIXED_LINE:
        raise TwilioError(LANDLINE, 403, "SMS is not supported by landline phone number")
    return CreateRequest(number, channel, _locale(form), forms.text(form, "CustomFriendlyName", 30), custom,
                         forms.ip(form, "DeviceIp"))


def _voice(tts_name: str | None) -> str | None:
    """A TtsName that names a Twilio <Say> voice (Polly.*, Google.*, man, woman, alice), else None."""
    return tts_name if tts_name and TTS_VOICE.fullmatch(tts_name) else None


def _live_key(service: Service, number: str) -> str:
    return keys.v2_live(service.sid, number)


def _start_request(svc: Services, service: Service, req: CreateRequest) -> StartRequest:
    chain = service.fallback_channels
    if chain is None:
        chain = tuple(c for c in svc.settings.fallback_channels if c in ("sms", "call"))
    options = CodeOptions(
        length=service.code_length, ttl=service.code_lifetime, same_code=True, custom_code=req.custom_code,
        org_name=req.friendly_name or service.friendly_name, share_warning=service.do_not_share_warning_enabled,
        delivery_deadline=service.delivery_deadline, voice=_voice(service.tts_name), live_key=_live_key(service, req.to.e164),
        tags=(("svc", service.sid), ("acct", service.account_sid)),
    )
    return StartRequest(to=req.to.e164, channel=req.channel, fallback=tuple(Channel(c) for c in chain),
                        locale=req.locale, ivr_mode=service.ivr_mode, client_ip=req.device_ip, options=options)


def create(svc: Services, service: Service, req: CreateRequest) -> tuple[Verification, bool]:
    """Start a verification, or send the live one for (service, to) again with the same code."""
    for _ in range(3):  # a live verification may end or move on between our reads: start over
        v, created = verifications.start(svc, _start_request(svc, service, req), None)
        if created:
            return v, True
        forced = v.channel if req.channel == "auto" else Channel(req.channel)
        try:
            return verifications.resend(svc, v.id, forced, interval=0, max_sends=SEND_LIMIT), False
        except NotPending:
            continue
    raise TwilioError(20429, 429, "Too many concurrent requests for this verification; try again")


def find(svc: Services, service: Service, sid_or_to: str, checking: bool = False) -> Verification:
    """A pending verification of the Service by VE SID or by `to`; 404 once it ended (Verify's soft delete)."""
    what = f"/Services/{service.sid}/Verifications/{sid_or_to}"
    v: Verification | None = None
    if forms.sid(sid_or_to, "VE"):
        try:
            v = verifications.get(svc, verification_id(sid_or_to))
        except NotFound:
            v = None
    elif forms.E164.fullmatch(sid_or_to):
        try:
            number = phone.parse(sid_or_to).e164
        except InvalidPhoneNumber:
            raise not_found(what) from None
        v = verifications.live(svc, _live_key(service, number))
    if v is None or v.tags.get("svc") != service.sid:
        raise not_found(what)
    if checking and v.status is Status.DENIED and v.reason is Reason.MAX_ATTEMPTS:
        raise TwilioError(MAX_CHECKS, 429, "Max check attempts reached")
    if not v.pending:
        raise not_found(what)
    return v


def check(svc: Services, service: Service, form: Mapping[str, str]) -> tuple[Verification, float]:
    """Check a code by To or VerificationSid: right approves, wrong stays pending (200 both)."""
    code = forms.code(form, "Code", required=True)
    to = forms.e164(form, "To", required=False)
    sid = form.get("VerificationSid") or None
    if to is None and sid is None:
        raise invalid("To", "give To or VerificationSid")
    if sid is not None and not forms.sid(sid, "VE"):
        raise invalid("VerificationSid", "a VE SID")
    v = find(svc, service, sid or to or "", checking=True)
    checked, _valid = verifications.check(svc, v.id, code or "", read=v)
    if checked.status in (Status.EXPIRED, Status.CANCELED) or (checked.status is Status.DENIED
                                                              and checked.reason is not Reason.MAX_ATTEMPTS):
        raise not_found(f"/Services/{service.sid}/VerificationCheck")
    return checked, time.time()


def update(svc: Services, service: Service, sid_or_to: str, form: Mapping[str, str]) -> Verification:
    """Status=canceled ends the verification; Status=approved approves it (for the app's own codes)."""
    wanted = form.get("Status")
    if wanted not in ("canceled", "approved"):
        raise invalid("Status", "canceled or approved")
    v = find(svc, service, sid_or_to)
    done = verifications.cancel(svc, v.id) if wanted == "canceled" else verifications.approve(svc, v.id)
    if done.status.value != wanted:
        raise not_found(f"/Services/{service.sid}/Verifications/{sid_or_to}")
    return done
