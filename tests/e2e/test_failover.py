"""A Redis primary killed under the Procfile's processes, with Sentinels promoting a replica, and
REDIS_WAIT_REPLICAS=1 (two replicas, so one is left to confirm after the failover). The replicas
are stopped first (SIGSTOP: they lag) while a send is in flight and a start is refused, then the
primary dies. What must hold: no acknowledged start lost, no attempt texted twice (nor one start
texted as two verifications), timers on the new primary within 15 s, nothing restarted."""
from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from gateway.store import OUTBOX, TIMERS
from tests.sentinels import SentinelGroup
from tests.stack import Stack, code_of, poll

REPLY_TIMEOUT = 10
TWILIO_TIMEOUT = 4  # the delivery lease is this + 10 s: a send whose record was lost goes again after it
SLOW = 2500  # ms the carrier takes to answer a send it has already accepted


@pytest.fixture
def ha_stack() -> Iterator[tuple[Stack, SentinelGroup]]:
    group = SentinelGroup(down_after_ms=1000, failover_timeout_ms=5000, replicas=2)
    stack = None
    try:
        group.start()
        stack = Stack(0, REDIS_URL=group.url(0), SMS_REPLY_TIMEOUT=str(REPLY_TIMEOUT), FALLBACK_CHANNELS="",
                      REDIS_WAIT_REPLICAS="1", REDIS_WAIT_MS="100", TWILIO_TIMEOUT=str(TWILIO_TIMEOUT))
        yield stack.start(), group
    finally:
        if stack:
            stack.stop()
        group.stop()


def _start_until_acknowledged(stack: Stack, to: str, seen: list[int], found: dict[str, Any]) -> None:
    """A client's start, retried with its Idempotency-Key until acknowledged (30 s at most)."""
    key = uuid.uuid4().hex
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            r = stack.api("POST", "/v1/verifications", {"to": to, "channel": "sms"}, headers={"Idempotency-Key": key})
            seen.append(r.status_code)
        except requests.RequestException as exc:
            seen.append(-1)
            found["error"] = repr(exc)
            continue
        if r.status_code == 201:
            found.update(r.json())
            return
        time.sleep(0.2)


