"""SMS webhooks from Twilio: message status callbacks and inbound messages."""
from __future__ import annotations

from flask import Blueprint, Response, request

from gateway import deliveries
from gateway.models import AttemptStatus
from gateway.services import services
from gateway.webhooks import twiml, twilio_signed
from sms import inbound as sms_inbound

bp = Blueprint("sms", __name__, url_prefix="/webhooks/twilio/sms")

# Twilio message status -> attempt status (wire reference §2 and §5).
MESSAGE_STATUS = {
    "accepted": AttemptStatus.QUEUED,
    "scheduled": AttemptStatus.QUEUED,
    "queued": AttemptStatus.QUEUED,
    "sending": AttemptStatus.QUEUED,
    "sent": AttemptStatus.SENT,
    "delivered": AttemptStatus.DELIVERED,
    "read": AttemptStatus.DELIVERED,
    "undelivered": AttemptStatus.UNDELIVERED,
    "failed": AttemptStatus.FAILED,
    "canceled": AttemptStatus.CANCELED,
}


def error_code(raw: str | None) -> int | None:
    """Twilio's ErrorCode form field as a number, if present and numeric."""
    return int(raw) if raw and raw.isascii() and raw.isdigit() else None  # isdigit alone takes "²"


@bp.post("/status/<verification_id>/<int:attempt>")
@twilio_signed
def status(verification_id: str, attempt: int) -> tuple[str, int]:
    """A message status callback for one attempt; repeats and reordering are harmless."""
    mapped = MESSAGE_STATUS.get(request.form.get("MessageStatus", ""))
    if mapped is not None:
        deliveries.record_status(
            services(), verification_id, attempt, mapped,
            error_code(request.form.get("ErrorCode")), request.form.get("MessageSid"), with_record=False,
        )
    return "", 204


@bp.post("/inbound")
@twilio_signed
def inbound() -> Response:
    """An SMS to the gateway's number: a two-way reply, or STOP/START/HELP; answered with TwiML."""
    return twiml(sms_inbound.handle(services(), sms_inbound.InboundSms.from_form(request.form)))
