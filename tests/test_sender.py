"""The sender's bounds: the send backlog refuses starts with 503 + Retry-After (and /metrics shows
it), and the in-flight limit halves on a carrier 429 and grows back. Real Redis, no carrier."""
from __future__ import annotations

import logging

import pytest
import redis

from gateway import create_app
from gateway.sender import Sender, Throttle
from tests.conftest import API_KEY, redis_dump
from tests.stack import poll
from tests.test_abuse import metric

MOBILE = "+48600100200"


@pytest.fixture
def bounded(settings):  # type: ignore[no-untyped-def]
    app = create_app(settings.replace(send_backlog_max=2))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    return app, client


def start(client, to: str):  # type: ignore[no-untyped-def]
    return client.post("/v1/verifications", json={"to": to, "channel": "sms"})


def test_starts_past_the_send_backlog_bound_are_refused_with_503_and_change_nothing(
        bounded, redis_db: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    app, client = bounded
    for i in range(3):  # no worker runs: each start's delivery stays due in the outbox
        assert start(client, f"+4860010030{i}").status_code == 201
    assert metric(client, "gateway_send_backlog") == 3 and metric(client, "gateway_send_backlog_max") == 2
    before = redis_dump(redis_db)
    r = start(client, "+48600100399")
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "unavailable"
    assert int(r.headers["Retry-After"]) > 0
    assert redis_dump(redis_db) == before  # no limit counted, nothing created
    # Once senders have worked the backlog down, starts are taken again.
    app.extensions["gateway"].redis.delete("gw:outbox")
    assert start(client, "+48600100399").status_code == 201


def test_no_bound_when_the_setting_is_zero(settings, redis_db: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    client = create_app(settings.replace(send_backlog_max=0)).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    assert all(start(client, f"+4860010040{i}").status_code == 201 for i in range(4))


def test_a_429_halves_the_in_flight_limit_and_successes_grow_it_back_by_one() -> None:
    throttle = Throttle(32)
    assert throttle.take(64, 0) == 32  # never more in flight than the setting
    assert throttle.take(1, 0) == 0
    throttle.done(throttled=True)
    assert throttle.limit == 16 and throttle.take(64, 0) == 0  # 31 still in flight, above the new limit
    for _ in range(20):
        throttle.done(throttled=True)
    assert throttle.limit == 1  # never below one
    throttle.give_back(throttle.in_flight)
    for _ in range(5):
        assert throttle.take(1, 0) == 1
        throttle.done(throttled=False)
    assert throttle.limit == 6
    for _ in range(100):
        throttle.take(1, 0)
        throttle.done(throttled=False)
    assert throttle.limit == 32 and throttle.in_flight == 0


def test_nothing_due_means_a_sender_waits_and_sends_nothing(app, redis_db: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    sender = Sender(app)
    try:
        with app.app_context():
            assert sender.pass_once() > 0
        assert sender.throttle.in_flight == 0
    finally:
        sender.stop()


def test_codes_are_taken_after_redis_forgot_its_scripts(app, client, redis_db: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    from gateway import deliveries

    vid = start(client, MOBILE).get_json()["id"]
    svc = app.extensions["gateway"]
    redis_db.script_flush()  # as after a restart or a failover to a replica that never ran them
    v = svc.store.load(vid)
    assert deliveries.code_for(svc, v, 1, "246802") == "246802"
    assert deliveries.code_for(svc, v, 1, "135791") == "246802"  # a later try: the same code


def test_an_attempt_the_carrier_took_is_not_sent_again_when_its_lease_ends(app, client, redis_db) -> None:  # type: ignore[no-untyped-def]
    from gateway import deliveries
    from gateway.models import AttemptStatus

    vid = start(client, MOBILE).get_json()["id"]
    svc = app.extensions["gateway"]
    v = svc.store.load(vid)
    assert deliveries.code_for(svc, v, 1, "246802") == "246802"  # sent; the sender's record then lost
    deliveries.record_status(svc, vid, 1, AttemptStatus.DELIVERED, sid="SM" + "1" * 32)  # its callback
    redis_db.zadd("gw:timers", {vid: 9e9})
    assert deliveries.code_for(svc, svc.store.load(vid), 1, "135791") is None  # the lease ended: not again
    assert redis_db.zscore("gw:outbox", f"{vid}:1") is None
    record = svc.store.load(vid)
    assert record.deadline is None  # delivered: its deadline can no longer act, so the next timer is the expiry
    assert redis_db.zscore("gw:timers", vid) == pytest.approx(record.expires_at, abs=1e-3)
    assert record.attempt.status is AttemptStatus.DELIVERED


def test_a_text_the_carrier_took_keeps_only_its_digest_and_a_call_keeps_its_code_to_read_out(app, client, redis_db) -> None:  # type: ignore[no-untyped-def]
    from gateway import deliveries
    from gateway.models import Channel

    svc = app.extensions["gateway"]
    texted = start(client, MOBILE).get_json()["id"]
    called = client.post("/v1/verifications", json={"to": "+48600100201", "channel": "call"},
                         headers={"Authorization": f"Bearer {API_KEY}"}).get_json()["id"]
    for vid, channel in ((texted, Channel.SMS), (called, Channel.CALL)):
        assert deliveries.code_for(svc, svc.store.load(vid), 1, "246802") == "246802"
        assert redis_db.hget(f"gw:vf:{vid}", "enc")
        assert deliveries.record_sent(svc, vid, 1, channel, "SM" + "1" * 32).kind == "changed"
    assert not redis_db.hexists(f"gw:vf:{texted}", "enc") and redis_db.hget(f"gw:vf:{texted}", "code")
    assert deliveries.spoken_code(svc, svc.store.load(called)) == "246802"
    assert client.post(f"/v1/verifications/{texted}/check", json={"code": "246802"},
                       headers={"Authorization": f"Bearer {API_KEY}"}).get_json()["valid"]


def test_delivery_and_timer_jobs_queued_before_the_upgrade_hand_over_to_the_outbox(app, client, redis_db) -> None:  # type: ignore[no-untyped-def]
    from rq import SimpleWorker

    vid = start(client, MOBILE).get_json()["id"]
    svc = app.extensions["gateway"]
    redis_db.delete("gw:outbox", "gw:timers")  # as an old version left it: the work only in rq
    svc.queue.enqueue("gateway.jobs.deliver", vid, 1)
    svc.queue.enqueue("gateway.jobs.run_timers", vid)
    with app.app_context():
        SimpleWorker([svc.queue], connection=svc.queue.connection).work(burst=True)
    assert redis_db.zrange("gw:outbox", 0, -1) == [f"{vid}:1".encode()]
    assert redis_db.zrange("gw:timers", 0, -1) == [vid.encode()]


def test_an_ended_verification_leaves_neither_outbox_entry_nor_timer(app, client, redis_db) -> None:  # type: ignore[no-untyped-def]
    from gateway import deliveries
    from gateway.models import Channel

    svc = app.extensions["gateway"]
    vid = start(client, MOBILE).get_json()["id"]
    assert redis_db.zscore("gw:timers", vid) is not None  # from the start: the expiry
    v = svc.store.load(vid)
    assert deliveries.code_for(svc, v, 1, "246802") == "246802"
    deliveries.record_sent(svc, vid, 1, Channel.SMS, "SM" + "0" * 32)
    assert redis_db.zcard("gw:outbox") == 0
    assert redis_db.zscore("gw:timers", vid) == float(redis_db.hget(f"gw:vf:{vid}", "deadline"))  # the earlier
    r = client.post(f"/v1/verifications/{vid}/check", json={"code": "246802"})
    assert r.get_json()["status"] == "approved"
    assert redis_db.zcard("gw:outbox") == 0 and redis_db.zcard("gw:timers") == 0


def test_a_send_whose_record_is_never_confirmed_is_given_up_saying_what_becomes_of_it(
        settings, client, redis_db, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    from tests.test_totp import enrol, start_totp

    enrol(client, "u1")
    vid = start_totp(client, "u1").get_json()["id"]  # ready as soon as its record is written: no carrier
    waiting = create_app(settings.replace(redis_wait_replicas=1, redis_wait_ms=20))  # and no replica confirms it
    sender = Sender(waiting)
    sender.lease = 1  # the record is retried for a second
    try:
        with waiting.app_context(), caplog.at_level(logging.WARNING, logger="gateway.sender"):
            sender.pass_once()
            poll(lambda: sender.throttle.in_flight == 0, 10, what="the send to end")
    finally:
        sender.stop()
    [given_up] = [r.getMessage() for r in caplog.records if r.name == "gateway.sender" and r.levelno == logging.ERROR]
    # Not 'left to the next claim': the record is on the primary, and its outbox entry gone with it.
    assert given_up.startswith(f"delivery {vid}:1: Redis unavailable")
    assert "record is not confirmed" in given_up and "comes back when its lease ends" in given_up
    assert redis_db.zscore("gw:outbox", f"{vid}:1") is None


def test_a_pass_takes_a_delivery_in_two_round_trips_without_reading_its_record(app, client, redis_db) -> None:  # type: ignore[no-untyped-def]
    # What goes over the wire, not a timing (bench/ measures speed): claim.lua, then set_code.lua,
    # which answers the record; the send itself runs on a sending thread (the carrier refuses here).
    from bench.probes import count_round_trips
    from gateway import deliveries

    svc = app.extensions["gateway"]
    warm = start(client, "+48600100201").get_json()["id"]
    assert deliveries.code_for(svc, svc.store.load(warm), 1, "111111") == "111111"  # set_code.lua loaded
    redis_db.zrem("gw:outbox", f"{warm}:1")
    sender = Sender(app)
    try:
        with app.app_context():
            assert sender.pass_once() > 0  # claim.lua loaded; nothing due
            vid = start(client, MOBILE).get_json()["id"]
            with count_round_trips() as trips:
                wait = sender.pass_once()
    finally:
        sender.stop()
    assert trips.trips == [["EVALSHA"], ["EVALSHA"]], trips.describe()
    assert wait > 0  # fewer due than it had room for: it waits for a wake-up instead of claiming again at once
    assert redis_db.hget(f"gw:vf:{vid}", "enc")  # the code was taken


def _started(app, options, channel: str = "sms"):  # type: ignore[no-untyped-def]
    from gateway import deliveries, verifications
    from gateway.schemas import StartRequest

    svc = app.extensions["gateway"]
    with app.app_context():
        warm, _ = verifications.start(svc, StartRequest(to="+48600100201", channel="sms"), None)
        deliveries.code_for(svc, warm, 1, "111111")  # set_code.lua loaded: round trips counted below are its own
        v, _ = verifications.start(svc, StartRequest(to=MOBILE, channel=channel, options=options), None)
    return svc, v.id


def test_a_verification_with_its_own_code_length_gets_it_after_one_more_round_trip(app, client, redis_db) -> None:  # type: ignore[no-untyped-def]
    from bench.probes import count_round_trips
    from gateway import deliveries
    from gateway.models import CodeOptions

    svc, vid = _started(app, CodeOptions(length=8))
    with count_round_trips() as trips:
        (coded,), confirmed = deliveries.take_codes(svc, [deliveries.CodeRequest(vid, 1)])
    assert confirmed and coded is not None and len(coded.code) == 8 and coded.verification.id == vid
    assert trips.trips == [["EVALSHA"], ["EVALSHA"]]  # 'length' (nothing written), then its own length
    assert deliveries.take_codes(svc, [deliveries.CodeRequest(vid, 1)])[0][0].code == coded.code  # again
    r = client.post(f"/v1/verifications/{vid}/check", json={"code": coded.code})
    assert r.get_json()["status"] == "approved"


def test_a_kept_code_is_sent_on_every_attempt_and_its_digest_kept_after_the_first(app, client, redis_db) -> None:  # type: ignore[no-untyped-def]
    from bench.probes import count_round_trips
    from gateway import deliveries, verifications
    from gateway.models import Channel, CodeOptions

    svc, vid = _started(app, CodeOptions(same_code=True))
    assert redis_db.hget(f"gw:vf:{vid}", "keep") and redis_db.hget(f"gw:vf:{vid}", "keepd")  # both from the start
    with count_round_trips() as first:  # the digest stored by the start: one call
        (coded,), _ = deliveries.take_codes(svc, [deliveries.CodeRequest(vid, 1)])
    assert coded is not None and len(first.trips) == 1
    assert redis_db.hget(f"gw:vf:{vid}", "keepd") == redis_db.hget(f"gw:vf:{vid}", "code")
    _, older = _started(app, CodeOptions(same_code=True))
    redis_db.hdel(f"gw:vf:{older}", "keepd")  # kept without its digest, as a start before it left it
    with count_round_trips() as asked:  # 'kept': asked again with the kept code, and its digest stored
        (old_coded,), _ = deliveries.take_codes(svc, [deliveries.CodeRequest(older, 1)])
    assert old_coded is not None and len(asked.trips) == 2
    assert redis_db.hget(f"gw:vf:{older}", "keepd") == redis_db.hget(f"gw:vf:{older}", "code")
    deliveries.record_sent(svc, vid, 1, Channel.SMS, "SM" + "2" * 32)
    verifications.resend(svc, vid, Channel.SMS, interval=0)
    with count_round_trips() as second:  # the digest kept beside it: set_code.lua uses it in one call
        (again,), _ = deliveries.take_codes(svc, [deliveries.CodeRequest(vid, 2)])
    assert again is not None and again.code == coded.code and len(second.trips) == 1
    r = client.post(f"/v1/verifications/{vid}/check", json={"code": coded.code})
    assert r.get_json()["status"] == "approved"
    assert redis_db.hget(f"gw:vf:{vid}", "keepd") is None  # forgotten with the code when it ended


def test_an_idle_sender_waits_for_a_wake_up_and_claims_in_the_same_round_trip(app, client, redis_db) -> None:  # type: ignore[no-untyped-def]
    from bench.probes import count_round_trips

    sender = Sender(app)
    try:
        with app.app_context():
            assert sender.pass_once() > 0  # claim.lua loaded; nothing due
            vid = start(client, MOBILE).get_json()["id"]  # its script leaves the wake-up token
            with count_round_trips() as trips:
                claimed, _ = sender._pass(wait=5.0)
    finally:
        sender.stop()
    assert trips.trips[0] == ["BLPOP", "EVALSHA"], trips.describe()  # the wait ended by the token, then the claim
    assert claimed == 1 and redis_db.llen("gw:outbox:wake") == 0
    assert redis_db.hget(f"gw:vf:{vid}", "enc")


def test_a_waited_claim_still_claims_after_redis_forgot_its_scripts(app, client, redis_db) -> None:  # type: ignore[no-untyped-def]
    vid = start(client, MOBILE).get_json()["id"]
    redis_db.script_flush()  # as after a restart or a failover to a replica that never ran them
    claim = app.extensions["gateway"].store.claim("gw:outbox", 8, 30, wake=("gw:outbox:wake", 0.5))
    assert claim.members == [f"{vid}:1"] and redis_db.llen("gw:outbox:wake") == 0  # the token taken by the wait


@pytest.mark.parametrize(("channel", "options", "ttl", "deadline"), [
    ("sms", {}, 300, 30), ("sms", {"ttl": 120, "delivery_deadline": 7}, 120, 7),
    ("sms_reply", {"ttl": 120}, 60, 30), ("call", {"ttl": 120, "delivery_deadline": 7}, 120, None),
])
def test_set_code_takes_the_code_lifetime_and_deadline_from_the_record(app, redis_db, channel, options, ttl, deadline) -> None:  # type: ignore[no-untyped-def]
    # set_code.lua applies verifications.ttl_for and the delivery deadline's rule itself (the sender
    # no longer reads the record): the settings' defaults, or the verification's own where they apply.
    from gateway import deliveries
    from gateway.models import CodeOptions

    svc, vid = _started(app, CodeOptions(**options), channel)
    assert (svc.settings.sms_code_ttl, svc.settings.sms_reply_timeout, svc.settings.delivery_deadline) == (300, 60, 30)
    (coded,), _ = deliveries.take_codes(svc, [deliveries.CodeRequest(vid, 1)])
    v = coded.verification
    assert v.expires_at == pytest.approx(v.created_at + ttl, abs=2)
    assert v.deadline == (None if deadline is None else pytest.approx(v.created_at + deadline, abs=2))


def test_a_stored_code_that_no_secret_decrypts_sends_nothing_and_says_why(app, settings, redis_db, caplog) -> None:  # type: ignore[no-untyped-def]
    """A kept code stored under a secret that was then replaced without GATEWAY_SECRET_KEY_PREVIOUS:
    nothing is sent (no other code in its place), and the error names the settings to fix."""
    import logging

    from gateway import deliveries
    from gateway.models import CodeOptions

    _, vid = _started(app, CodeOptions(same_code=True))
    rotated = create_app(settings.replace(secret_key="r" * 40))
    svc = rotated.extensions["gateway"]
    with rotated.app_context(), caplog.at_level(logging.ERROR, logger="gateway.deliveries"):
        (coded,), _ = deliveries.take_codes(svc, [deliveries.CodeRequest(vid, 1)])
    assert coded is None
    assert any("GATEWAY_SECRET_KEY_PREVIOUS" in r.getMessage() and vid in r.getMessage() for r in caplog.records)
