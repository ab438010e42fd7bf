"""An attempt acts only while it is current and unexpired, and sends one code whatever the
retries: real web, worker and simulator processes, with faults injected from outside."""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.stack import Stack, code_of, poll

TTL = 4


def redis_now(r: redis.Redis) -> float:
    """Redis's clock, the one the gateway's scripts decide by."""
    seconds, micros = r.time()
    return seconds + micros / 1e6


def codes_in(stack: Stack, number: str) -> list[str]:
    """The code in each SMS the handset received, in order."""
    return [re.search(r"\b(\d{6})\b", m["body"]).group(1) for m in stack.inbox(number)]  # type: ignore[union-attr]


def message_creates(stack: Stack) -> int:
    """How many Create Message requests reached the carrier."""
    return sum(1 for r in stack.sim("GET", "requests")["requests"]
               if r["method"] == "POST" and r["path"].endswith("/Messages.json"))


@pytest.fixture
def short_lived() -> Iterator[Stack]:
    running = Stack(5, SMS_CODE_TTL=str(TTL), FALLBACK_CHANNELS="", RATE_LIMIT_PER_NUMBER="1000")
    try:
        yield running.start()
    finally:
        running.stop()


def test_a_delivery_job_that_runs_after_expiry_sends_nothing_and_nothing_approves(short_lived: Stack) -> None:
    stack, to = short_lived, "+48600500100"
    stack.stop("worker")  # a worker outage (or a send backlog) holds the delivery
    vid = stack.start_verification(to, channel="sms")["id"]
    key = f"gw:vf:{vid}"
    expires = float(stack.redis.hget(key, "expires"))
    poll(lambda: redis_now(stack.redis) > expires + 0.2, TTL + 20, what="the verification to expire unread")
    assert stack.redis.hget(key, "status") == b"pending"  # nobody has read it since
    stack.restart("worker")
    poll(lambda: stack.redis.hget(key, "status") != b"pending", 30, what="the late job to run")
    assert stack.redis.hget(key, "status") == b"expired"
    assert stack.inbox(to) == [] and message_creates(stack) == 0
    body = stack.read(vid)
    assert (body["status"], body["reason"]) == ("expired", "expired")
    assert stack.check(vid, "000000")["valid"] is False


@pytest.fixture
def slow_carrier() -> Iterator[Stack]:
    running = Stack(6, TWILIO_TIMEOUT="1", DELIVERY_RETRY_INTERVALS="3", FALLBACK_CHANNELS="",
                    RATE_LIMIT_PER_NUMBER="1000", DELIVERY_DEADLINE="600")
    try:
        yield running.start()
    finally:
        running.stop()


def test_a_carrier_answering_after_the_timeout_gets_the_same_code_again(slow_carrier: Stack) -> None:
    stack, to = slow_carrier, "+48600500200"
    # Twilio accepts the message but answers after TWILIO_TIMEOUT, and no status callback says it
    # went (held past the test): the gateway cannot know, so it sends again.
    stack.sim("PUT", f"handsets/{to}/behaviour", {"rest_delay_ms": 3000, "callback_delay_ms": 120_000})
    vid = stack.start_verification(to, channel="sms")["id"]
    poll(lambda: (vid, 1) in stack.sent_by_attempt(), 15, what="the first SMS")
    stack.sim("PATCH", f"handsets/{to}/behaviour", {"rest_delay_ms": 0})  # the carrier is quick again
    def retried() -> list[dict[str, Any]] | None:
        sent = stack.sent_by_attempt()[(vid, 1)]
        return sent if len(sent) >= 2 else None

    first, second = (code_of(m["body"]) for m in poll(retried, 30, what="the retried SMS")[:2])
    assert first == second  # one duplicate SMS, and it carries the same code
    assert stack.check(vid, first)["valid"] is True
    # The simulator lists a message before it logs the request that made it (after answering).
    poll(lambda: message_creates(stack) >= 2, 10, what="the retry's request logged")
    assert len(stack.sent_by_attempt()[(vid, 1)]) == 2 and message_creates(stack) == 2


def test_a_carrier_answering_after_the_timeout_whose_callback_came_first_is_not_sent_again(slow_carrier: Stack) -> None:
    stack, to = slow_carrier, "+48600500201"
    # The same late answer, but the message's status callback arrives before the retry (callbacks
    # are prompt here): the attempt has its sid, the carrier took it, and the retry sends nothing.
    stack.sim("PUT", f"handsets/{to}/behaviour", {"rest_delay_ms": 3000})
    vid = stack.start_verification(to, channel="sms")["id"]
    poll(lambda: stack.inbox(to), 15, what="the first SMS")
    stack.sim("PATCH", f"handsets/{to}/behaviour", {"rest_delay_ms": 0})
    poll(lambda: stack.redis.zscore("gw:outbox", f"{vid}:1") is None, 30, what="the retry done")
    assert message_creates(stack) == 1 and len(stack.inbox(to)) == 1
    assert stack.check(vid, codes_in(stack, to)[0])["valid"] is True


def test_two_workers_racing_for_the_outbox_send_each_attempt_once(slow_carrier: Stack) -> None:
    stack = slow_carrier
    stack.stop("worker")
    numbers = [f"+486005003{i:02d}" for i in range(20)]
    started = [stack.start_verification(to, channel="sms")["id"] for to in numbers]
    stack.spawn_worker("worker")
    stack.spawn_worker("worker-2")  # both claim from the same outbox at once
    for vid, to in zip(started, numbers):
        assert stack.check(vid, stack.sms_code(to))["valid"] is True
    assert [len(codes_in(stack, to)) for to in numbers] == [1] * len(numbers)
    assert message_creates(stack) == len(numbers) and stack.redis.zcard("gw:outbox") == 0
