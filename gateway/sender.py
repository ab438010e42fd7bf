"""The sender: deliveries taken from the outbox and sent many at a time inside a worker process.

Why not an rq job per delivery (measured in docs/performance.md before this change): rq's job
hash is ~1.2 KB per pending verification and its bookkeeping ~27 Redis round trips per job, both
over issue #15's budget (1 KiB, 12 round trips per verification end to end), and an rq worker
runs one job at a time (4.8 sends/s against a 200 ms carrier). The outbox (`gw:outbox`) is
written by the script that makes the attempt anyway; a claim (claim.lua) leases due entries,
and a sender that dies leaves them due again when the lease ends.

One thread claims batches and hands each send to a pool of threads, never more in flight than
the limit: SEND_CONCURRENCY, halved on every Twilio 429/20429 and grown back by one per success.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import redis
from flask import Flask

from gateway import deliveries
from gateway.carrier import Action, CarrierError
from gateway.models import Channel, Verification
from gateway.services import Services
from gateway.store import OUTBOX, OUTBOX_WAKE

log = logging.getLogger(__name__)
T = TypeVar("T")

Send = Callable[[Services, Verification, int, str], str | None]
BATCH = 64  # entries claimed at most per round trip
IDLE_WAIT = 1.0  # seconds an idle sender waits for a wake-up before it looks anyway
RELEASE_DELAY = 1.0  # seconds before a claim the replicas did not confirm is tried again
# Twilio 429 + 20429: "too many concurrent API requests; request not processed, safe to retry"
# (https://www.twilio.com/docs/errors/20429; ../shared/reference/twilio-wire.md §1 and §3). The
# request was not processed, so it is sent again after this back-off, without using a try up.
THROTTLED_BACKOFF = 1.0


def senders() -> dict[Channel, Send]:
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


@dataclass(frozen=True)
class Delivery:
    """One claimed attempt ready to go: its record as set_code.lua answered it, and the code it carries."""

    verification: Verification
    attempt: int
    code: str

    @property
    def entry(self) -> str:
        """Its outbox member."""
        return f"{self.verification.id}:{self.attempt}"


class Throttle:
    """The in-flight limit: at most `most`, halved on a 429, grown back by one per success (AIMD)."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.limit = most
        self.in_flight = 0
        self._changed = threading.Condition()

    def take(self, wanted: int, timeout: float) -> int:
        """Reserve up to `wanted` sends (at least one, waiting up to timeout for room); how many."""
        with self._changed:
            self._changed.wait_for(lambda: self.in_flight < self.limit, timeout)
            granted = max(min(wanted, self.limit - self.in_flight), 0)
            self.in_flight += granted
            return granted

    def give_back(self, count: int) -> None:
        """Return reserved sends that were not used."""
        with self._changed:
            self.in_flight -= count
            self._changed.notify_all()

    def done(self, throttled: bool) -> None:
        """One send has ended: slow down after a 429, else speed up by one."""
        with self._changed:
            self.in_flight -= 1
            if throttled:
                self.limit = max(self.limit // 2, 1)
            else:
                self.limit = min(self.limit + 1, self.most)
            self._changed.notify_all()


def with_redis_retries(what: str, action: Callable[[], T], give_up_at: float, given_up: str) -> T | None:
    """Run a Redis step again after connection trouble (a failover) until give_up_at (monotonic);
    then log `given_up`: what becomes of the delivery without the step."""
    delay = 0.1
    while True:
        try:
            return action()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            if time.monotonic() + delay > give_up_at:
                log.error("%s: Redis unavailable (%s); %s", what, exc, given_up)
                return None
            log.warning("%s: Redis unavailable (%s); again in %.1fs", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _recorded(svc: Services, verification_id: str, attempt: int, channel: Channel, sid: str | None) -> None:
    """Record an accepted send; replicas that do not confirm it count as a connection failure (retried)."""
    if not deliveries.record_sent(svc, verification_id, attempt, channel, sid).replicated:
        raise redis.exceptions.ConnectionError("the record of the send is not yet on REDIS_WAIT_REPLICAS replicas")


class Sender:
    """Claims due deliveries and sends them concurrently; one per worker process."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.svc: Services = app.extensions["gateway"]
        self.throttle = Throttle(self.svc.settings.send_concurrency)
        self.lease = deliveries.delivery_lease(self.svc)
        self.send_to = senders()
        self._local = threading.local()
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(self.throttle.most, "gateway-send", initializer=self._thread_started)
        self._thread = threading.Thread(target=self._loop, name="gateway-sender", daemon=True)

    def start(self) -> None:
        """Start claiming."""
        self._thread.start()

    def stop(self) -> None:
        """Stop claiming and let the sends in flight finish (each within TWILIO_TIMEOUT)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._pool.shutdown(wait=True)

    def _thread_started(self) -> None:
        # Each sending thread gets its own Twilio client, so its own HTTP session and connection:
        # a shared session's pool (urllib3 keeps 10 by default) would open and drop connections.
        self.app.app_context().push()  # public_url() and services() need the app
        carrier = self.svc.carrier.clone() if self.svc.carrier is not None else None
        self._local.svc = dataclasses.replace(self.svc, carrier=carrier)

    def _loop(self) -> None:
        with self.app.app_context():
            failing = False
            wait = 0.0
            while not self._stopping.is_set():
                try:
                    wait = self._pass(wait)[1]
                    if failing:
                        log.warning("sender: Redis back")
                        failing = False
                except redis.exceptions.RedisError as exc:
                    if not failing:
                        log.warning("sender: Redis unavailable (%s); trying again", exc)
                        failing = True
                    wait = 0.0
                    self._stopping.wait(0.5)
                except Exception:  # noqa: BLE001 - one bad record must not stop every delivery
                    log.exception("sender pass failed")
                    wait = 0.0
                    self._stopping.wait(0.5)

    def pass_once(self) -> float:
        """Claim what is due (as much as the limit has room for) and start sending it; answer
        how long to wait before the next pass (0: again at once)."""
        return self._pass()[1]

    def _pass(self, wait: float = 0.0) -> tuple[int, float]:
        """pass_once, first waiting up to `wait` s for a script to announce a new delivery (its
        wake-up token wakes one sender) in the claim's round trip; and how many it claimed."""
        room = self.throttle.take(BATCH, IDLE_WAIT)
        if room == 0:
            return 0, 0
        try:
            claim = self.svc.store.claim(OUTBOX, room, self.lease, wake=(OUTBOX_WAKE, wait) if wait > 0 else None)
        except BaseException:
            self.throttle.give_back(room)
            raise
        self.throttle.give_back(room - len(claim.members))
        if claim.members:
            self._start(claim.members, claim.now, claim.held)
            if len(claim.members) == room:
                return len(claim.members), 0  # a full batch: more may be due
        # Fewer than asked: nothing else was due, so no claim again at once; a delivery made
        # meanwhile left its wake-up token, which ends the next wait at once.
        if claim.next_due is None:
            return len(claim.members), IDLE_WAIT
        return len(claim.members), min(max(claim.next_due - claim.now, 0.01), IDLE_WAIT)

    def _start(self, entries: list[str], now: float, held: float) -> None:
        """Take the claimed attempts' codes (and their records) and hand each to a sending thread
        (each entry holds one reserved send; those not handed over are given back)."""
        submitted = 0
        try:
            submitted = self._hand_over(entries, now, held)
        finally:
            self.throttle.give_back(len(entries) - submitted)

    def _hand_over(self, entries: list[str], now: float, held: float) -> int:
        # No read of the records first: set_code.lua answers each one with its code, and drops the
        # entries that have nothing left to send (ended, moved on, sent).
        requests = []
        for entry in entries:
            verification_id, attempt = entry.rsplit(":", 1)
            requests.append(deliveries.CodeRequest(verification_id, int(attempt)))
        found, confirmed = deliveries.take_codes(self.svc, requests)
        if not confirmed:
            # The replicas do not hold the claim and the code: a failover now could hand this
            # attempt to another sender with no trace of it, so nothing is sent until they do.
            log.warning("sender: claim not confirmed by REDIS_WAIT_REPLICAS replicas; released for later")
            self.svc.store.release(entries, now + RELEASE_DELAY, held)
            return 0
        submitted = 0
        for r, coded in zip(requests, found):
            if coded is not None:  # None: moot (its entry dropped) or its code unreadable
                self._pool.submit(self._send, Delivery(coded.verification, r.attempt, coded.code))
                submitted += 1
        return submitted

    def _send(self, d: Delivery) -> None:
        svc: Services = self._local.svc
        v, attempt = d.verification, d.attempt
        channel = v.attempts[attempt - 1].channel
        give_up_at = time.monotonic() + self.lease
        throttled = False
        try:
            try:
                sid = self.send_to[channel](svc, v, attempt, d.code)
            except CarrierError as exc:
                throttled = exc.http_status == 429 or exc.code == 20429
                with_redis_retries(f"delivery {d.entry}", partial(self._failed, svc, d, exc, throttled), give_up_at,
                                   "the failure is not recorded; the entry is tried again when its lease ends")
                return
            # After the carrier took it, the record must not be lost to a Redis hiccup or failover
            # (nor, with REDIS_WAIT_REPLICAS, be missing on the replicas): an attempt that looks
            # unsent would be sent again when its lease ends.
            took = f"the carrier took it ({sid})" if sid else "the attempt is ready"
            with_redis_retries(f"delivery {d.entry}", partial(_recorded, svc, v.id, attempt, channel, sid), give_up_at,
                               f"{took}, but its record is not confirmed: should it be lost, the entry comes back when "
                               "its lease ends and the same code goes again, unless a status callback recorded the sid")
        except Exception:  # noqa: BLE001 - the entry comes back after its lease
            log.exception("delivery %s failed; it is tried again when its lease ends", d.entry)
        finally:
            self.throttle.done(throttled)

    def _failed(self, svc: Services, d: Delivery, exc: CarrierError, throttled: bool) -> None:
        from gateway import metrics

        log.warning("delivery of %s: %s", d.entry, exc)
        if exc.code is not None:
            metrics.carrier_error(svc, exc.code)
        if throttled:
            deliveries.send_later(svc, d.verification.id, d.attempt, exc.code, THROTTLED_BACKOFF)
        elif exc.action is Action.RETRY:
            deliveries.send_later(svc, d.verification.id, d.attempt, exc.code)
        else:
            deliveries.record_failure(svc, d.verification.id, d.attempt, exc.code, exc.action)

    def drain(self, timeout: float = 30.0) -> None:
        """Send everything due now and wait for it (tests, and `run(burst=True)`)."""
        deadline = time.monotonic() + timeout
        idle_passes = 0
        with self.app.app_context():
            while time.monotonic() < deadline and idle_passes < 2:
                # Two idle passes with nothing in flight: a send that just ended may have queued a fallback.
                claimed, wait = self._pass()
                busy = claimed > 0 or wait == 0 or self.throttle.in_flight > 0
                idle_passes = 0 if busy else idle_passes + 1
                if self.throttle.in_flight:
                    time.sleep(0.01)
