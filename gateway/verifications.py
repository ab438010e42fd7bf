"""The verification state machine: with its delivery side (gateway/deliveries.py), the one place
that changes verification state."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway import abuse, codes, fallback, keys, methods, metrics, phone
from gateway.carrier import Action, classify
from gateway.errors import (
    DestinationBlocked, IdempotencyConflict, NoRecoveryCodes, NotFound, NotPending, RateLimited, TotpNotEnrolled,
    Unconfirmed,
)
from gateway.models import Channel, CodeOptions, Reason, Status, Verification, iso
from gateway.schemas import StartRequest
from gateway.services import Services
from gateway.store import ENDING, Chain, Outcome, Step

log = logging.getLogger(__name__)
audit_log = logging.getLogger("gateway.audit")

def ttl_for(svc: Services, channel: Channel, code_ttl: int | None = None) -> int:
    """How long a code (or a reply, or a call) stays valid on a channel; code_ttl overrides SMS and calls."""
    s = svc.settings
    if code_ttl and channel in OWN_TTL_CHANNELS:
        return code_ttl
    return {
        Channel.SMS: s.sms_code_ttl,
        Channel.SMS_REPLY: s.sms_reply_timeout,
        Channel.CALL: s.call_ttl,
        Channel.TOTP: s.totp_ttl,
        Channel.RECOVERY_CODE: s.totp_ttl,
    }[channel]


def next_channel(svc: Services, v: Verification, forced: Channel | None = None) -> tuple[int, Channel] | None:
    """Apply the fallback policy to what is known now of the number and the user."""
    opted_out = svc.store.has_flag("optout", v.to)
    reach = fallback.Reach(v.number_type, opted_out, methods.totp_enrolled(svc, v.user_id),
                           methods.has_recovery_codes(svc, v.user_id))
    return fallback.next_channel(v.channels, v.position, reach, forced)


def note_end(outcome: Outcome) -> Outcome:
    """Log the audit record and count the end, when this change ended the verification."""
    record = outcome.audit
    if record:
        audit_log.info(record)
        v = outcome.verification  # an ending script answers the record it ended (prelude.lua reply())
        if v is not None:
            metrics.ended(v.channel.value, v.status.value, v.reason.value if v.reason else "")
    if outcome.kind in CONFIRMED_ENDS:
        _confirmed(outcome.replicated)
    return outcome


# An end, or a repeat that finds it ended: acknowledged only once REDIS_WAIT_REPLICAS confirm it.
CONFIRMED_ENDS = ENDING | {"finished", "noop"}


def _confirmed(replicated: bool) -> None:
    """Refuse to acknowledge a change that too few replicas confirmed (the caller retries it safely)."""
    if not replicated:
        log.warning("a change was not confirmed by REDIS_WAIT_REPLICAS replicas in time")
        raise Unconfirmed("The change was not yet confirmed by the storage's replicas; retry shortly.")


def start(svc: Services, req: StartRequest, idempotency_key: str | None) -> tuple[Verification, bool]:
    """Create a verification with its first delivery in the outbox; (verification, created)."""
    s = svc.settings
    number = phone.parse(req.to, req.country)
    phone.check_allowed(number, s.allowed_countries)
    chain_rest = req.fallback if req.fallback is not None else tuple(Channel(c) for c in s.fallback_channels)
    wants_totp = req.channel == Channel.TOTP.value or Channel.TOTP in chain_rest
    has_totp = wants_totp and methods.totp_enrolled(svc, req.user_id)
    if req.channel == Channel.TOTP.value and not has_totp:
        raise TotpNotEnrolled(f"User {req.user_id!r} has no authenticator app or token enrolled.")
    wants_recovery = req.channel == Channel.RECOVERY_CODE.value or Channel.RECOVERY_CODE in chain_rest
    has_recovery = wants_recovery and methods.has_recovery_codes(svc, req.user_id)
    if req.channel == Channel.RECOVERY_CODE.value and not has_recovery:
        raise NoRecoveryCodes(f"User {req.user_id!r} has no unused recovery codes.")
    chains = tuple(
        fallback.plan_chain(req.channel, chain_rest, number, s.auto_fixed_line_or_mobile,
                            fallback.Reach(number.type.value, opted_out, has_totp, has_recovery))
        for opted_out in (False, True)
    )
    if not chains[0]:
        raise DestinationBlocked(f"No requested channel can reach a {number.type.value} number.")
    opts = req.options
    kept = _kept_code(svc, opts)
    fields = {
        "to": number.e164, "country": number.country, "ntype": number.type.value,
        "max": s.max_check_attempts,
        # Absent rather than empty or the default (records.decode's): every field costs bytes in
        # every pending hash, and Redis keeps it compact only while it is small.
        **({"locale": req.locale} if req.locale != "en" else {}),
        **({"ivr_mode": req.ivr_mode} if req.ivr_mode != "confirm" else {}),
        **({"user_id": req.user_id} if req.user_id else {}), **({"client_ip": req.client_ip} if req.client_ip else {}),
        **{k: v for k, v in req.user.items()}, **_option_fields(svc, opts, kept),
    }
    plans = tuple(Chain([c.value for c in chain], ttl_for(svc, chain[0], opts.ttl) if chain else 0) for chain in chains)

    def create(now: float, admission: Callable[[int], tuple[list[str], bytes]]) -> Outcome:
        # The id carries the UTC day it starts, so that whichever script ends it is given that
        # day's usage counters (keys.ending): the day of the admission's keys, which the script
        # refuses (and this is asked again) unless Redis's clock agrees. Its record's times are Redis's.
        verification_id = keys.new_verification_id(int(now // keys.DAY))
        # A kept code's digest (keyed by the id) beside it, so its first send stores it without
        # asking again (set_code.lua 'kept').
        record = fields | ({"keepd": codes.code_digest(svc.key("code-hmac"), verification_id, kept)} if kept else {})
        return svc.store.create(
            verification_id, record, (plans[0], plans[1]), number.e164,
            (idempotency_key, req.fingerprint()) if idempotency_key else None, opts.live_key, admission,
        )

    # One call admits the send (every limit, breaker and budget) and creates the verification.
    outcome = abuse.admit_start(svc, number, chains[0][0], req.ivr_mode, req.user_id, req.client_ip,
                                idempotency_key, create)
    if outcome.kind == "existing":
        _confirmed(outcome.replicated)
        return get(svc, outcome.value), False
    if outcome.kind == "live" and outcome.verification is not None:
        _confirmed(outcome.replicated)
        return outcome.verification, False
    if outcome.kind == "conflict":
        raise IdempotencyConflict("This Idempotency-Key was used with a different request body.")
    if outcome.kind == "blocked":
        why = "reported fraud" if outcome.value == "fraud" else "replied STOP to SMS; use channel 'call'"
        raise DestinationBlocked(f"The destination is blocked: it {why}.")
    assert outcome.verification is not None
    metrics.started(outcome.verification.channel.value)
    # The create script put the delivery in the outbox: with the WAIT in the same pipeline, an
    # acknowledged start is on the replicas with its delivery; a retry finds it existing.
    _confirmed(outcome.replicated)
    return outcome.verification, True


def _kept_code(svc: Services, opts: CodeOptions) -> str | None:
    """The code every attempt of a verification sends (custom_code, or same_code's), or None."""
    return opts.custom_code or (codes.generate(opts.length or svc.settings.code_length) if opts.same_code else None)


def _option_fields(svc: Services, opts: CodeOptions, kept: str | None) -> dict[str, str]:
    """The hash fields that keep a verification's own code settings."""
    fields = {
        "o_len": opts.length, "o_ttl": opts.ttl, "o_org": opts.org_name, "o_dd": opts.delivery_deadline,
        "o_voice": opts.voice,
        "o_warn": None if opts.share_warning is None else int(opts.share_warning),
        "keep": codes.encrypt(svc.key("code-cipher"), kept) if kept else None,
    }
    return {k: str(v) for k, v in fields.items() if v is not None} | {f"x_{k}": v for k, v in opts.tags}


def _read(svc: Services, verification_id: str) -> Outcome:
    """Read a verification in one script that first ends it if it is past its expiry (Redis time)."""
    outcome = note_end(svc.store.finish(verification_id, Status.EXPIRED, Reason.EXPIRED, only_if_due=True))
    if outcome.verification is None:
        raise NotFound(f"No verification {verification_id}.")
    return outcome


def get(svc: Services, verification_id: str) -> Verification:
    """A verification by id, ending it first if it is past its expiry."""
    v = _read(svc, verification_id).verification
    assert v is not None
    return v


def live(svc: Services, live_key: str) -> Verification | None:
    """The verification last started under a live key (CodeOptions.live_key), in whatever state."""
    found = svc.store.live(live_key)
    return get(svc, found) if found and svc.store.load(found) else None


def wait(svc: Services, verification_id: str, seconds: float) -> Verification:
    """Block until the verification leaves pending or the time is up (pub/sub, no polling)."""
    deadline = time.monotonic() + seconds
    with svc.store.subscribe_done(verification_id) as subscription:
        while True:
            outcome = _read(svc, verification_id)
            v = outcome.verification
            assert v is not None
            # Until the expiry by Redis's clock, not this node's.
            left = min(deadline - time.monotonic(), max(v.expires_at - outcome.now, 0) + 0.05)
            if not v.pending or left <= 0:
                return v
            subscription.get_message(timeout=min(left, 1.0))


def check(
    svc: Services, verification_id: str, code: str, message_sid: str | None = None, read: Verification | None = None,
) -> tuple[Verification, bool]:
    """Check a code atomically; (verification, valid). Exactly one right check approves.

    message_sid: the inbound SMS that carried the code; a repeat of it checks nothing.
    read: the verification as the caller read it (else its user, if any, is learnt from the script).
    """
    message = (message_sid, INBOUND_DEDUPE_TTL) if message_sid else None
    # Per key the stored form, then the hex form of codes stored before it (both keyed hashes).
    digests = [form for key in svc.keys("code-hmac") for form in codes.check_digests(key, verification_id, code)]
    # One call, the record unread: a verification naming a user answers 'subject' (their
    # allowance's key is named by them) and is checked again with it. An approval queues its
    # conversion (fold_conversions).
    allowance = abuse.check_allowance(svc, read.user_id) if read else abuse.check_allowance(svc, None, known=False)
    outcome = svc.store.check(verification_id, "digest", *digests, message=message, allowance=allowance)
    if outcome.kind == "subject":
        allowance = abuse.check_allowance(svc, outcome.value)
        outcome = svc.store.check(verification_id, "digest", *digests, message=message, allowance=allowance)
    if outcome.kind == "refused":
        raise abuse.refusal("user", int(outcome.value))
    if outcome.kind == "totp":
        verdict = methods.totp_verify(svc, outcome.verification, code, now=float(outcome.value))
        outcome = svc.store.check(verification_id, "verdict", "1" if verdict else "0")
    elif outcome.kind == "recovery_code" and outcome.verification is not None:
        user_id = outcome.verification.user_id
        digests = methods.recovery_digests(svc, user_id, code) if user_id else []
        # The code is used up in the same script that approves, so it works exactly once.
        outcome = (svc.store.check(verification_id, "recovery", *digests, user_id=user_id)
                   if digests else svc.store.check(verification_id, "verdict", "0"))
    if outcome.kind == "not_found" or outcome.verification is None:
        raise NotFound(f"No verification {verification_id}.")
    note_end(outcome)
    return outcome.verification, outcome.kind == "valid"


def cancel(svc: Services, verification_id: str) -> Verification:
    """Cancel a pending verification; a finished one is returned unchanged."""
    outcome = note_end(svc.store.finish(verification_id, Status.CANCELED, Reason.CANCELED))
    if outcome.kind == "not_found" or outcome.verification is None:
        raise NotFound(f"No verification {verification_id}.")
    return outcome.verification


def approve(svc: Services, verification_id: str) -> Verification:
    """Approve a pending verification without a code (the app checked a code of its own)."""
    outcome = note_end(svc.store.finish(verification_id, Status.APPROVED, None))
    if outcome.kind == "not_found" or outcome.verification is None:
        raise NotFound(f"No verification {verification_id}.")
    return outcome.verification


def end(svc: Services, verification_id: str, attempt: int, status: Status, reason: Reason | None) -> Outcome:
    """End a verification from a channel's event (keypress, fraud report, reply), for one attempt."""
    return note_end(svc.store.finish(verification_id, status, reason, attempt=attempt))


# Channels whose code lifetime a verification's own (CodeOptions.ttl) replaces.
OWN_TTL_CHANNELS = frozenset({Channel.SMS, Channel.CALL})


def delivery_failed(
    svc: Services, verification_id: str, attempt: int, error_code: int | None, why: str,
    action: Action | None = None, deadline_due: bool = False,
) -> Outcome | None:
    """An attempt could not deliver: move on to the next channel, or end the verification."""
    v = svc.store.load(verification_id)
    if v is None or not v.pending or v.attempt.number != attempt:
        return None
    action = action or (classify(error_code) if error_code is not None else Action.FALLBACK)
    step = None if action is Action.STOP else next_channel(svc, v)
    if step is not None and not abuse.fallback_allowed(svc, v, step[1]):
        step = None  # the send cap, a tripped breaker or the budget: no further send
    return _advance(svc, v, step, why, deadline_due=deadline_due)


def _latest_expiry(svc: Services, v: Verification, channel: Channel) -> float:
    first, now = ttl_for(svc, v.attempts[0].channel, v.code_ttl), ttl_for(svc, channel, v.code_ttl)
    return abuse.latest_expiry(v, first, now)


def _advance(
    svc: Services, v: Verification, step: tuple[int, Channel] | None, why: str,
    resend_interval: int | None = None, deadline_due: bool = False,
) -> Outcome:
    position, channel = step if step else (v.position, None)
    outcome = note_end(svc.store.advance(v.id, v.attempt.number, Step(
        channel, position, ttl_for(svc, channel, v.code_ttl) if channel else 0, why, v.attempt.error_code,
        resend_interval, deadline_due, _latest_expiry(svc, v, channel) if channel else None,
    )))
    if outcome.kind == "advanced":  # the new attempt's delivery is in the outbox, due now
        metrics.fallback(svc, v.attempt.channel.value, channel.value if channel else "", why)
    return outcome


def resend(
    svc: Services, verification_id: str, channel: Channel | None,
    interval: int | None = None, max_sends: int | None = None,
) -> Verification:
    """A new attempt (a new code, unless the verification keeps one) on the given channel or the next."""
    read = _read(svc, verification_id)
    v, now = read.verification, read.now
    assert v is not None
    if not v.pending:
        raise NotPending(f"Verification {verification_id} is {v.status.value}.")
    # The attempt number is compared-and-set by advance, so this read cannot let a race exceed the cap.
    if max_sends is not None and v.attempt.number >= max_sends:
        raise RateLimited("This verification was sent the most times allowed.",
                          retry_after=max(int(v.expires_at - now), 1), reason="max_sends")
    wait = svc.settings.resend_interval if interval is None else interval
    # Refused here before it counts against any limit; advance.lua decides it again atomically.
    if v.attempt.started_at + wait > now:
        raise RateLimited("A new attempt was started moments ago.", retry_after=int(v.attempt.started_at + wait - now) + 1)
    step = next_channel(svc, v, forced=channel)
    if step is None and channel is None:
        step = (v.position, v.channel)  # the chain is used up: repeat the current channel
    if step is None:
        raise DestinationBlocked(f"Channel {channel.value if channel else ''} cannot reach this number.")
    abuse.admit_resend(svc, v, step[1], now)
    # The script refuses a resend too soon after the attempt began, by Redis's clock.
    outcome = _advance(svc, v, step, "resend", resend_interval=wait)
    if outcome.kind == "too_soon":
        raise RateLimited("A new attempt was started moments ago.", retry_after=int(outcome.value) or 1)
    if outcome.kind != "advanced":
        raise NotPending(f"Verification {verification_id} changed; read it again.")
    assert outcome.verification is not None
    return outcome.verification


# -- two-way SMS replies and opt-out keywords -----------------------------------------
INBOUND_DEDUPE_TTL = 86400


@dataclass(frozen=True)
class ReplyOutcome:
    """What a texted reply did: the verification it was matched to (if any), and whether it approved."""

    verification: Verification | None
    approved: bool


def pending_reply(svc: Services, senders: list[str], number: str) -> Verification | None:
    """The newest verification prompted by SMS from one of the senders to number that awaits a reply."""
    for verification_id in svc.store.reply_candidates(senders, number):
        v = svc.store.load(verification_id)
        if v is not None and v.pending and v.channel is Channel.SMS_REPLY and v.to == number:
            return v  # past its timeout, the check below ends it as reply_timeout instead
    return None


def on_reply(svc: Services, senders: list[str], number: str, code: str, message_sid: str) -> ReplyOutcome:
    """Check a texted code like the API does, against the newest verification awaiting a reply."""
    v = pending_reply(svc, senders, number)
    if v is None:
        return ReplyOutcome(None, False)
    try:
        checked, valid = check(svc, v.id, code, message_sid, read=v)
    except NotFound:
        return ReplyOutcome(None, False)
    log.info("sms reply from %s for %s: %s", phone.mask(number), v.id, "approved" if valid else checked.status.value)
    return ReplyOutcome(checked, valid)


def opt_out(svc: Services, number: str) -> None:
    """The number said STOP: no SMS to it (explicit SMS starts refused, chains skip SMS) until START."""
    svc.store.set_flag("optout", number, why=f"replied STOP at {iso(time.time())}")
    log.info("sms opt-out of %s", phone.mask(number))


def opt_in(svc: Services, number: str) -> None:
    """The number said START: SMS may reach it again."""
    svc.store.clear_flag("optout", number)
    log.info("sms opt-in of %s", phone.mask(number))


def inbound_handled(svc: Services, message_sid: str) -> bool:
    """Whether an inbound message SID was handled already; Twilio repeats webhooks."""
    return svc.store.message_handled(message_sid)


def inbound_done(svc: Services, message_sid: str) -> None:
    """Note an inbound message as handled, after its effect (so a crash before this leaves it to Twilio's retry)."""
    svc.store.mark_message(message_sid, INBOUND_DEDUPE_TTL)


def report_fraud(svc: Services, v: Verification, attempt: int) -> Outcome:
    """Deny a verification as fraud_reported (call 0#) and block its number from new ones for a while."""
    seconds = svc.settings.fraud_block_seconds
    return note_end(svc.store.finish(
        v.id, Status.DENIED, Reason.FRAUD_REPORTED, attempt=attempt, block=(v.to, seconds) if seconds else None,
    ))


