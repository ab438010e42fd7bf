"""Delivery-aware fallback end to end: what the carrier reports moves the chain, once."""
from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator

import pyotp
import pytest

from tests.stack import Stack, poll

_numbers = itertools.count(100)
_users = itertools.count(1)


def new_number() -> str:
    """A Polish mobile number no other test uses."""
    return f"+48600400{next(_numbers):03d}"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    running = Stack(8, RATE_LIMIT_PER_NUMBER="1000", DELIVERY_RETRY_INTERVALS="0", DELIVERY_DEADLINE="2",
                    RESEND_INTERVAL="0", FALLBACK_CHANNELS="totp")
    try:
        yield running.start()
    finally:
        running.stop()


def enrolled_user(stack: Stack) -> tuple[str, pyotp.TOTP]:
    """A user with an authenticator app."""
    user = f"user{next(_users)}"
    r = stack.api("POST", f"/v1/users/{user}/totp")
    assert r.status_code == 201
    app = pyotp.parse_uri(r.json()["otpauth_uri"])
    # Confirmed with the previous step's code: the app is active and the current step unused.
    r = stack.api("POST", f"/v1/users/{user}/totp/confirm", {"code": app.at(time.time() - 30)})
    assert r.status_code == 200, r.text
    return user, app


def fresh_code(app: pyotp.TOTP) -> str:
    """The app's code now, away from a step boundary (waits for the wall clock, not a process)."""
    while 30 - time.time() % 30 < 3:
        time.sleep(0.05)
    return app.now()


def test_undelivered_sms_falls_back_to_the_app_and_approves(stack: Stack) -> None:
    user, app = enrolled_user(stack)
    to = new_number()
    stack.sim("PUT", f"handsets/{to}/behaviour", {"sms": "undelivered", "sms_error_code": 30003})
    v = stack.start_verification(to, channel="sms", user_id=user)
    assert v["channels"] == ["sms", "totp"]
    moved = stack.attempts_where(v["id"], lambda a: len(a) == 2)
    assert moved["channel"] == "totp" and moved["status"] == "pending"
    assert moved["attempts"][0] == {**moved["attempts"][0], "status": "undelivered", "error_code": 30003}
    assert stack.check(v["id"], fresh_code(app))["status"] == "approved"
    record = {k.decode(): val.decode() for k, val in stack.redis.xrange("gw:audit")[-1][1].items()}
    steps = json.loads(record["attempts"])
    assert [s["channel"] for s in steps] == ["sms", "totp"] and steps[0]["ended_because"] == "undelivered"


def test_rest_error_not_a_mobile_moves_on(stack: Stack) -> None:
    user, _ = enrolled_user(stack)
    to = new_number()
    stack.sim("PUT", f"handsets/{to}/behaviour", {"sms": "reject", "sms_error_code": 21614})
    v = stack.start_verification(to, channel="sms", user_id=user)
    moved = stack.attempts_where(v["id"], lambda a: len(a) == 2)
    assert moved["attempts"][0]["status"] == "failed" and moved["attempts"][0]["error_code"] == 21614
    assert moved["channel"] == "totp"


def test_duplicated_and_reordered_failure_callbacks_move_once(stack: Stack) -> None:
    user, _ = enrolled_user(stack)
    to = new_number()
    stack.sim("PUT", f"handsets/{to}/behaviour", {"sms": "undelivered", "sms_error_code": 30008,
                                                  "duplicate_callbacks": True, "reorder_callbacks": True})
    v = stack.start_verification(to, channel="sms", user_id=user)
    stack.attempts_where(v["id"], lambda a: len(a) == 2)
    sid = next(m["sid"] for m in stack.sim("GET", "messages")["messages"] if m["to"] == to)
    poll(lambda: len(stack.sim("GET", f"webhooks?sid={sid}")["webhooks"]) >= 4, what="every callback")
    assert len(stack.read(v["id"])["attempts"]) == 2  # one failure, one move
    fallbacks = stack.redis.hgetall("gw:metrics:fallbacks")
    assert sum(int(n) for k, n in fallbacks.items() if k.startswith(b"sms|totp|undelivered")) >= 1


def test_every_channel_failing_ends_failed(stack: Stack) -> None:
    to = new_number()
    stack.sim("PUT", f"handsets/{to}/behaviour", {"sms": "undelivered", "sms_error_code": 30003})
    v = stack.start_verification(to, channel="sms")  # no user: the app is skipped
    assert v["channels"] == ["sms"]
    done = stack.wait(v["id"])
    assert done["status"] == "failed" and done["reason"] == "delivery_failed"


