"""The outbox is the send queue: one worker process has many sends in flight at once, and a
carrier that answers 429 (20429) slows the sender down without failing anyone. Real web, worker
and simulator processes; the simulator holds its answers or throttles, as Twilio would."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stack import Stack, poll

CONCURRENCY = 8


@pytest.fixture
def stack() -> Iterator[Stack]:
    running = Stack(7, FALLBACK_CHANNELS="", RATE_LIMIT_PER_NUMBER="1000", SEND_CONCURRENCY=str(CONCURRENCY),
                    DELIVERY_RETRY_INTERVALS="1", TWILIO_TIMEOUT="30", DELIVERY_DEADLINE="600")
    try:
        yield running.start()
    finally:
        running.stop()


def test_one_worker_has_as_many_sends_in_flight_as_the_setting_allows(stack: Stack) -> None:
    numbers = [f"+486007001{i:02d}" for i in range(CONCURRENCY + 4)]
    for to in numbers:  # the carrier takes each message at once but answers only 6 s later
        stack.sim("PUT", f"handsets/{to}/behaviour", {"rest_delay_ms": 6000})
    started = [stack.start_verification(to, channel="sms")["id"] for to in numbers]

    def reached() -> list[str]:
        return [to for to in numbers if stack.inbox(to)]

    first = poll(lambda: len(reached()) >= CONCURRENCY and reached(), 20, what="the sends in flight")
    # No answer has come back yet (a recorded send leaves the outbox), so all of these are in
    # flight together, and no more than the setting: the others wait for a free slot.
    assert stack.redis.zcard("gw:outbox") == len(numbers)
    assert len(first) == CONCURRENCY
    for vid, to in zip(started, numbers):
        assert stack.check(vid, stack.sms_code(to, timeout=40))["valid"] is True
    assert [len(stack.inbox(to)) for to in numbers] == [1] * len(numbers)


def test_a_burst_of_429s_slows_the_sender_and_every_verification_is_delivered(stack: Stack) -> None:
    numbers = [f"+486007002{i:02d}" for i in range(6)]
    throttled = {"sms": "reject", "sms_error_code": 20429}  # HTTP 429 + Twilio error 20429
    for to in numbers:
        stack.sim("PUT", f"handsets/{to}/behaviour", throttled)
    started = [stack.start_verification(to, channel="sms")["id"] for to in numbers]

    def throttled_sends() -> int:
        return sum(1 for r in stack.sim("GET", "requests")["requests"]
                   if r["path"].endswith("/Messages.json") and r["status"] == 429)

    # Three 429s per verification: more than DELIVERY_RETRY_INTERVALS (one retry) would allow
    # if a throttled send used a try up.
    poll(lambda: throttled_sends() >= 3 * len(numbers), 60, 0.2, what="repeated 429s")
    for to in numbers:
        stack.sim("PUT", f"handsets/{to}/behaviour", {"sms": "deliver"})
    for vid, to in zip(started, numbers):
        assert stack.check(vid, stack.sms_code(to, timeout=30))["status"] == "approved"
    assert [len(stack.inbox(to)) for to in numbers] == [1] * len(numbers)  # one accepted send each
