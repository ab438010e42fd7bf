"""One-way SMS end to end: the Procfile's web and worker processes, real Redis, the simulator."""
from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pytest
import requests
from twilio.request_validator import RequestValidator

from tests.conftest import AUTH_TOKEN
from tests.stack import Stack, poll

_numbers = itertools.count(100)


def new_number() -> str:
    """A Polish mobile number no other test uses."""
    return f"+48600200{next(_numbers):03d}"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    running = Stack(1, SMS_CODE_TTL="180", FALLBACK_CHANNELS="", RATE_LIMIT_PER_NUMBER="1000",
                    DELIVERY_RETRY_INTERVALS="0,0", DELIVERY_DEADLINE="600")
    try:
        yield running.start()
    finally:
        running.stop()


def test_sms_code_approves_exactly_once(stack: Stack) -> None:
    to = new_number()
    v = stack.start_verification(to, channel="sms", user_id="alice", client_ip="203.0.113.7",
                                 user={"first_name": "Alice", "email": "alice@example.com"})
    code = stack.sms_code(to)
    assert len(code) == 6
    delivered = stack.attempts_where(v["id"], lambda a: a[0]["status"] == "delivered")
    assert delivered["status"] == "pending"
    assert 179 <= _seconds(delivered["expires_at"]) - _seconds(delivered["attempts"][0]["started_at"]) <= 182
    first = stack.check(v["id"], code)
    assert first["valid"] is True and first["status"] == "approved"
    assert stack.check(v["id"], code)["valid"] is False
    record = {k.decode(): val.decode() for k, val in stack.redis.xrange("gw:audit")[-1][1].items()}
    assert record["verification_id"] == v["id"] and record["result"] == "approved"
    assert record["user_id"] == "alice" and record["client_ip"] == "203.0.113.7" and record["email"] == "alice@example.com"
    assert record["phone_number"] == to and record["channel"] == "sms" and record["server_name"]
    assert json.loads(record["attempts"])[0]["status"] == "delivered"
    assert code not in json.dumps(record)
    # The worker's supervisor counts the approval's conversion: the number is trusted, with its user.
    poll(lambda: stack.redis.hexists(f"gw:conv:{to}", "u:alice"), 10, what="the conversion counted")
    assert stack.redis.llen("gw:conversions") == 0


def test_every_request_to_the_carrier_validates_against_twilios_openapi(stack: Stack) -> None:
    to = new_number()
    stack.start_verification(to, channel="sms")
    stack.sms_code(to)
    requests_seen = stack.sim("GET", "requests?validate=1")["requests"]
    assert requests_seen, "the gateway sent nothing to the simulator"
    problems = [(r["path"], r.get("problems")) for r in requests_seen if r.get("problems")]
    assert problems == []


def test_wrong_codes_then_denied(stack: Stack) -> None:
    to = new_number()
    v = stack.start_verification(to, channel="sms")
    code = stack.sms_code(to)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(4):
        assert stack.check(v["id"], wrong)["status"] == "pending"
    final = stack.check(v["id"], wrong)
    assert final["status"] == "denied" and final["reason"] == "max_attempts"
    assert stack.check(v["id"], code)["valid"] is False


def test_undelivered_is_recorded_with_its_error_code(stack: Stack) -> None:
    to = new_number()
    stack.sim("PUT", f"handsets/{to}/behaviour", {"sms": "undelivered", "sms_error_code": 30003})
    v = stack.start_verification(to, channel="sms")
    done = stack.wait(v["id"])
    assert done["status"] == "failed" and done["reason"] == "delivery_failed"
    assert done["attempts"][0]["status"] == "undelivered" and done["attempts"][0]["error_code"] == 30003


def test_rest_rejection_is_recorded(stack: Stack) -> None:
    to = new_number()
    stack.sim("PUT", f"handsets/{to}/behaviour", {"sms": "reject", "sms_error_code": 21612})
    v = stack.start_verification(to, channel="sms")
    done = stack.wait(v["id"])
    assert done["status"] == "failed" and done["attempts"][0]["error_code"] == 21612


def test_twilio_5xx_is_retried_then_given_up(stack: Stack) -> None:
    to = new_number()
    stack.sim("PUT", f"handsets/{to}/behaviour", {"sms": "reject", "sms_error_code": 20500})
    v = stack.start_verification(to, channel="sms")
    done = stack.wait(v["id"])
    assert done["status"] == "failed" and done["reason"] == "delivery_failed"
    sent = [r for r in stack.sim("GET", "requests")["requests"] if dict(r["form"]).get("To") == to]
    assert len(sent) == 3  # the first try and two retries (DELIVERY_RETRY_INTERVALS=0,0)


def test_duplicated_and_reordered_callbacks_never_move_back(stack: Stack) -> None:
    to = new_number()
    stack.sim("PUT", f"handsets/{to}/behaviour", {"duplicate_callbacks": True, "reorder_callbacks": True})
    v = stack.start_verification(to, channel="sms")
    stack.sms_code(to)
    sid = next(m["sid"] for m in stack.sim("GET", "messages")["messages"] if m["to"] == to)
    poll(lambda: len(stack.sim("GET", f"webhooks?sid={sid}")["webhooks"]) >= 4, what="all callbacks")
    assert stack.read(v["id"])["attempts"][0]["status"] == "delivered"


def test_forged_and_unsigned_callbacks_are_refused(stack: Stack) -> None:
    to = new_number()
    v = stack.start_verification(to, channel="sms")
    stack.sms_code(to)
    path = f"/webhooks/twilio/sms/status/{v['id']}/1"
    form = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    unsigned = requests.post(stack.url + path, data=form, timeout=10)
    wrong_key = RequestValidator("not-the-token").compute_signature(stack.url + path, form)
    forged = requests.post(stack.url + path, data=form, headers={"X-Twilio-Signature": wrong_key}, timeout=10)
    tampered_sig = RequestValidator(AUTH_TOKEN).compute_signature(stack.url + path, {**form, "ErrorCode": "1"})
    tampered = requests.post(stack.url + path, data=form, headers={"X-Twilio-Signature": tampered_sig}, timeout=10)
    assert unsigned.status_code == forged.status_code == tampered.status_code == 403
    assert stack.read(v["id"])["attempts"][0]["status"] != "undelivered"


def test_expiry_produces_its_audit_record_without_anyone_asking() -> None:
    short = Stack(2, SMS_CODE_TTL="2", FALLBACK_CHANNELS="").start()
    try:
        to = new_number()
        v = short.start_verification(to, channel="sms")
        short.sms_code(to)

        def expired_record() -> bool:
            return any(e[1].get(b"verification_id", b"").decode() == v["id"] for e in short.redis.xrange("gw:audit"))

        poll(expired_record, 15, what="the expiry's audit record")  # written by the scheduled job
        final = short.read(v["id"])
        assert final["status"] == "expired" and final["reason"] == "expired"
    finally:
        short.stop()


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").timestamp()
