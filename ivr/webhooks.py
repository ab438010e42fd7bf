"""Voice webhooks from Twilio: the call's answer URL, its Gather actions and its status callbacks.

Each is bound to one verification, one attempt and that attempt's CallSid: a request for
another call, a stale attempt or a finished verification changes nothing and, where
Twilio waits for TwiML, hears a polite goodbye.
"""
from __future__ import annotations

from flask import Blueprint, Response, request
from twilio.twiml.voice_response import VoiceResponse

from gateway import deliveries, jobs, verifications
from gateway.errors import NotFound
from gateway.models import AttemptStatus, Channel, Reason, Status, Verification
from gateway.services import Services, services
from gateway.webhooks import public_url, twilio_signed, twiml
from ivr import twiml as flows

bp = Blueprint("ivr", __name__, url_prefix="/webhooks/twilio/voice")

# Twilio CallStatus -> attempt status (wire reference §5).
CALL_STATUS = {
    "queued": AttemptStatus.QUEUED,
    "initiated": AttemptStatus.QUEUED,
    "ringing": AttemptStatus.RINGING,
    "in-progress": AttemptStatus.ANSWERED,
    "completed": AttemptStatus.COMPLETED,
    "busy": AttemptStatus.BUSY,
    "no-answer": AttemptStatus.NO_ANSWER,
    "failed": AttemptStatus.FAILED,
    "canceled": AttemptStatus.CANCELED,
}
BOUND = frozenset({"changed", "unchanged"})


def is_machine(answered_by: str) -> bool:
    """Whether Twilio's answering-machine detection says no person picked up."""
    return answered_by.startswith("machine") or answered_by == "fax"


def closing(v: Verification) -> str:
    """The farewell text for a verification that has ended (or is ending) on a call."""
    if v.status is Status.APPROVED:
        return "approved"
    if v.reason is Reason.FRAUD_REPORTED:
        return "fraud"
    if v.reason is Reason.NO_INPUT:
        return "no_input"
    return "ended"


