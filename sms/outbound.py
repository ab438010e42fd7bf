"""Outbound SMS: the text of a code and the message sent through the carrier."""
from __future__ import annotations

import logging

from gateway import deliveries, i18n, verifications
from gateway.carrier import Action, CarrierError
from gateway.models import Channel, Verification
from gateway.phone import mask
from gateway.services import Services
from gateway.webhooks import public_url

log = logging.getLogger(__name__)
NOTICE_VALIDITY = 3600  # a notice still tells the user something an hour late; later it would confuse


def _send(svc: Services, v: Verification, attempt: int, body: str, validity: int) -> str:
    if svc.carrier is None or not svc.settings.sms_from:
        raise CarrierError(None, None, "no carrier or SMS_FROM configured", Action.FALLBACK)
    callback = public_url("sms.status", verification_id=v.id, attempt=attempt)
    sid = svc.carrier.send_sms(v.to, body, svc.settings.sms_from, callback, validity)
    log.info("sms %s sent to %s for %s/%s", sid, mask(v.to), v.id, attempt)
    return sid


def send_code(svc: Services, v: Verification, attempt: int, code: str) -> str:
    """Text a one-way code; the message expires in the network with the code."""
    ttl = verifications.ttl_for(svc, Channel.SMS, v.code_ttl)
    key = "code_plain" if v.share_warning is False else "code"
    body = i18n.text(v.locale, "sms", key, org=v.org_name or svc.settings.organization_name, code=code,
                     minutes=max(ttl // 60, 1))
    return _send(svc, v, attempt, body, min(max(ttl, 1), 36000))


def send_authenticator_notice(svc: Services, to: str, locale: str) -> str:
    """Tell the user by SMS that a new authenticator was added to their sign-in (NIST SP 800-63B §6.1.2.1)."""
    if svc.carrier is None or not svc.settings.sms_from:
        raise CarrierError(None, None, "no carrier or SMS_FROM configured", Action.STOP)
    body = i18n.text(locale, "sms", "authenticator_added", org=svc.settings.organization_name)
    sid = svc.carrier.send_sms(to, body, svc.settings.sms_from, None, NOTICE_VALIDITY)
    log.info("authenticator notice %s sent to %s", sid, mask(to))
    return sid


def reply_window(seconds: int) -> str:
    """The reply timeout as the prompt states it: whole minutes when exact, else seconds."""
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def send_reply_prompt(svc: Services, v: Verification, attempt: int, code: str) -> str | None:
    """Text a two-way prompt: the user approves by replying with the code within the timeout."""
    timeout = svc.settings.sms_reply_timeout
    body = i18n.text(v.locale, "sms", "reply_prompt", org=svc.settings.organization_name, code=code,
                     wait=reply_window(timeout))
    sender = svc.settings.sms_from
    # Indexed before sending: a quick reply can reach the inbound webhook before Twilio answers us.
    if sender and not deliveries.await_reply(svc, v, attempt, sender):
        log.info("two-way prompt of %s/%s skipped: no longer current", v.id, attempt)
        return None
    return _send(svc, v, attempt, body, min(max(timeout, 1), 36000))
