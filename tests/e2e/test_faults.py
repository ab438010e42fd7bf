"""Crashed processes and Redis restarts under real processes: timers and jobs recover by themselves.

Each test runs on a redis-server of its own (so crashing or restarting it harms no other test)
with the Procfile's processes and the simulator, behind a fault proxy where a send must hang."""
from __future__ import annotations

import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pyotp
import pytest

from tests.conftest import TEST_DB
from tests.faultproxy import FaultProxy
from tests.stack import ROOT, PrivateRedis, Stack, poll, procfile


TWILIO_TIMEOUT = 5
LEASE = TWILIO_TIMEOUT + 10  # deliveries.delivery_lease


@pytest.fixture
def aof_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis(aof=True)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def proxied(aof_redis: PrivateRedis) -> Iterator[tuple[Stack, FaultProxy]]:
    """A stack on the private Redis whose carrier requests pass the fault proxy (long timeout)."""
    stack = Stack(0, redis_server=aof_redis.url, FALLBACK_CHANNELS="", TWILIO_TIMEOUT=str(TWILIO_TIMEOUT))
    proxy = FaultProxy(stack.sim_url).start()
    stack.env["TWILIO_API_BASE_URL"] = proxy.url
    try:
        yield stack.start(), proxy
    finally:
        stack.stop()
        proxy.stop()


def _ended(stack: Stack, verification_id: str) -> dict[str, str] | None:
    """The audit record of a verification, read straight from Redis (reading it through the
    API would end an expired verification itself and hide whether the timer fired)."""
    for _, fields in stack.redis.xrange("gw:audit"):
        record = {k.decode(): v.decode() for k, v in fields.items()}
        if record.get("verification_id") == verification_id:
            return record
    return None


def test_a_send_whose_worker_was_killed_is_claimed_again_after_its_lease_with_the_same_code(
        proxied: tuple[Stack, FaultProxy]) -> None:
    stack, proxy = proxied
    proxy.plan.next = ["stall"]  # in flight at the carrier when its worker dies; it arrives later
    to = "+48600400100"
    v = stack.start_verification(to, channel="sms")
    poll(proxy.held, 20, what="the send to be in flight")
    stack.kill("worker")  # kill -9: no chance to give the claim back
    stack.spawn_worker("worker-2")  # as a platform restarts a crashed process
    # The outbox entry is due again when the claim's lease (TWILIO_TIMEOUT + 10 s) ends.
    code = stack.sms_code(to, timeout=LEASE + 30)
    proxy.let_go.set()  # the dead worker's request reaches the carrier after all
    assert stack.sms_code(to, count=2) == code  # at most one duplicate, and it carries the same code
    assert stack.check(v["id"], code)["status"] == "approved"
    assert [r.fault for r in proxy.records] == ["stall", None]


def _send_let_go_while_redis_is_away(stack: Stack, proxy: FaultProxy, aof_redis: PrivateRedis, fault: str,
                                     to: str) -> tuple[str, str | None]:
    """Start an SMS verification, hold its send at the carrier, stop Redis, let the send go
    (`hold`: it fails; `stall`: Twilio accepts it), bring Redis back after 3 s; the id, and the
    code when it went out meanwhile."""
    proxy.plan.next = [fault]
    v = stack.start_verification(to, channel="sms")
    poll(proxy.held, 20, what="the send to be in flight")
    aof_redis.stop()
    proxy.let_go.set()
    code = stack.sms_code(to) if fault == "stall" else None
    time.sleep(3)  # the outage itself (not synchronisation)
    aof_redis.start()
    return v["id"], code


def test_the_worker_survives_redis_vanishing_mid_send_and_the_send_is_redone(
        proxied: tuple[Stack, FaultProxy], aof_redis: PrivateRedis) -> None:
    stack, proxy = proxied
    to = "+48600400150"
    vid, _ = _send_let_go_while_redis_is_away(stack, proxy, aof_redis, "hold", to)  # the sender waits for Redis
    code = stack.sms_code(to, timeout=LEASE + 45)
    assert stack.procs["worker"].poll() is None
    assert stack.check(vid, code)["status"] == "approved"


def test_a_send_accepted_while_redis_is_away_is_recorded_once_it_is_back_and_not_sent_again(
        proxied: tuple[Stack, FaultProxy], aof_redis: PrivateRedis) -> None:
    stack, proxy = proxied
    to = "+48600400170"
    vid, code = _send_let_go_while_redis_is_away(stack, proxy, aof_redis, "stall", to)
    # The sender kept the sid and recorded it once Redis was back: the entry leaves the outbox
    # without a second send (a dropped record would bring it back when its lease ends).
    poll(lambda: stack.redis.zcard("gw:outbox") == 0, LEASE + 30, 0.2, what="the send recorded")
    assert stack.redis.hget(f"gw:vf:{vid}", "a1:sid")
    assert len(stack.inbox(to)) == 1 and [r.fault for r in proxy.records] == ["stall"]
    assert stack.check(vid, code or "")["status"] == "approved"