def test_delivery_deadline_moves_on_and_the_code_works_until_then(stack: Stack) -> None:
    user, app = enrolled_user(stack)
    early, late = new_number(), new_number()
    for to in (early, late):
        stack.sim("PUT", f"handsets/{to}/behaviour", {"sms": "no_dlr"})
    quick = stack.start_verification(early, channel="sms", user_id=user)
    assert stack.check(quick["id"], stack.sms_code(early))["status"] == "approved"  # before the deadline
    slow = stack.start_verification(late, channel="sms", user_id=user)
    code = stack.sms_code(late)
    moved = stack.attempts_where(slow["id"], lambda a: len(a) == 2, timeout=20)
    assert moved["attempts"][0]["status"] == "sent" and moved["channel"] == "totp"
    assert stack.check(slow["id"], code)["valid"] is False  # the next attempt has started
    assert stack.check(slow["id"], fresh_code(app))["status"] == "approved"


def test_resend_starts_a_new_attempt_with_a_new_code(stack: Stack) -> None:
    to = new_number()
    v = stack.start_verification(to, channel="sms", fallback=[])
    old = stack.sms_code(to)
    r = stack.api("POST", f"/v1/verifications/{v['id']}/resend", {})
    assert r.status_code == 200 and len(r.json()["attempts"]) == 2
    new = stack.sms_code(to, count=2)
    assert stack.check(v["id"], old)["valid"] is False or old == new
    assert stack.check(v["id"], new)["status"] == "approved"
    again = stack.api("POST", f"/v1/verifications/{v['id']}/resend", {})
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_pending"


def test_resend_is_rate_limited() -> None:
    limited = Stack(2, RESEND_INTERVAL="60").start()
    try:
        v = limited.start_verification(new_number(), channel="sms")
        r = limited.api("POST", f"/v1/verifications/{v['id']}/resend")
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        bad = limited.api("POST", f"/v1/verifications/{v['id']}/resend", {"channel": "fax"})
        assert bad.status_code == 400
    finally:
        limited.stop()


def test_undelivered_sms_then_a_call_and_hash_approves(stack: Stack) -> None:
    to = new_number()
    stack.sim("PUT", f"handsets/{to}/behaviour",
              {"sms": "undelivered", "sms_error_code": 30003, "call": "answer", "keys": ["#"]})
    v = stack.start_verification(to, channel="sms", fallback=["call"])
    done = stack.wait(v["id"])
    assert done["status"] == "approved" and done["channel"] == "call"
    assert [a["channel"] for a in done["attempts"]] == ["sms", "call"]
    assert done["attempts"][0]["error_code"] == 30003


def test_rest_21614_moves_to_a_call(stack: Stack) -> None:
    to = new_number()
    stack.sim("PUT", f"handsets/{to}/behaviour",
              {"sms": "reject", "sms_error_code": 21614, "call": "answer", "keys": ["#"]})
    v = stack.start_verification(to, channel="sms", fallback=["call"])
    done = stack.wait(v["id"])
    assert done["status"] == "approved" and done["attempts"][0]["error_code"] == 21614


def test_fixed_line_with_auto_gets_a_call_and_no_sms(stack: Stack) -> None:
    landline = "+48221234599"
    stack.sim("PUT", f"handsets/{landline}/behaviour", {"call": "answer", "keys": ["#"]})
    v = stack.start_verification(landline, channel="auto", fallback=["sms"])
    assert v["channels"] == ["call"] and v["channel"] == "call"
    assert stack.wait(v["id"])["status"] == "approved"
    assert stack.inbox(landline) == []
    assert not [r for r in stack.sim("GET", "requests")["requests"]
                if r["path"].endswith("Messages.json") and dict(r["form"]).get("To") == landline]


def test_unanswered_call_moves_to_the_next_channel(stack: Stack) -> None:
    user, app = enrolled_user(stack)
    to = new_number()
    stack.sim("PUT", f"handsets/{to}/behaviour", {"call": "no-answer"})
    v = stack.start_verification(to, channel="call", fallback=["totp"], user_id=user)
    moved = stack.attempts_where(v["id"], lambda a: len(a) == 2)
    assert moved["attempts"][0]["status"] == "no-answer" and moved["channel"] == "totp"
    assert stack.check(v["id"], fresh_code(app))["status"] == "approved"


def test_sms_call_and_app_all_failing_ends_failed(stack: Stack) -> None:
    to = new_number()
    stack.sim("PUT", f"handsets/{to}/behaviour", {"sms": "undelivered", "sms_error_code": 30006, "call": "busy"})
    v = stack.start_verification(to, channel="sms", fallback=["call"])
    done = stack.wait(v["id"])
    assert done["status"] == "failed" and done["reason"] == "delivery_failed"
    assert [(a["channel"], a["status"]) for a in done["attempts"]] == [("sms", "undelivered"), ("call", "busy")]
