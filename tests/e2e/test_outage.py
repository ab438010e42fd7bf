"""Redis stopped and restarted under a running gateway: clear 503s, then recovery by itself."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from tests.stack import PrivateRedis, Stack, poll


@pytest.fixture
def outage_stack() -> Iterator[tuple[Stack, PrivateRedis]]:
    server = PrivateRedis()
    server.start()
    stack = Stack(0, redis_server=f"redis://127.0.0.1:{server.port}", FALLBACK_CHANNELS="")
    try:
        yield stack.start(), server
    finally:
        stack.stop()
        server.stop()


def test_redis_down_means_503_then_recovery(outage_stack: tuple[Stack, PrivateRedis]) -> None:
    stack, server = outage_stack
    before = stack.start_verification("+48600300100", channel="sms")
    assert stack.check(before["id"], stack.sms_code("+48600300100"))["valid"] is True

    server.stop()
    t0 = time.monotonic()
    r = stack.api("POST", "/v1/verifications", {"to": "+48600300101", "channel": "sms"})
    took = time.monotonic() - t0
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
    assert int(r.headers["Retry-After"]) > 0 and took < 10
    assert stack.api("GET", f"/v1/verifications/{before['id']}").status_code == 503
    assert requests.get(stack.url + "/readyz", timeout=15).status_code == 503
    assert requests.get(stack.url + "/healthz", timeout=5).status_code == 200
    metrics = requests.get(stack.url + "/metrics", timeout=15)  # this process's figures still serve
    assert metrics.status_code == 200 and "gateway_request_seconds" in metrics.text
    assert stack.procs["worker"].poll() is None  # the worker rides out the outage

    server.start()  # an empty Redis on the same port
    poll(lambda: requests.get(stack.url + "/readyz", timeout=15).status_code == 200, 20, what="ready again")
    after = stack.start_verification("+48600300102", channel="sms")
    code = stack.sms_code("+48600300102", timeout=30)  # the worker reconnected and delivered it
    assert stack.check(after["id"], code)["status"] == "approved"