def test_primary_killed_under_lag_nothing_lost_or_texted_twice(ha_stack: tuple[Stack, SentinelGroup]) -> None:
    stack, group = ha_stack
    worker_pid = stack.procs["worker"].pid
    old = group.primary_port() or 0
    on_old = group.client(old)
    before = stack.start_verification("+48600400100", channel="sms")
    code = stack.sms_code("+48600400100")
    waited: dict[str, object] = {}

    def long_poll() -> None:
        t0 = time.monotonic()
        try:
            r = stack.api("GET", f"/v1/verifications/{before['id']}?wait=25")
            waited.update(status=r.status_code, took=time.monotonic() - t0)
        except requests.RequestException as exc:  # a hang or a dropped connection fails the test
            waited.update(status=repr(exc), took=time.monotonic() - t0)

    poller = threading.Thread(target=long_poll)
    poller.start()
    timer = stack.start_verification("+48600400101", channel="sms_reply")  # ends by its timer only
    # A send in flight when the replicas stop: the carrier has it, its answer comes during the lag.
    # No status callback within the test (it would record the sid too: set_code.lua then sends
    # nothing more), so only the sender's retried record stands between the failover and a resend.
    stack.sim("PUT", "handsets/+48600400103/behaviour", {"rest_delay_ms": SLOW, "callback_delay_ms": 120_000})
    slow = stack.start_verification("+48600400103", channel="sms")
    poll(lambda: (slow["id"], 1) in stack.sent_by_attempt(), 15, 0.05, what="the slow send accepted by the carrier")
    replicas = [p for p in group.data_ports if p != old]
    for replica in replicas:
        group.signal(replica, signal.SIGSTOP)
    # Cut their links too: what a stopped replica's socket already holds would still reach it after
    # SIGCONT; from here on, nothing the old primary writes reaches a replica (the lag's loss, for sure).
    on_old.execute_command("CLIENT", "KILL", "TYPE", "replica")
    statuses: list[int] = []
    refused: dict[str, Any] = {}
    during = threading.Thread(target=_start_until_acknowledged, args=(stack, "+48600400104", statuses, refused),
                              daemon=True)
    try:
        during.start()  # a start the replicas never confirm: 503, retried with its key
        entry = f"{slow['id']}:1"
        poll(lambda: on_old.zscore(OUTBOX, entry) is None, 20, 0.05, what="the slow send recorded on the old primary")

        def decided() -> bool:
            # The sender has taken the refused start's code and either released the claim (not
            # confirmed) or sent it: its outbox entry is due within RELEASE_DELAY (not a lease of
            # TWILIO_TIMEOUT + 10 s), or gone.
            ids = [k.decode().rsplit(":", 1)[1] for k in on_old.keys("gw:vf:*")]
            vid = next((i for i in ids if on_old.hget(f"gw:vf:{i}", "to") == b"+48600400104"), None)
            if vid is None or not on_old.hget(f"gw:vf:{vid}", "code"):
                return False
            due, now = on_old.zscore(OUTBOX, f"{vid}:1"), on_old.time()
            return due is None or due - (now[0] + now[1] / 1e6) < 5

        poll(decided, 20, 0.05, what="the sender's decision on the unconfirmed start")
    finally:
        group.signal(old, signal.SIGKILL)
        for replica in replicas:
            group.signal(replica, signal.SIGCONT)

    poll(lambda: group.primary_port() not in (None, old), 30, 0.1, what="the promotion")
    promoted_at = time.time()

    def started_again() -> requests.Response | None:
        r = stack.api("POST", "/v1/verifications", {"to": "+48600400102", "channel": "sms"})
        statuses.append(r.status_code)
        return r if r.status_code == 201 else None

    after = poll(started_again, 30, 0.2, what="a start through the new primary").json()
    assert set(statuses) <= {201, 503}, statuses  # clear refusals while no primary is known, never 500

    # The worker, never restarted, delivers on the new primary; what was acknowledged survived.
    new_code = stack.sms_code("+48600400102", timeout=30)
    assert stack.check(after["id"], new_code)["status"] == "approved"
    assert stack.check(before["id"], code)["status"] == "approved"
    during.join(35)
    assert refused.get("id"), (statuses, refused)
    for acknowledged in (before, timer, slow, after, refused):
        assert stack.redis.exists(f"gw:vf:{acknowledged['id']}"), acknowledged
    # The timer, as gw:timers holds it on the new primary, ends the reply-less verification.
    due = min(float(stack.redis.zscore(TIMERS, timer["id"]) or "inf"),
              float(stack.redis.hget(f"gw:vf:{timer['id']}", "expires") or 0))
    poll(lambda: stack.redis.hget(f"gw:vf:{timer['id']}", "status") != b"pending", 40, 0.2,
         what="the reply timer on the new primary")
    late = float(stack.redis.hget(f"gw:vf:{timer['id']}", "ended") or 0) - max(due, promoted_at)
    assert late <= 15, f"timer fired {late:.1f}s after promotion/expiry"
    assert stack.redis.hget(f"gw:vf:{timer['id']}", "reason") == b"reply_timeout"

    # Each acknowledged start texted once: the slow send's record went through the failover (its
    # entry left the outbox of the new primary: nothing more comes of it), the refused start was
    # not texted before its replicas held it.
    def settled() -> dict[tuple[str, int], list[dict[str, Any]]] | None:
        if stack.redis.zscore(OUTBOX, f"{slow['id']}:1") is not None:
            return None
        sent = stack.sent_by_attempt()
        return sent if (refused["id"], 1) in sent else None

    sent = poll(settled, TWILIO_TIMEOUT + 20, 0.2, what="the slow send settled and the acknowledged retry texted")
    twice = {key: [code_of(m["body"]) for m in ms] for key, ms in sent.items() if len(ms) > 1}
    assert not twice, f"attempts texted more than once (codes): {twice}"
    texted = {vid for (vid, _), ms in sent.items() if ms[0]["to"] == "+48600400104"}
    assert texted == {refused["id"]}, f"one start texted as {len(texted)} verifications"
    assert stack.procs["worker"].pid == worker_pid and stack.procs["worker"].poll() is None

    poller.join(45)
    assert not poller.is_alive() and waited["status"] in (200, 503), waited  # answered or ended cleanly
