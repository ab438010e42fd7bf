"""Redis high availability in-process: Sentinel URLs, a failover under the app, READONLY behind
a failover endpoint, a queue on its own Redis — against real redis-server and Sentinel processes."""
from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator

import pytest
import redis

from config import ConfigError, load_settings
from gateway import create_app, jobs
from gateway.sender import Sender
from tests.conftest import API_KEY, gateway_env, redis_base
from tests.sentinels import Forwarder, SentinelGroup
from tests.stack import poll
from tests.test_api import give_code

MOBILE = "+48600100200"


@pytest.mark.parametrize(
    "url, problem",
    [
        ("redis+sentinel:///gw", "no Sentinel hosts"),
        ("redis+sentinel://@/gw/0", "no Sentinel hosts"),
        ("redis+sentinel://127.0.0.1:26379,,h2/gw", "empty entry"),
        ("redis+sentinel://127.0.0.1:70000/gw", "bad Sentinel port '70000'"),
        ("redis+sentinel://127.0.0.1:x/gw", "bad Sentinel port 'x'"),
        ("redis+sentinel://127.0.0.1:26379", "no master name"),
        ("redis+sentinel://127.0.0.1:26379/", "no master name"),
        ("redis+sentinel://127.0.0.1:26379/gw/zero", "bad path"),
        ("redis+sentinel://127.0.0.1:26379/gw?password=x", "unknown query parameter 'password'"),
        ("sentinel://127.0.0.1:26379/gw", "must start with"),
    ],
)
@pytest.mark.parametrize("variable", ["REDIS_URL", "RQ_REDIS_URL"])
def test_bad_sentinel_urls_are_refused_at_start(variable: str, url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({variable: url})
    assert caught.value.variable == variable and problem in str(caught.value)


def test_sentinel_url_parts() -> None:
    s = load_settings({"REDIS_URL": "rediss+sentinel://app:p%40ss@h1,[::1]:26380/main/3?sentinel_password=s%2Fp",
                       "REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_MS": "250"})
    from config import redis_target

    target = redis_target("REDIS_URL", s.redis_url or "")
    assert target is not None and target.sentinels == (("h1", 26379), ("::1", 26380))
    assert (target.master, target.db, target.username, target.password) == ("main", 3, "app", "p@ss")
    assert target.sentinel_password == "s/p" and target.ssl is True
    assert (s.redis_wait_replicas, s.redis_wait_ms, s.rq_redis_url) == (1, 250, None)


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    g = SentinelGroup().start()
    try:
        yield g
    finally:
        g.stop()


def _app(url: str, **env: str):  # type: ignore[no-untyped-def]
    settings = load_settings(gateway_env(0, REDIS_URL=url, **env)).replace(testing=True)
    app = create_app(settings)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    return app, client


def test_app_over_sentinel_starts_and_checks(group: SentinelGroup) -> None:
    app, client = _app(group.url(2))
    assert client.get("/readyz").status_code == 200
    r = client.post("/v1/verifications", json={"to": MOBILE, "channel": "sms"})
    assert r.status_code == 201, r.get_json()
    vid = r.get_json()["id"]
    give_code(app, vid)
    assert client.post(f"/v1/verifications/{vid}/check", json={"code": "123456"}).get_json()["status"] == "approved"
    # It went to the primary the Sentinels name, and its delivery with it.
    primary = group.client(group.primary_port() or 0, db=2)
    assert primary.exists(f"gw:vf:{vid}") and primary.zrange("gw:outbox", 0, -1) == [f"{vid}:1".encode()]


def test_unknown_master_is_503_from_readyz_and_logged(group: SentinelGroup, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    _, client = _app(group.url(0, master="no-such-master"))
    t0 = time.monotonic()
    r = client.get("/readyz")
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "unavailable" and r.headers["Retry-After"]
    assert time.monotonic() - t0 < 5  # Sentinels answer at once; nothing waits for a socket timeout
    assert "no-such-master" in caplog.text
    r = client.post("/v1/verifications", json={"to": MOBILE, "channel": "sms"})
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "unavailable"


def test_dead_sentinels_mean_503_within_the_socket_timeouts() -> None:
    from tests.stack import free_port

    _, client = _app(f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/gw/0")
    t0 = time.monotonic()
    assert client.post("/v1/verifications", json={"to": MOBILE, "channel": "sms"}).status_code == 503
    assert time.monotonic() - t0 < 10


def test_queue_on_its_own_redis(group: SentinelGroup, redis_db: redis.Redis) -> None:
    queue_url = f"{redis_base()}/9"
    app, client = _app(group.url(3), RQ_REDIS_URL=queue_url)
    r = client.post("/v1/verifications", json={"to": MOBILE, "channel": "sms"})
    assert r.status_code == 201
    primary = group.client(group.primary_port() or 0, db=3)
    assert primary.exists(f"gw:vf:{r.get_json()['id']}") and primary.zcard("gw:outbox") == 1  # deliveries: not rq
    jobs.enqueue_authenticator_notice(app.extensions["gateway"], "someone", None)
    assert primary.llen("rq:queue:gateway") == 0 and redis_db.llen("rq:queue:gateway") == 1
    assert client.get("/readyz").status_code == 200


def test_readonly_behind_a_failover_endpoint_reconnects() -> None:
    """A managed endpoint moves to the new primary; connections still open to the demoted one get
    READONLY, and the client must reconnect (to the endpoint's new target) instead of failing."""
    nodes = SentinelGroup()  # only its two data nodes, unrelated at first, and no Sentinels
    old, new = nodes.data_ports
    endpoint = None
    try:
        nodes.start_node(old)
        nodes.start_node(new)
        endpoint = Forwarder(old)
        _, client = _app(f"redis://127.0.0.1:{endpoint.port}/0")
        assert client.post("/v1/verifications", json={"to": MOBILE, "channel": "sms"}).status_code == 201
        # Failover: the old primary becomes a replica of the new one, the endpoint points at the new.
        nodes.client(old).replicaof("127.0.0.1", new)
        endpoint.target_port = new
        for number in ("+48600100201", "+48600100202"):
            r = client.post("/v1/verifications", json={"to": number, "channel": "sms"})
            assert r.status_code == 201, r.get_json()
            assert nodes.client(new).exists(f"gw:vf:{r.get_json()['id']}")
    finally:
        if endpoint:
            endpoint.close()
        nodes.stop()


def test_failover_under_the_app(caplog: pytest.LogCaptureFixture) -> None:
    g = SentinelGroup().start()
    try:
        app, client = _app(g.url(0))
        before = client.post("/v1/verifications", json={"to": MOBILE, "channel": "sms"}).get_json()["id"]
        old = g.primary_port()
        g.signal(old or 0, signal.SIGKILL)
        statuses: list[int] = []

        def answers() -> bool:
            r = client.get(f"/v1/verifications/{before}")
            statuses.append(r.status_code)
            return r.status_code == 200

        poll(answers, 30, 0.2, what="reads through the new primary")
        assert set(statuses) <= {200, 503}  # only clear refusals meanwhile, never a 500
        assert g.primary_port() != old
        assert client.post("/v1/verifications", json={"to": "+48600100203", "channel": "sms"}).status_code == 201
        assert client.get("/readyz").status_code == 200
    finally:
        g.stop()


def test_wait_for_replicas_refuses_unconfirmed_changes_and_the_retry_is_safe(group: SentinelGroup) -> None:
    primary = group.primary_port() or 0
    replica = next(p for p in group.data_ports if p != primary)
    app, client = _app(group.url(4), REDIS_WAIT_REPLICAS="1", REDIS_WAIT_MS="50")
    on_primary = group.client(primary, db=4)
    on_primary.flushdb()
    body = {"to": MOBILE, "channel": "sms"}
    r = client.post("/v1/verifications", json=body, headers={"Idempotency-Key": "k-confirmed"})
    assert r.status_code == 201
    confirmed = r.get_json()["id"]
    assert group.client(replica, db=4).exists(f"gw:vf:{confirmed}")  # the replica had it before the answer
    give_code(app, confirmed)

    lagging = {**body, "to": "+48600100209"}
    group.signal(replica, signal.SIGSTOP)  # a replica that falls behind
    try:
        r = client.post("/v1/verifications", json=lagging, headers={"Idempotency-Key": "k-lag"})
        assert r.status_code == 503 and r.get_json()["error"]["code"] == "unavailable" and r.headers["Retry-After"]
        written = (on_primary.get("gw:idem:k-lag") or b"").decode().rpartition("|")[2]
        assert written.startswith("vf_")  # on the primary, but not acknowledged
        r = client.post(f"/v1/verifications/{confirmed}/check", json={"code": "123456"})
        assert r.status_code == 503  # the approval too waits for a replica
    finally:
        group.signal(replica, signal.SIGCONT)

    # The client's retries, with the same Idempotency-Key: the same verification, delivered once.
    retry = poll(lambda: (x := client.post("/v1/verifications", json=lagging, headers={"Idempotency-Key": "k-lag"}))
                 .status_code != 503 and x, 20, 0.2, what="the retry confirmed")
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json()["id"] == written
    assert on_primary.zcard("gw:outbox") == 2  # one delivery each, none added by the retry
    assert group.client(replica, db=4).exists(f"gw:vf:{written}")
    again = poll(lambda: (x := client.post(f"/v1/verifications/{confirmed}/check", json={"code": "123456"}))
                 .status_code != 503 and x, 20, 0.2, what="the check confirmed")
    assert client.get(f"/v1/verifications/{confirmed}").get_json()["status"] == "approved", again.get_json()


def test_wait_for_more_replicas_than_exist_refuses_every_start(group: SentinelGroup) -> None:
    _, client = _app(group.url(5), REDIS_WAIT_REPLICAS="2", REDIS_WAIT_MS="20")
    r = client.post("/v1/verifications", json={"to": MOBILE, "channel": "sms"})
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "unavailable"


def test_a_sender_sends_only_what_the_replicas_hold(group: SentinelGroup) -> None:
    primary = group.primary_port() or 0
    replica = next(p for p in group.data_ports if p != primary)
    app, client = _app(group.url(6), REDIS_WAIT_REPLICAS="1", REDIS_WAIT_MS="50", DELIVERY_RETRY_INTERVALS="60")
    on_primary = group.client(primary, db=6)
    on_primary.flushdb()
    vid = client.post("/v1/verifications", json={"to": MOBILE, "channel": "sms"}).get_json()["id"]
    sender = Sender(app)  # the carrier (127.0.0.1:9) refuses connections: a try is counted per send
    try:
        with app.app_context():
            group.signal(replica, signal.SIGSTOP)  # the claim and the code cannot reach a replica
            try:
                sender.pass_once()
                assert sender.throttle.in_flight == 0  # nothing handed to a sending thread
                assert on_primary.hget(f"gw:vf:{vid}", "a1:tries") is None  # the carrier was not tried
                assert on_primary.zscore("gw:outbox", f"{vid}:1") is not None  # released for a later claim
            finally:
                group.signal(replica, signal.SIGCONT)
            poll(lambda: sender.pass_once() is not None and on_primary.hget(f"gw:vf:{vid}", "a1:tries"), 20, 0.2,
                 what="the send once the replica holds the claim")
    finally:
        sender.stop()
