"""A Redis primary killed under the Procfile's processes, with Sentinels promoting its replica:
the web answers 503 and recovers, the worker and its timers carry on, nothing is restarted."""
from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.sentinels import SentinelGroup
from tests.stack import Stack, poll

REPLY_TIMEOUT = 8


@pytest.fixture
def ha_stack() -> Iterator[tuple[Stack, SentinelGroup]]:
    group = SentinelGroup(down_after_ms=1000, failover_timeout_ms=5000)
    stack = None
    try:
        group.start()
        stack = Stack(0, REDIS_URL=group.url(0), SMS_REPLY_TIMEOUT=str(REPLY_TIMEOUT), FALLBACK_CHANNELS="")
        yield stack.start(), group
    finally:
        if stack:
            stack.stop()
        group.stop()


def test_primary_killed_web_and_worker_follow_the_promotion(ha_stack: tuple[Stack, SentinelGroup]) -> None:
    stack, group = ha_stack
    worker_pid = stack.procs["worker"].pid
    before = stack.start_verification("+48600400100", channel="sms")
    code = stack.sms_code("+48600400100")
    timer = stack.start_verification("+48600400101", channel="sms_reply")  # ends by rq timer only
    stack.attempts_where(timer["id"], lambda a: a[0]["status"] != "queued")
    waited: dict[str, object] = {}

    def long_poll() -> None:
        t0 = time.monotonic()
        try:
            r = stack.api("GET", f"/v1/verifications/{before['id']}?wait=20")
            waited.update(status=r.status_code, took=time.monotonic() - t0)
        except requests.RequestException as exc:  # a hang or a dropped connection fails the test
            waited.update(status=repr(exc), took=time.monotonic() - t0)

    poller = threading.Thread(target=long_poll)
    poller.start()
    old = group.primary_port()
    group.signal(old or 0, signal.SIGKILL)
    statuses: list[int] = []

    def started_again() -> requests.Response | None:
        r = stack.api("POST", "/v1/verifications", {"to": "+48600400102", "channel": "sms"})
        statuses.append(r.status_code)
        return r if r.status_code == 201 else None

    after = poll(started_again, 30, 0.2, what="a start through the new primary").json()
    promoted = group.primary_port()
    promoted_at = time.time()
    assert promoted not in (None, old)
    assert set(statuses) <= {201, 503}, statuses  # clear refusals while no primary is known, never 500

    # The worker, never restarted, delivers on the new primary...
    new_code = stack.sms_code("+48600400102", timeout=30)
    assert stack.check(after["id"], new_code)["status"] == "approved"
    assert stack.check(before["id"], code)["status"] == "approved"  # what was there survived
    # ...and its timer ends the reply-less verification (read in Redis: an API read would end it).
    expires = float(stack.redis.hget(f"gw:vf:{timer['id']}", "expires") or 0)
    poll(lambda: stack.redis.hget(f"gw:vf:{timer['id']}", "status") != b"pending", 40, 0.2,
         what="the reply timer on the new primary")
    late = time.time() - max(expires, promoted_at)
    assert late <= 15, f"timer fired {late:.1f}s after promotion/expiry"
    assert stack.read(timer["id"])["reason"] == "reply_timeout"
    assert stack.procs["worker"].pid == worker_pid and stack.procs["worker"].poll() is None

    poller.join(45)
    assert not poller.is_alive() and waited["status"] in (200, 503), waited  # answered or ended cleanly
