"""rq jobs for the rare work off the per-verification path: they take ids, reload state, and
tolerate a record that has expired away. Deliveries and verification timers are not rq jobs:
see gateway/sender.py and gateway/scheduler.py."""
from __future__ import annotations

import logging
from datetime import timedelta

from rq import Retry
from rq.job import Job

from gateway.carrier import Action, CarrierError
from gateway.services import Services, services

log = logging.getLogger(__name__)


def _retry(svc: Services) -> Retry | None:
    """Backoff for transient trouble (carrier 429, 5xx, network; Redis); then the job gives up."""
    intervals = list(svc.settings.delivery_retry_intervals)
    return Retry(max=len(intervals), interval=intervals) if intervals else None


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


def schedule_hangup_check(svc: Services, verification_id: str, attempt: int) -> None:
    """After a call ended without a choice, deny it once a late Gather has had its chance."""
    # Callbacks race: a # pressed just before hanging up may arrive after "completed".
    grace = timedelta(seconds=svc.settings.call_hangup_grace)
    svc.queue.enqueue_in(grace, close_hung_up_call, verification_id, attempt, retry=_retry(svc),
                         result_ttl=0, failure_ttl=86400)


def close_hung_up_call(verification_id: str, attempt: int) -> None:
    """Deny a confirm-mode call attempt still undecided after the caller hung up (no_input)."""
    from gateway import verifications
    from gateway.models import Reason, Status

    verifications.end(services(), verification_id, attempt, Status.DENIED, Reason.NO_INPUT)


# Jobs queued by a version before the outbox sender (issue #15) can still wait in rq when the
# workers are upgraded: they hand their work to the outbox and the timers, due at once.
def deliver(verification_id: str, attempt: int) -> None:
    """(Upgrade only) an old delivery job: its attempt goes into the outbox."""
    services().store.due_now(verification_id, attempt)


def run_timers(verification_id: str) -> None:
    """(Upgrade only) an old timer job: the verification's timer is due now."""
    services().store.due_now(verification_id)
