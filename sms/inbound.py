"""Inbound SMS: two-way replies carrying a code, and the STOP/START/HELP keywords."""
from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from twilio.twiml.messaging_response import MessagingResponse

from gateway import i18n, verifications
from gateway.phone import mask
from gateway.services import Services

log = logging.getLogger(__name__)


class Keyword(str, Enum):
    """What a single-word keyword message asks for (wire reference §8)."""

    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


KEYWORDS = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"), Keyword.OPT_OUT),
    **dict.fromkeys(("START", "YES", "UNSTOP"), Keyword.OPT_IN),
    **dict.fromkeys(("HELP", "INFO"), Keyword.HELP),
}
# Digits with any spaces, dashes or dots between them: "123 456", "123-456", "12.34.56".
_DIGIT_GROUP = re.compile(r"[0-9](?:[\s.\-]*[0-9])*")
_DIGIT_RUN = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class InboundSms:
    """The parts of Twilio's inbound-SMS webhook the gateway uses."""

    message_sid: str
    sender: str
    to: str
    messaging_service_sid: str
    body: str

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> "InboundSms":
        """Read the webhook's form fields (absent ones are empty)."""
        return cls(
            message_sid=form.get("MessageSid", "").strip(),
            sender=form.get("From", "").strip(),
            to=form.get("To", "").strip(),
            messaging_service_sid=form.get("MessagingServiceSid", "").strip(),
            body=form.get("Body", ""),
        )

    @property
    def gateway_senders(self) -> list[str]:
        """The identities our prompt may have been sent under: the number, and its Messaging Service."""
        return [s for s in (self.to, self.messaging_service_sid) if s]


def keyword(body: str) -> Keyword | None:
    """The keyword of a single-word, case-insensitive message, like Twilio's default opt-out handling."""
    return KEYWORDS.get(unicodedata.normalize("NFKC", body).strip().upper())


def extract_code(body: str, length: int) -> str | None:
    """The code in a reply: the first `length` digits in a group, around spaces, dashes and other text."""
    # Digits but no group of the right length still give a (wrong) code, so they cost an attempt;
    # a reply without any digit ("who is this?") gives None and costs nothing.
    text = unicodedata.normalize("NFKC", body)  # full-width and other compatibility digits to ASCII
    groups = [m.group() for m in _DIGIT_GROUP.finditer(text)]
    for group in groups:
        digits = re.sub(r"[^0-9]", "", group)
        if len(digits) == length:
            return digits
        for run in _DIGIT_RUN.findall(group):
            if len(run) == length:
                return run
    return _DIGIT_RUN.findall(groups[0])[0] if groups else None


def handle(svc: Services, sms: InboundSms) -> MessagingResponse:
    """Act on one inbound SMS exactly once per MessageSid; the answer is TwiML (maybe empty)."""
    answer = MessagingResponse()
    if not sms.message_sid or not sms.sender:
        log.warning("inbound sms without MessageSid or From ignored")
        return answer
    if verifications.inbound_handled(svc, sms.message_sid):
        log.info("inbound sms %s seen before; ignored", sms.message_sid)
        return answer
    # Marked handled only after the effect: a process dying in between leaves the message to
    # Twilio's retry. Repeating is safe: keywords set what they set, and a code is checked once
    # per MessageSid inside the check script itself.
    text = _act(svc, sms)
    verifications.inbound_done(svc, sms.message_sid)
    if text:
        answer.message(text)
    return answer


def _act(svc: Services, sms: InboundSms) -> str | None:
    """Apply the message; return the text to answer with, if any."""
    s = svc.settings
    word = keyword(sms.body)
    if word is Keyword.OPT_OUT:
        verifications.opt_out(svc, sms.sender)
        return None  # Twilio itself confirms STOP and START to the user
    if word is Keyword.OPT_IN:
        verifications.opt_in(svc, sms.sender)
        return None
    if word is Keyword.HELP:
        pending = verifications.pending_reply(svc, sms.gateway_senders, sms.sender)
        return i18n.text(pending.locale if pending else i18n.DEFAULT, "sms", "help", org=s.organization_name)
    code = extract_code(sms.body, s.code_length)
    if code is None:
        log.info("inbound sms %s from %s carries no code; ignored", sms.message_sid, mask(sms.sender))
        return None
    outcome = verifications.on_reply(svc, sms.gateway_senders, sms.sender, code, sms.message_sid)
    if outcome.verification is None:
        log.info("inbound sms %s from %s matches no pending two-way verification", sms.message_sid, mask(sms.sender))
    if outcome.approved and outcome.verification is not None and s.sms_reply_confirmation:
        return i18n.text(outcome.verification.locale, "sms", "reply_approved")
    return None
