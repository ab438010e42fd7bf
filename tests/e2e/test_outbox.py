"""No acknowledged verification without a delivery: a web process whose enqueue never reaches
Redis (as when it dies between the create and the enqueue) leaves a verification that is still
delivered, by the client's idempotent retry or by the next start. Real processes; the fault is a
Redis ACL that lets the web process write the gateway's keys but none of rq's."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis

from gateway.verifications import STRANDED_AFTER
from tests.conftest import redis_base
from tests.e2e.test_attempts import redis_now
from tests.stack import Stack, poll

USER, PASSWORD = "gw-outbox-test", uuid.uuid4().hex


class Faulty:
    """A stack whose processes connect as a Redis user that can lose its rights to rq's keys."""

    def __init__(self) -> None:
        self.admin = redis.Redis.from_url(redis_base())
        self.admin.execute_command("ACL", "SETUSER", USER, "reset", "on", f">{PASSWORD}", "~*", "&*", "+@all")
        base = urlsplit(redis_base())
        self.stack = Stack(7, redis_server=f"{base.scheme}://{USER}:{PASSWORD}@{base.netloc}",
                           FALLBACK_CHANNELS="", RATE_LIMIT_PER_NUMBER="1000")

    def cut_off_the_queue(self) -> None:
        """The web process can still run the gateway's scripts, but its enqueue transaction aborts."""
        self.stack.stop("worker")
        self.admin.execute_command("ACL", "SETUSER", USER, "resetkeys", "~gw:*")

    def restore(self) -> None:
        self.admin.execute_command("ACL", "SETUSER", USER, "~*")
        self.stack.restart("worker")

    def close(self) -> None:
        self.stack.stop()
        self.admin.execute_command("ACL", "DELUSER", USER)
        self.admin.close()


@pytest.fixture
def faulty() -> Iterator[Faulty]:
    f = Faulty()
    f.stack.start()
    try:
        yield f
    finally:
        f.close()


def test_an_idempotent_retry_delivers_a_verification_whose_enqueue_was_lost(faulty: Faulty) -> None:
    stack, to, key = faulty.stack, "+48600700100", {"Idempotency-Key": uuid.uuid4().hex}
    faulty.cut_off_the_queue()
    lost = stack.api("POST", "/v1/verifications", {"to": to, "channel": "sms"}, headers=key)
    assert lost.status_code >= 500  # never acknowledged
    faulty.restore()
    [vid] = [k.decode()[len("gw:vf:"):] for k in stack.redis.scan_iter("gw:vf:*")]  # the create went through
    retry = stack.api("POST", "/v1/verifications", {"to": to, "channel": "sms"}, headers=key)
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true" and retry.json()["id"] == vid
    again = stack.api("POST", "/v1/verifications", {"to": to, "channel": "sms"}, headers=key)
    assert again.status_code == 201
    code = stack.sms_code(to)
    assert stack.check(vid, code)["valid"] is True
    assert len(stack.inbox(to)) == 1  # two retries, one SMS


def test_the_next_start_delivers_a_verification_whose_enqueue_was_lost(faulty: Faulty) -> None:
    stack, to, other = faulty.stack, "+48600700200", "+48600700300"
    faulty.cut_off_the_queue()
    assert stack.api("POST", "/v1/verifications", {"to": to, "channel": "sms"}).status_code >= 500
    faulty.restore()
    [(entry, score)] = stack.redis.zrange("gw:outbox", 0, -1, withscores=True)
    vid = entry.decode().split(":")[0]
    poll(lambda: redis_now(stack.redis) > score + STRANDED_AFTER, STRANDED_AFTER + 20, what="the entry to strand")
    stack.start_verification(other, channel="sms")
    assert stack.check(vid, stack.sms_code(to))["valid"] is True
    assert stack.sms_code(other)
    assert stack.redis.zcard("gw:outbox") == 0
