"""The delivery side of a verification: the codes senders take, what the carrier answers and
reports, two-way prompts, and the timers (expiry, delivery deadline). Split from
gateway/verifications.py for size; it changes state only through the store's scripts, and the
fallback policy stays there (`verifications.delivery_failed`)."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from gateway import codes, fallback, metrics
from gateway.carrier import Action
from gateway.models import ATTEMPT_RANK, FAILED_ATTEMPT, AttemptStatus, Channel, Reason, Status, Verification
from gateway.send_store import CodeWrite
from gateway.services import Services
from gateway.store import Outcome
from gateway.verifications import OWN_TTL_CHANNELS, delivery_failed, note_end, opt_out, ttl_for

log = logging.getLogger(__name__)


def delivery_lease(svc: Services) -> int:
    """How long a sender holds a claimed delivery: one carrier request and a margin to record it."""
    return int(svc.settings.twilio_timeout) + 10


def channel_rules(svc: Services) -> str:
    """set_code.lua's rules per channel (JSON): code lifetime, whether a verification's own lifetime
    replaces it, whether a delivery deadline applies, whether nothing is sent."""
    return json.dumps({c.value: [ttl_for(svc, c), int(c in OWN_TTL_CHANNELS), int(c in fallback.SMS_CHANNELS),
                                 int(c in fallback.NOTHING_SENT)] for c in Channel}, separators=(",", ":"))


@dataclass(frozen=True)
class CodeRequest:
    """A delivery's ask of set_code.lua for one attempt, and the code to store if it has none yet
    (None: a new one, unless the verification keeps its own)."""

    verification_id: str
    attempt: int
    fresh: str | None = None


@dataclass(frozen=True)
class Coded:
    """A delivery ready to go: the record as set_code.lua answered it, and the code it carries
    ('' on a channel that sends nothing)."""

    verification: Verification
    code: str


def code_for(svc: Services, v: Verification, attempt: int, fresh: str) -> str | None:
    """The code one delivery sends: `fresh` on its first try, the stored one on every later try, or None."""
    coded = take_codes(svc, [CodeRequest(v.id, attempt, fresh)])[0][0]
    return coded.code if coded is not None else None


def _code_write(svc: Services, r: CodeRequest, code: str, rules: str, made_blind: bool, kept: bool = False) -> CodeWrite:
    # Kept encrypted for the attempt's life, so a retry can send the same code again and the IVR
    # can read it out; finish() and the next attempt forget it.
    return CodeWrite(r.verification_id, r.attempt, codes.code_digest(svc.key("code-hmac"), r.verification_id, code),
                     codes.encrypt(svc.key("code-cipher"), code), len(code) if made_blind else None, rules,
                     svc.settings.delivery_deadline, kept)


def take_codes(svc: Services, requests: list[CodeRequest]) -> tuple[list[Coded | None], bool]:
    """Each delivery's record and the code it sends (its fresh one first, the stored one on a retry;
    None: send nothing), in one round trip without reading the records first; and whether
    REDIS_WAIT_REPLICAS replicas hold them (and the claim), or nothing goes to the carrier. A second
    round trip only for a verification with its own code length, or one keeping a code stored
    without its digest."""
    length, rules = svc.settings.code_length, channel_rules(svc)
    chosen = [r.fresh or codes.generate(length) for r in requests]
    outcomes, confirmed = svc.store.set_codes(
        [_code_write(svc, r, code, rules, r.fresh is None) for r, code in zip(requests, chosen)])
    # Only what goes to the carrier waits for the replicas: a batch of channels that send nothing
    # (and moot entries) goes on, as before these went through set_code.lua (their record's own WAIT
    # still guards them).
    confirmed = confirmed or not any(o.kind in ("ok", "again", "kept", "length") for o in outcomes)
    asked = [i for i, o in enumerate(outcomes) if o.kind in ("kept", "length") and o.verification is not None]
    if asked and confirmed:
        writes = []
        for i in asked:
            v = outcomes[i].verification
            assert v is not None
            kept = codes.decrypt(svc.keys("code-cipher"), v.code_kept) if outcomes[i].kind == "kept" else None
            chosen[i] = kept or codes.generate(v.code_length or length)
            writes.append(_code_write(svc, requests[i], chosen[i], rules, False, kept is not None))
        again, confirmed = svc.store.set_codes(writes)
        for i, outcome in zip(asked, again):
            outcomes[i] = outcome
    found: list[Coded | None] = []
    for r, fresh, outcome in zip(requests, chosen, outcomes):
        note_end(outcome)
        v, code = outcome.verification, None
        if v is not None and outcome.kind == "nothing":
            code = ""
        elif v is not None and (outcome.kind == "again" or (outcome.kind == "ok" and outcome.value == "kept")):
            code = codes.decrypt(svc.keys("code-cipher"), v.code_encrypted)  # the code stored for the attempt
            if code is None:
                # Only a secret changed without GATEWAY_SECRET_KEY_PREVIOUS makes a stored code unreadable.
                log.error("delivery of %s/%s sends nothing: its stored code does not decrypt with "
                          "GATEWAY_SECRET_KEY or GATEWAY_SECRET_KEY_PREVIOUS", r.verification_id, r.attempt)
                found.append(None)
                continue
        elif outcome.kind == "ok":
            code = fresh
        if v is None or code is None:
            log.info("delivery of %s/%s sends nothing: %s", r.verification_id, r.attempt, outcome.kind)
        found.append(Coded(v, code) if v is not None and code is not None else None)
    return found, confirmed


def spoken_code(svc: Services, v: Verification) -> str | None:
    """The current code in clear, for a flow that must say it again (IVR read-out)."""
    return codes.decrypt(svc.keys("code-cipher"), v.code_encrypted) if v.code_encrypted else None


def record_sent(svc: Services, verification_id: str, attempt: int, channel: Channel, sid: str | None) -> Outcome:
    """Note that the carrier accepted an attempt (a TOTP or recovery-code attempt is ready at once):
    its outbox entry leaves and its next timer is set in the same step."""
    status = AttemptStatus.SENT if channel in fallback.NOTHING_SENT else AttemptStatus.QUEUED
    return svc.store.sent(verification_id, attempt, status, ATTEMPT_RANK[status], sid)


def send_later(svc: Services, verification_id: str, attempt: int, error_code: int | None,
               backoff: float | None = None) -> None:
    """A send failed for now: try again after the next DELIVERY_RETRY_INTERVALS step (or after
    `backoff` without using a try up: the carrier throttled us); when the tries are spent, the
    channel is given up like any carrier failure."""
    later = svc.store.send_later(verification_id, attempt, backoff, svc.settings.delivery_retry_intervals)
    if later.kind == "spent":
        record_failure(svc, verification_id, attempt, error_code, Action.FALLBACK)


# Twilio refuses SMS to a number that replied STOP to our sender (wire reference §3).
SMS_OPTED_OUT = 21610


def record_failure(svc: Services, verification_id: str, attempt: int, error_code: int | None, action: Action) -> None:
    """The carrier refused an attempt outright: mark it failed and act on the error."""
    outcome = svc.store.attempt_status(
        verification_id, attempt, AttemptStatus.FAILED, ATTEMPT_RANK[AttemptStatus.FAILED], error_code, None
    )
    if error_code == SMS_OPTED_OUT and outcome.verification is not None:
        opt_out(svc, outcome.verification.to)  # before the fallback, so the chain skips SMS
    delivery_failed(svc, verification_id, attempt, error_code, "carrier_error", action)


def record_status(
    svc: Services, verification_id: str, attempt: int, status: AttemptStatus,
    error_code: int | None = None, sid: str | None = None, with_record: bool = True,
) -> Outcome:
    """Apply a carrier status to an attempt (forward only); a failure moves to the next channel.
    Without with_record the outcome carries no record: the kind and the status only."""
    outcome = svc.store.attempt_status(
        verification_id, attempt, status, ATTEMPT_RANK[status], error_code, sid, with_record)
    if outcome.kind == "changed" and status in FAILED_ATTEMPT:
        if error_code is not None:
            metrics.carrier_error(svc, error_code)
        delivery_failed(svc, verification_id, attempt, error_code, status.value)
    return outcome


def machine_answered(svc: Services, verification_id: str, attempt: int, sid: str) -> Outcome | None:
    """A machine answered a call that must not leave the code: a failed delivery; the chain moves on."""
    failed = AttemptStatus.FAILED
    outcome = svc.store.attempt_status(verification_id, attempt, failed, ATTEMPT_RANK[failed], None, sid)
    if outcome.kind not in ("changed", "unchanged"):
        return None
    return delivery_failed(svc, verification_id, attempt, None, "voicemail")


# A reply this long after its timeout still finds its verification (and ends it as
# reply_timeout if no timer has yet); later replies are simply unmatched.
LATE_REPLY_GRACE = 300


def await_reply(svc: Services, v: Verification, attempt: int, sender: str) -> bool:
    """Index a two-way prompt about to go from sender to the user; False when the attempt is not current."""
    ttl = ttl_for(svc, Channel.SMS_REPLY) + LATE_REPLY_GRACE
    # The script may find the verification expired and end it: that end is logged and counted too.
    return note_end(svc.store.index_reply(v.id, attempt, sender, v.to, ttl)).kind == "ok"


def run_timers(svc: Services, verification_id: str) -> float | None:
    """Enforce expiry and the delivery deadline; return when to look again (Redis time), if ever."""
    v = svc.store.load(verification_id)
    if v is None or not v.pending:
        return None
    # Every decision by Redis's clock: the script ends it if due, else says what time it is.
    outcome = note_end(svc.store.finish(v.id, Status.EXPIRED, Reason.EXPIRED, only_if_due=True))
    v, now = outcome.verification, outcome.now
    if outcome.kind != "not_due" or v is None:
        return None
    if v.deadline and now >= v.deadline and v.attempt.status not in (AttemptStatus.DELIVERED,):
        if v.attempt.status not in FAILED_ATTEMPT and v.position + 1 < len(v.channels):
            delivery_failed(svc, v.id, v.attempt.number, None, "delivery_deadline", deadline_due=True)
            outcome = note_end(svc.store.finish(v.id, Status.EXPIRED, Reason.EXPIRED, only_if_due=True))
            v, now = outcome.verification, outcome.now
            if outcome.kind != "not_due" or v is None:
                return None
    due = [t for t in (v.expires_at, v.deadline) if t and t > now]
    return min(due) if due else v.expires_at