def test_timers_fire_on_time_after_redis_restarts(aof_redis: PrivateRedis) -> None:
    stack = Stack(0, redis_server=aof_redis.url, FALLBACK_CHANNELS="", SMS_CODE_TTL="12").start()
    try:
        to = "+48600400200"
        v = stack.start_verification(to, channel="sms")
        stack.sms_code(to)
        due = time.time() + 12 - 1  # no earlier than this: the expiry timer is scheduled for expires_at
        aof_redis.stop()
        time.sleep(3)  # the outage itself (not synchronisation): long enough for every process to notice
        aof_redis.start()
        record = poll(lambda: _ended(stack, v["id"]), 40, interval=0.2, what="the expiry timer")
        late = time.time() - due
        assert record["status"] == "expired"
        assert late < 15 + 1, f"expiry fired {late:.1f}s after it was due"
    finally:
        stack.stop()


def test_what_must_survive_a_redis_restart_survives_it(aof_redis: PrivateRedis, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.test_totp_stack import settled_now

    stack = Stack(0, redis_server=aof_redis.url, FALLBACK_CHANNELS="", RATE_LIMIT_PER_NUMBER="1000").start()
    try:
        stopper = "+48600400300"
        stack.sim("POST", f"handsets/{stopper}/sms", {"body": "STOP"})
        poll(lambda: stack.redis.exists(f"gw:optout:{stopper}"), 20, what="the opt-out")
        app_secret = stack.api("POST", "/v1/users/olga/totp").json()["secret"]
        confirmed = stack.api("POST", "/v1/users/olga/totp/confirm",  # with the previous step's code
                              {"code": pyotp.TOTP(app_secret).at(time.time() - 30)})
        assert confirmed.status_code == 200, confirmed.text
        token_secret = pyotp.random_base32()
        (tmp_path / "tokens.csv").write_text(f"serial,secret,step,user\nAOF-1,{token_secret},30,pete\n")
        imported = subprocess.run([sys.executable, "-m", "gateway", "tokens", "import", str(tmp_path / "tokens.csv")],
                                  cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=60)
        assert imported.returncode == 0, imported.stderr
        stack.stop("worker")  # deliveries wait in the queue across the restart
        numbers = [f"+4860040040{i}" for i in range(3)]
        pending = [stack.start_verification(n, channel="sms") for n in numbers]

        aof_redis.stop()
        aof_redis.start()

        poll(lambda: stack.api("GET", "/readyz").status_code == 200, 20, what="the web process to reconnect")
        refused = stack.api("POST", "/v1/verifications", {"to": stopper, "channel": "sms"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "destination_blocked"  # STOP kept
        stack.spawn_worker("worker-2")
        for number, v in zip(numbers, pending):
            assert stack.check(v["id"], stack.sms_code(number, timeout=30))["status"] == "approved"
        for user, secret in (("olga", app_secret), ("pete", token_secret)):
            v = stack.start_verification("+48600400390", channel="totp", user_id=user)
            assert stack.check(v["id"], pyotp.TOTP(secret).at(settled_now()))["status"] == "approved", user
    finally:
        stack.stop()


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-random"])
def test_procfile_processes_refuse_a_redis_that_evicts_any_key(policy: str) -> None:
    server = PrivateRedis("--maxmemory-policy", policy)
    server.start()
    stack = Stack(0, redis_server=server.url)
    lines = procfile()
    try:
        for line in (lines["web"].replace("$PORT", str(stack.web_port)), lines["worker"]):
            argv = shlex.split(line.strip().replace("python ", f"{shlex.quote(sys.executable)} ", 1))
            run = subprocess.run(argv, cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=60)
            assert run.returncode != 0, line
            assert f"maxmemory-policy is {policy}" in run.stderr and "noeviction" in run.stderr, run.stderr[-2000:]
    finally:
        server.cleanup()


def test_a_redis_that_evicts_only_expiring_keys_or_hides_its_config_is_accepted() -> None:
    from config import load_settings
    from gateway import create_app
    from tests.conftest import gateway_env

    for args in (("--maxmemory-policy", "volatile-lru"), ("--rename-command", "CONFIG", "")):
        server = PrivateRedis(*args)
        server.start()
        try:
            create_app(load_settings(gateway_env(0, REDIS_URL=f"{server.url}/0")))
        finally:
            server.cleanup()


def test_a_queue_redis_that_evicts_any_key_is_refused_by_name() -> None:
    from config import ConfigError, load_settings
    from gateway import create_app
    from tests.conftest import gateway_env

    server = PrivateRedis("--maxmemory-policy", "allkeys-lru")
    server.start()
    try:
        with pytest.raises(ConfigError, match="RQ_REDIS_URL: .*maxmemory-policy is allkeys-lru"):
            create_app(load_settings(gateway_env(TEST_DB, RQ_REDIS_URL=f"{server.url}/0")))
    finally:
        server.cleanup()


def test_a_failed_start_stops_the_processes_already_started() -> None:
    stack = Stack(11)
    started: list[subprocess.Popen[bytes]] = []
    spawn = stack.spawn

    def spawn_and_remember(name: str, command: str) -> None:
        spawn(name, command)
        started.append(stack.procs[name])

    stack.spawn = spawn_and_remember  # type: ignore[method-assign]
    with socket.socket() as taken:  # the web process cannot bind its port, so it exits
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", stack.web_port))
        taken.listen()
        with pytest.raises((RuntimeError, AssertionError)):
            stack.start()
    assert len(started) == 3
    assert [p.poll() is not None for p in started] == [True, True, True]
    assert stack.procs == {}
