"""One clock: Redis's TIME decides expiry, resend intervals, TOTP steps, the abuse windows and
the dates of records, never a node's clock.

A node whose clock is an hour off is simulated by shifting this process's `time.time` while
it serves a request (the fault is in the node's clock; the gateway's code runs unchanged).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pyotp
import pytest

from gateway import abuse, keys, verifications
from gateway.schemas import parse_start
from gateway.v2_store import V2Store
from gateway.verify_v2.service import ServiceStore
from tests.test_api import give_code, start
from tests.test_totp import deliver_all, enrol, settle_step, start_totp

HOUR = 3600.0


@pytest.fixture
def skewed(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], contextmanager]:  # type: ignore[type-arg]
    """Run a block on a node whose wall clock is `offset` seconds off."""
    real = time.time

    @contextmanager
    def clock(offset: float) -> Iterator[None]:
        monkeypatch.setattr(time, "time", lambda: real() + offset)
        try:
            yield
        finally:
            monkeypatch.setattr(time, "time", real)

    return clock


def test_a_node_an_hour_ahead_neither_expires_early_nor_stamps_its_time(app, client, skewed) -> None:
    created = time.time()
    with skewed(HOUR):
        body = start(client).get_json()
        vid = body["id"]
        give_code(app, vid)
        read = client.get(f"/v1/verifications/{vid}").get_json()
    assert read["status"] == "pending"
    svc = app.extensions["gateway"]
    v = svc.store.load(vid)
    assert abs(v.created_at - created) < 60 and abs(v.expires_at - (created + svc.settings.sms_code_ttl)) < 60
    with skewed(HOUR):
        checked = client.post(f"/v1/verifications/{vid}/check", json={"code": "123456"}).get_json()
    assert checked["valid"] is True and checked["status"] == "approved"


def test_a_node_an_hour_ahead_does_not_skip_the_resend_interval(client, skewed) -> None:
    vid = start(client).get_json()["id"]
    with skewed(HOUR):
        r = client.post(f"/v1/verifications/{vid}/resend", json={})
    assert r.status_code == 429 and r.get_json()["error"]["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1


def test_a_node_an_hour_behind_still_expires_on_time(settings, skewed) -> None:  # type: ignore[no-untyped-def]
    from gateway import create_app

    app = create_app(settings.replace(sms_code_ttl=1))
    c = app.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = "Bearer test-api-key-0123456789"
    vid = start(c).get_json()["id"]
    give_code(app, vid)
    with skewed(-HOUR):
        body = c.get(f"/v1/verifications/{vid}?wait=5").get_json()  # wakes at Redis's expiry
        late = c.post(f"/v1/verifications/{vid}/check", json={"code": "123456"}).get_json()
    assert body["status"] == "expired" and late["valid"] is False


def test_a_node_an_hour_ahead_matches_totp_codes_of_the_true_time(app, client, skewed) -> None:
    totp = enrol(client, "alice")
    vid = start_totp(client, "alice").get_json()["id"]
    deliver_all(app)
    now = settle_step()
    with skewed(HOUR):
        result = client.post(f"/v1/verifications/{vid}/check", json={"code": totp.at(now)}).get_json()
    assert result["valid"] is True


def test_a_node_an_hour_ahead_confirms_an_authenticator_at_the_true_time(client, skewed) -> None:
    r = client.post("/v1/users/carol/totp")
    totp = pyotp.TOTP(r.get_json()["secret"])
    now = settle_step()
    with skewed(HOUR):
        confirmed = client.post("/v1/users/carol/totp/confirm", json={"code": totp.at(now)}).get_json()
    assert confirmed["status"] == "active"


def test_a_node_an_hour_ahead_counts_sends_in_redis_s_pumping_bucket_and_day(app, client, redis_db, skewed) -> None:
    svc = app.extensions["gateway"]
    with skewed(HOUR):
        start(client)
        start(client)  # the store now chooses by Redis's clock at once
        learnt = svc.abuse.now()
    seconds, _ = redis_db.time()
    size = svc.settings.abuse.pumping_window // abuse.BUCKETS
    [window] = redis_db.scan_iter("gw:window:prefix:*")
    sends = {int(f.decode()[1:]): int(n) for f, n in redis_db.hgetall(window).items() if f.startswith(b"s")}
    assert sum(sends.values()) == 2
    assert set(sends) <= {seconds // size, seconds // size - 1}  # -1: a boundary passed meanwhile
    assert [k.decode() for k in redis_db.scan_iter("gw:spend:*")] in (
        [keys.spend(seconds // keys.DAY)], [keys.spend(seconds // keys.DAY - 1)])
    window = svc.settings.rate_limit_window
    assert {int(k.decode().split(":")[2]) for k in redis_db.scan_iter("gw:limits:*")} <= {
        seconds // window, seconds // window - 1}  # the number's counters, in Redis's generation
    assert abs(learnt - time.time()) < 60  # the node's clock corrected by Redis's


def test_a_node_an_hour_ahead_dates_v2_services_and_send_cap_refusals_by_redis(app, redis_db, skewed) -> None:
    svc = app.extensions["gateway"]
    with skewed(HOUR):
        service = ServiceStore(V2Store(svc.redis)).create("AC" + "0" * 32, {"FriendlyName": "Clock"})
        v, _ = verifications.start(svc, parse_start({"to": "+48600100900"}), None)
        abuse._count_max_sends(svc, v, "resend", v.channel)
    assert abs(service.date_created - time.time()) < 60
    [(_, record)] = redis_db.xrange(keys.AUDIT)
    assert record[b"reason"] == b"max_sends" and abs(float(record[b"created_at"]) - time.time()) < 60


def test_a_check_on_a_node_an_hour_ahead_counts_its_conversion_in_redis_s_bucket(app, client, redis_db, skewed) -> None:
    svc = app.extensions["gateway"]
    vid = start(client).get_json()["id"]
    give_code(app, vid, "482913")
    svc.abuse.offset = 0.0  # a node that has not yet heard Redis's time
    with skewed(HOUR):
        assert client.post(f"/v1/verifications/{vid}/check", json={"code": "482913"}).get_json()["valid"]
        assert abuse.fold_conversions(svc) == 1  # as the workers' supervisor does, on a node as skewed
    seconds, _ = redis_db.time()
    size = svc.settings.abuse.pumping_window // abuse.BUCKETS
    [window] = redis_db.scan_iter("gw:window:prefix:*")
    counted = {int(f.decode()[1:]): int(n) for f, n in redis_db.hgetall(window).items() if f.startswith(b"c")}
    assert sum(counted.values()) == 1  # once: not in the node's bucket as well
    assert set(counted) <= {seconds // size, seconds // size - 1}
