"""Outbound calls: the sender's send function for the `call` channel."""
from __future__ import annotations

import logging

from config import Settings
from gateway.carrier import Action, CallRequest, CarrierError
from gateway.models import Verification
from gateway.phone import mask
from gateway.services import Services
from gateway.webhooks import public_url

log = logging.getLogger(__name__)

# Synchronous AMD: Twilio tells the answer webhook who picked up (AnsweredBy) before any word is said.
MACHINE_DETECTION = "Enable"


def caller_id(settings: Settings, country: str) -> str | None:
    """The caller ID for a destination country: CALLER_ID_BY_COUNTRY, else VOICE_CALLER_ID."""
    return settings.caller_id_by_country.get(country.upper()) or settings.voice_caller_id


def place_call(svc: Services, v: Verification, attempt: int, code: str) -> str:
    """Place a verification call and return its SID.

    The code is not used here: it stays encrypted with the verification and the answer
    webhook reads it out (code mode), so it never travels in a URL or job argument.
    """
    sender = caller_id(svc.settings, v.country)
    if svc.carrier is None or sender is None:
        raise CarrierError(None, None, "no carrier, or neither VOICE_CALLER_ID nor CALLER_ID_BY_COUNTRY "
                           f"has a caller ID for {v.country or 'this country'}", Action.FALLBACK)
    request = CallRequest(
        to=v.to,
        caller_id=sender,
        url=public_url("ivr.answer", verification_id=v.id, attempt=attempt),
        status_callback=public_url("ivr.status", verification_id=v.id, attempt=attempt),
        ring_timeout=svc.settings.call_ring_timeout,
        # A code must never be read to a voicemail box; confirm mode only needs a keypress.
        machine_detection=MACHINE_DETECTION if v.ivr_mode == "code" else None,
    )
    sid = svc.carrier.place_call(request)
    log.info("call %s placed to %s from %s for %s/%s (%s)", sid, mask(v.to), sender, v.id, attempt, v.ivr_mode)
    return sid
