"""Verification timers (gw:timers) claimed with a lease: the claim's run writes the next due time only
while the timer still holds the lease, and an end the replicas did not confirm is a warning.
Real Redis; the replicas that do not answer are simply absent (REDIS_WAIT_REPLICAS=1, none there)."""
from __future__ import annotations

import logging
import threading
import time

import pytest
import redis

from gateway import create_app, keys, verifications
from gateway.models import Channel
from gateway.scheduler import TIMER_LEASE, run_due_timers
from tests.conftest import API_KEY
from tests.stack import poll

MOBILE = "+48600100200"


def redis_now(r: redis.Redis) -> float:
    """Redis's clock, the one the scripts decide by."""
    seconds, micros = r.time()
    return seconds + micros / 1e6


def start(app, channel: str = "sms") -> str:  # type: ignore[no-untyped-def]
    http = app.test_client()
    http.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    r = http.post("/v1/verifications", json={"to": MOBILE, "channel": channel})
    assert r.status_code == 201, r.get_json()
    return str(r.get_json()["id"])


def test_a_claimed_timer_is_rescheduled_only_while_it_holds_the_lease(app, redis_db: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    store = app.extensions["gateway"].store
    vid = start(app)
    redis_db.zadd(keys.TIMERS, {vid: 0})
    claim = store.claim(keys.TIMERS, 10, TIMER_LEASE)
    assert claim.members == [vid] and redis_db.zscore(keys.TIMERS, vid) == claim.held
    assert claim.held == pytest.approx(claim.now + TIMER_LEASE, abs=1e-3)

    # Meanwhile a script set an earlier time (a new attempt's expiry, a delivery deadline).
    redis_db.zadd(keys.TIMERS, {vid: claim.now + 5})
    assert store.reschedule(keys.TIMERS, vid, claim.held, claim.now + 100) is False
    assert store.reschedule(keys.TIMERS, vid, claim.held, None) is False  # nor dropped
    assert redis_db.zscore(keys.TIMERS, vid) == claim.now + 5

    redis_db.zadd(keys.TIMERS, {vid: 0})
    claim = store.claim(keys.TIMERS, 10, TIMER_LEASE)
    assert store.reschedule(keys.TIMERS, vid, claim.held, claim.now + 100) is True  # still held: written
    assert redis_db.zscore(keys.TIMERS, vid) == claim.now + 100
    redis_db.zadd(keys.TIMERS, {vid: 0})
    claim = store.claim(keys.TIMERS, 10, TIMER_LEASE)
    assert store.reschedule(keys.TIMERS, vid, claim.held, None) is True
    assert redis_db.zscore(keys.TIMERS, vid) is None
    assert store.reschedule(keys.TIMERS, vid, claim.held, claim.now + 100) is False  # never revived


def _waiting_for_replicas(r: redis.Redis) -> int | None:
    """The id of the client blocked in WAIT, if one is."""
    return next((int(c["id"]) for c in r.client_list() if c.get("cmd") == "wait" and "b" in c.get("flags", "")), None)


def test_a_stalled_senders_release_leaves_the_lease_of_the_sender_that_took_the_entry_over(app, redis_db: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    """A sender whose claim the replicas did not confirm releases it (Store.release); if it stalled
    past its lease and another sender took the entry over meanwhile, its release must not cut that
    newer lease short (a second send of the attempt), nor revive an entry that left the outbox."""
    store = app.extensions["gateway"].store
    vid = start(app)
    entry = f"{vid}:1"
    first = store.claim(keys.OUTBOX, 10, 20)
    assert first.members == [entry]
    redis_db.zadd(keys.OUTBOX, {entry: first.now - 1})  # its lease ran out while it stalled
    second = store.claim(keys.OUTBOX, 10, 20)  # another sender takes the entry over
    assert second.members == [entry] and second.held != first.held
    store.release([entry], first.now + 1, first.held)  # the stalled sender's release
    assert redis_db.zscore(keys.OUTBOX, entry) == second.held
    store.release([entry], second.now + 1, second.held)  # the holder's own release is written
    assert redis_db.zscore(keys.OUTBOX, entry) == pytest.approx(second.now + 1, abs=1e-6)
    redis_db.zrem(keys.OUTBOX, entry)
    store.release([entry], second.now + 1, second.now + 1)
    assert redis_db.zscore(keys.OUTBOX, entry) is None  # never revived


def test_a_new_attempt_started_while_its_timer_runs_keeps_its_earlier_expiry(settings, redis_db: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    quick = settings.replace(sms_code_ttl=10, resend_interval=0)
    app = create_app(quick)
    # The leader's Redis calls WAIT for a replica that is not there: its run's script is followed by a
    # WAIT that holds the run between its read and its reschedule until the test lets it go (or 4 s
    # pass, within the client's 5 s socket timeout).
    leader = create_app(quick.replace(redis_wait_replicas=1, redis_wait_ms=4000))
    vid = start(app, channel="call")  # expires in CALL_TTL (300 s)
    first_expiry = redis_db.zscore(keys.TIMERS, vid)
    redis_db.zadd(keys.TIMERS, {vid: 0})  # its timer is due (say a reply timeout)

    def lead() -> None:
        with leader.app_context():
            run_due_timers(leader, time.monotonic() + 5)

    running = threading.Thread(target=lead)
    running.start()
    try:
        waiting = poll(lambda: _waiting_for_replicas(redis_db), 10, 0.01, what="the timer's run to wait for replicas")
        v = verifications.resend(app.extensions["gateway"], vid, Channel.SMS)  # expires in 10 s
        assert v.expires_at < first_expiry and redis_db.zscore(keys.TIMERS, vid) == v.expires_at
        assert _waiting_for_replicas(redis_db) == waiting  # the run is still between its read and its write
    finally:
        redis_db.client_unblock(waiting)  # WAIT answers 0 replicas: the run goes on to reschedule
        running.join(10)
    assert not running.is_alive()
    assert redis_db.zscore(keys.TIMERS, vid) == v.expires_at  # not the run's stale 300 s


def test_an_end_the_replicas_did_not_confirm_is_a_warning_and_a_second_run_changes_nothing(
        settings, redis_db: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    app = create_app(settings.replace(sms_code_ttl=1))
    leader = create_app(settings.replace(sms_code_ttl=1, redis_wait_replicas=1, redis_wait_ms=20))
    vid = start(app)
    expires = float(redis_db.hget(keys.verification(vid), "expires") or 0)
    poll(lambda: redis_now(redis_db) > expires, 5, what="the verification's expiry")
    with leader.app_context(), caplog.at_level(logging.WARNING):
        assert run_due_timers(leader, time.monotonic() + 5) == 1
    assert redis_db.hget(keys.verification(vid), "status") == b"expired"  # on the primary
    assert redis_db.zscore(keys.TIMERS, vid) is None  # the end took its timer: no lease to wait out
    [record] = [r for r in caplog.records if r.name == "gateway.scheduler"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "REDIS_WAIT_REPLICAS" in record.getMessage() and vid in record.getMessage()

    # Run again (as after a failover that lost nothing): idempotent, one audit record.
    redis_db.zadd(keys.TIMERS, {vid: 0})
    with leader.app_context():
        assert run_due_timers(leader, time.monotonic() + 5) == 1
    assert redis_db.hget(keys.verification(vid), "status") == b"expired"
    assert redis_db.zscore(keys.TIMERS, vid) is None and redis_db.xlen(keys.AUDIT) == 1
