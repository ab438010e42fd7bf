"""rq jobs: they take ids, reload state, and tolerate a record that has expired away."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from rq import Callback, Retry
from rq.job import Job, get_current_job

from gateway.carrier import Action, CarrierError
from gateway.fallback import NOTHING_SENT
from gateway.models import Channel, Verification
from gateway.services import Services, services

log = logging.getLogger(__name__)

Sender = Callable[[Services, Verification, int, str], str | None]


def _senders() -> dict[Channel, Sender]:
    """Channel -> its send function."""
    from ivr import outbound as ivr_outbound
    from sms import outbound as sms_outbound

    return {
        Channel.SMS: sms_outbound.send_code,
        Channel.SMS_REPLY: sms_outbound.send_reply_prompt,
        Channel.CALL: ivr_outbound.place_call,
        Channel.TOTP: lambda svc, v, attempt, code: None,
        Channel.RECOVERY_CODE: lambda svc, v, attempt, code: None,
    }


def _retry(svc: Services) -> Retry | None:
    """Backoff for transient carrier trouble (429, 5xx, network); then the job gives up."""
    intervals = list(svc.settings.delivery_retry_intervals)
    return Retry(max=len(intervals), interval=intervals) if intervals else None


def enqueue_delivery(svc: Services, verification_id: str, attempt: int) -> Job:
    """Queue the delivery of one attempt."""
    # One transaction (MULTI/EXEC, one round trip): rq's job save and queue push, and the
    # delivery's removal from the outbox, happen together or not at all. With the queue on a
    # Redis of its own (RQ_REDIS_URL) the removal follows; a crash between leaves the entry,
    # which is queued again later and then sends nothing twice (set_code.lua's lease).
    shared = svc.queue.connection is svc.redis
    with svc.queue.connection.pipeline() as pipe:
        job = svc.queue.enqueue_call(
            deliver, args=(verification_id, attempt), retry=_retry(svc), timeout=60,
            result_ttl=0, failure_ttl=86400, on_failure=Callback(delivery_gave_up), pipeline=pipe,
        )
        if shared:
            svc.store.queued(verification_id, attempt, pipe)
        pipe.execute()
    if not shared:
        svc.store.queued(verification_id, attempt)
    return job


def enqueue_authenticator_notice(svc: Services, user_id: str, verification_id: str | None) -> Job:
    """Queue the SMS that tells a user a new authenticator was added (when a number is on file)."""
    return svc.queue.enqueue_call(notify_authenticator, args=(user_id, verification_id), retry=_retry(svc),
                                  timeout=60, result_ttl=0, failure_ttl=86400)


def notify_authenticator(user_id: str, verification_id: str | None) -> None:
    """Text the user's number on file that a new authenticator was added; nothing when none is known."""
    from gateway import methods
    from sms import outbound as sms_outbound

    svc = services()
    target = methods.number_on_file(svc, user_id, verification_id)
    if target is None:
        log.info("authenticator notice for user %s: no number on file", user_id)
        return
    try:
        sms_outbound.send_authenticator_notice(svc, target.to, target.locale)
    except CarrierError as exc:
        log.warning("authenticator notice for user %s: %s", user_id, exc)
        if exc.action is Action.RETRY:
            raise


def _deliver_later(svc: Services, verification_id: str, attempt: int, delay: int) -> None:
    """Look at a delivery held by another job again once that job's lease has run out."""
    svc.queue.enqueue_in(
        timedelta(seconds=delay), deliver, verification_id, attempt, retry=_retry(svc), job_timeout=60,
        result_ttl=0, failure_ttl=86400, on_failure=Callback(delivery_gave_up),
    )


def schedule_timers(svc: Services, verification_id: str, delay: float) -> None:
    """Look at a verification's expiry and deadlines again in `delay` seconds."""
    # A delay, not a time: the due times are Redis's clock, and this node's may differ.
    svc.queue.enqueue_in(
        timedelta(seconds=max(delay, 0)), run_timers, verification_id, result_ttl=0, failure_ttl=86400
    )


def schedule_hangup_check(svc: Services, verification_id: str, attempt: int) -> None:
    """After a call ended without a choice, deny it once a late Gather has had its chance."""
    # Callbacks race: a # pressed just before hanging up may arrive after "completed".
    grace = timedelta(seconds=svc.settings.call_hangup_grace)
    svc.queue.enqueue_in(grace, close_hung_up_call, verification_id, attempt, result_ttl=0, failure_ttl=86400)


def close_hung_up_call(verification_id: str, attempt: int) -> None:
    """Deny a confirm-mode call attempt still undecided after the caller hung up (no_input)."""
    from gateway import verifications
    from gateway.models import Reason, Status

    verifications.end(services(), verification_id, attempt, Status.DENIED, Reason.NO_INPUT)


def deliver(verification_id: str, attempt: int) -> None:
    """Make a code for an attempt and hand it to the attempt's channel."""
    from gateway import verifications

    svc = services()
    v = svc.store.load(verification_id)
    if v is None or not v.pending or v.attempt.number != attempt:
        log.info("delivery of %s/%s skipped: no longer current", verification_id, attempt)
        return
    channel = v.attempt.channel
    send = _senders()[channel]
    code: str | None = ""
    if channel not in NOTHING_SENT:
        # rq retries (and a crashed worker's job) keep the job id: every try sends the same code.
        job = get_current_job()
        fresh = verifications.code_to_send(svc, v)
        claim = verifications.code_for(svc, v, attempt, job.id if job else "inline", fresh)
        if claim.busy_for:
            # Another job holds this attempt (a duplicate enqueue, or a crashed worker's job):
            # by the end of its lease it has sent (then this one sends nothing) or it died.
            _deliver_later(svc, verification_id, attempt, claim.busy_for)
            return
        if claim.code is None:
            return
        code = claim.code
    try:
        sid = send(svc, v, attempt, code)
    except CarrierError as exc:
        if exc.code is not None:
            from gateway import metrics

            metrics.carrier_error(svc, exc.code)
        log.warning("delivery of %s/%s: %s", verification_id, attempt, exc)
        if exc.action is Action.RETRY:
            raise
        verifications.record_failure(svc, verification_id, attempt, exc.code, exc.action)
        return
    sent = verifications.record_sent(svc, verification_id, attempt, channel, sid)
    current = sent.verification
    if current is not None and current.pending:
        due = min(t for t in (current.expires_at, current.deadline) if t)
        schedule_timers(svc, verification_id, due - sent.now)


def delivery_gave_up(job: Job, connection: object, exc_type: type, exc: BaseException, tb: object) -> None:
    """rq's failure callback: retries are used up, so this channel is given up."""
    from gateway import verifications

    if job.retries_left:
        return
    verification_id, attempt = job.args
    code = exc.code if isinstance(exc, CarrierError) else None
    verifications.record_failure(services(), verification_id, attempt, code, Action.FALLBACK)


def run_timers(verification_id: str) -> None:
    """Enforce expiry and delivery deadlines, rescheduling itself while needed."""
    from gateway import verifications

    svc = services()
    again = verifications.run_timers(svc, verification_id)
    if again is not None:
        schedule_timers(svc, verification_id, again)