def _error_code(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isascii() and raw.isdigit() else None  # isdigit alone takes "²"


def _load(svc: Services, verification_id: str) -> Verification | None:
    try:
        return verifications.get(svc, verification_id)  # also ends it when past its expiry
    except NotFound:
        return None


def _is_call_attempt(v: Verification, attempt: int) -> bool:
    return 1 <= attempt <= len(v.attempts) and v.attempts[attempt - 1].channel is Channel.CALL


def _is_current_call(v: Verification, attempt: int) -> bool:
    return attempt == v.attempt.number and v.attempt.channel is Channel.CALL


def _is_this_call(v: Verification, attempt: int, sid: str) -> bool:
    """The request comes from the call of the verification's current attempt."""
    return bool(sid) and _is_current_call(v, attempt) and v.attempt.sid == sid


def _gather_url(v: Verification, attempt: int, turn: int, step: flows.Step = flows.Step.MENU) -> str:
    # The menu round and step travel in the signed action URL, so a repeated or retried Gather
    # post gets the same answer and never counts twice, and a # means what its step says.
    extra = {} if step is flows.Step.MENU else {"step": step.value}
    return public_url("ivr.gather", verification_id=v.id, attempt=attempt, round=turn, **extra)


@bp.post("/<verification_id>/<int:attempt>/answer")
@twilio_signed
def answer(verification_id: str, attempt: int) -> Response:
    """The call was answered: the menu (confirm) or the code (code); a machine hears nothing."""
    svc = services()
    sid = request.form.get("CallSid", "")
    v = _load(svc, verification_id)
    if v is None or not v.pending or not sid or not _is_current_call(v, attempt):
        return twiml(flows.farewell(v.locale if v else "en", "ended"))
    # Binds the attempt to this CallSid when the job or a status callback has not yet.
    outcome = deliveries.record_status(svc, verification_id, attempt, AttemptStatus.ANSWERED, None, sid)
    if outcome.kind not in BOUND:
        return twiml(flows.farewell(v.locale, "ended"))
    if is_machine(request.form.get("AnsweredBy", "")):
        deliveries.machine_answered(svc, verification_id, attempt, sid)
        return twiml(flows.hang_up())
    org = v.org_name or svc.settings.organization_name
    if v.ivr_mode == "code":
        code = deliveries.spoken_code(svc, outcome.verification or v)
        if code is None:
            return twiml(flows.farewell(v.locale, "ended"))
        offer = svc.settings.call_menu_tries > 1
        return twiml(flows.read_code(v.locale, org, code, _gather_url(v, attempt, 1), offer_repeat=offer,
                                     voice=v.voice))
    return twiml(flows.menu(v.locale, org, _gather_url(v, attempt, 1)))


@bp.post("/<verification_id>/<int:attempt>/gather")
@twilio_signed
def gather(verification_id: str, attempt: int) -> Response:
    """A key from a Gather: # approves, 0 then # reports fraud, anything else repeats, then no_input."""
    svc = services()
    v = _load(svc, verification_id)
    if v is None or not _is_this_call(v, attempt, request.form.get("CallSid", "")):
        return twiml(flows.farewell(v.locale if v else "en", "ended"))
    turn = min(max(request.args.get("round", 1, type=int) or 1, 1), svc.settings.call_menu_tries)
    digits = request.form.get("Digits", "")
    if v.ivr_mode == "code":
        return twiml(_code_keys(svc, v, attempt, turn, digits))
    try:
        step = flows.Step(request.args.get("step", flows.Step.MENU.value))
    except ValueError:
        step = None
    picked = flows.choice(step, digits) if step is not None else flows.Choice.BAD
    return twiml(_menu_keys(svc, v, attempt, turn, picked))


def _code_keys(svc: Services, v: Verification, attempt: int, turn: int, digits: str) -> VoiceResponse:
    """Code mode: 1 reads the code again while readings are left; anything else says goodbye."""
    tries = svc.settings.call_menu_tries
    code = deliveries.spoken_code(svc, v) if v.pending else None
    if code is None:
        return flows.farewell(v.locale, "ended")
    if digits != flows.REPEAT_CODE or turn >= tries:
        return flows.farewell(v.locale, "goodbye")
    org = v.org_name or svc.settings.organization_name
    return flows.read_code(v.locale, org, code, _gather_url(v, attempt, turn + 1),
                           first=False, offer_repeat=turn + 1 < tries, voice=v.voice)


def _menu_keys(svc: Services, v: Verification, attempt: int, turn: int, picked: flows.Choice) -> VoiceResponse:
    """Confirm mode: act on the caller's choice; the last silent or wrong round is no_input."""
    if picked is flows.Choice.APPROVE:
        outcome = verifications.end(svc, v.id, attempt, Status.APPROVED, None)
    elif picked is flows.Choice.FRAUD:
        outcome = verifications.report_fraud(svc, v, attempt)
    elif not v.pending:
        return flows.farewell(v.locale, closing(v))
    elif picked is flows.Choice.BAD:
        # Digits no one-key Gather of ours can post: change nothing, say goodbye, hang up.
        return flows.farewell(v.locale, "goodbye")
    elif picked is flows.Choice.FRAUD_STARTED:
        return flows.fraud_step(v.locale, _gather_url(v, attempt, turn, flows.Step.FRAUD))
    elif turn >= svc.settings.call_menu_tries:
        outcome = verifications.end(svc, v.id, attempt, Status.DENIED, Reason.NO_INPUT)
    else:
        org, retry = v.org_name or svc.settings.organization_name, picked is flows.Choice.OTHER
        return flows.menu(v.locale, org, _gather_url(v, attempt, turn + 1), retry=retry)
    return flows.farewell(v.locale, closing(outcome.verification or v))


@bp.post("/<verification_id>/<int:attempt>/status")
@twilio_signed
def status(verification_id: str, attempt: int) -> tuple[str, int]:
    """A call status callback; repeats and reordering are harmless, failures move the chain on."""
    svc = services()
    mapped = CALL_STATUS.get(request.form.get("CallStatus", ""))
    sid = request.form.get("CallSid", "")
    v = _load(svc, verification_id) if mapped is not None and sid else None
    if v is None or mapped is None or not _is_call_attempt(v, attempt):
        return "", 204
    outcome = deliveries.record_status(
        svc, verification_id, attempt, mapped, _error_code(request.form.get("ErrorCode")), sid, with_record=False,
    )
    if mapped is AttemptStatus.COMPLETED and outcome.kind in BOUND and v.ivr_mode == "confirm":
        # The caller hung up before choosing: that is no approval. The denial waits a short
        # grace for a Gather posted just before the hang-up, and is attempt-bound, so a late
        # callback of an earlier call or an already decided verification is left alone.
        jobs.schedule_hangup_check(svc, verification_id, attempt)
    return "", 204
