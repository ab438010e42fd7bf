"""Two-way SMS end to end: web + worker processes, real Redis, the simulator's handsets."""
from __future__ import annotations

import itertools
import re
import secrets
import shlex
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from twilio.request_validator import RequestValidator

from gateway import i18n
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, holds_code, redis_dump
from tests.stack import SMS_NUMBER, Stack, poll, procfile

TIMEOUT = 3  # SMS_REPLY_TIMEOUT of the `timed` gateway
INBOUND = "/webhooks/twilio/sms/inbound"
APPROVED = i18n.text("en", "sms", "reply_approved")
_numbers = itertools.count(400)


def new_number() -> str:
    """A Polish mobile number no other test uses (handsets keep their messages)."""
    return f"+48600100{next(_numbers):03d}"


def gateway(db: int, reply_timeout: int) -> Stack:
    """A gateway whose two-way SMS waits reply_timeout seconds and that falls back to nothing."""
    return Stack(db, SMS_REPLY_TIMEOUT=str(reply_timeout), FALLBACK_CHANNELS="", RATE_LIMIT_PER_NUMBER="1000")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """A gateway with a roomy reply timeout, for replies whose timing does not matter."""
    running = gateway(6, 20)
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture(scope="module")
def timed() -> Iterator[Stack]:
    """A gateway with SMS_REPLY_TIMEOUT=3, for the timeout."""
    running = gateway(5, TIMEOUT)
    try:
        yield running.start()
    finally:
        running.stop()


# -- helpers ------------------------------------------------------------------------------

def handset(stack: Stack, number: str, **behaviour: Any) -> None:
    """How the simulated phone behaves (auto-reply text with {code}, SMS outcome)."""
    stack.sim("PATCH", f"handsets/{number}/behaviour", behaviour)


def inbox(stack: Stack, number: str, kind: str | None = None) -> list[dict[str, Any]]:
    """The SMS a handset received (kind: 'api' prompts, 'reply' TwiML answers, 'auto' carrier texts)."""
    messages = stack.sim("GET", f"handsets/{number}")["inbox"]
    return [m for m in messages if kind is None or m["kind"] == kind]


def prompt_code(stack: Stack, number: str) -> str:
    """The code in the two-way prompt the handset received (waits for it)."""
    prompts = poll(lambda: inbox(stack, number, "api"), 15, what=f"a prompt to {number}")
    match = re.search(r"\b(\d{4,10})\b", prompts[-1]["body"])
    assert match, prompts[-1]
    return match.group(1)


def text(stack: Stack, number: str, body: str) -> dict[str, Any]:
    """The handset texts the gateway's number; returns the gateway's answer to the inbound webhook."""
    sid = stack.sim("POST", f"handsets/{number}/sms", {"body": body, "to": SMS_NUMBER})["sid"]

    def answered() -> dict[str, Any] | None:
        hooks = stack.sim("GET", f"webhooks?kind=sms-inbound&sid={sid}")["webhooks"]
        return hooks[-1] if hooks and (hooks[-1]["status"] or hooks[-1]["error"]) else None

    return poll(answered, 15, what=f"the gateway's answer to {body!r}")  # type: ignore[no-any-return]


def messages_in(twiml: str | None) -> list[str]:
    """The <Message> texts of a TwiML answer."""
    return [m.text or "" for m in ET.fromstring(twiml or "").findall("Message")]


def two_way(stack: Stack, number: str) -> str:
    """Start a two-way SMS verification; its id."""
    return stack.start_verification(number, channel="sms_reply")["id"]  # type: ignore[no-any-return]


def signed_post(stack: Stack, params: dict[str, str], token: str = AUTH_TOKEN) -> requests.Response:
    """POST the inbound webhook as Twilio would (signed over PUBLIC_BASE_URL + path)."""
    signature = RequestValidator(token).compute_signature(stack.url + INBOUND, params)
    return requests.post(stack.url + INBOUND, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)


def inbound_form(number: str, body: str, sid: str | None = None) -> dict[str, str]:
    """An inbound-SMS webhook form."""
    sid = sid or "SM" + secrets.token_hex(16)
    return {"MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid, "AccountSid": ACCOUNT_SID, "From": number,
            "To": SMS_NUMBER, "Body": body, "NumMedia": "0", "NumSegments": "1", "SmsStatus": "received",
            "ApiVersion": "2010-04-01"}


def audit_of(stack: Stack, verification_id: str) -> list[dict[str, str]]:
    """The audit records of one verification."""
    records = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in stack.redis.xrange("gw:audit")]
    return [r for r in records if r["verification_id"] == verification_id]


def stored(stack: Stack, verification_id: str) -> dict[str, str]:
    """The verification's hash as the processes left it (reading it through the API would enforce expiry)."""
    return {k.decode(): v.decode() for k, v in stack.redis.hgetall(f"gw:vf:{verification_id}").items()}


def restart_worker(stack: Stack) -> None:
    """Start the Procfile's worker again after a test stopped it."""
    stack.spawn("worker", procfile()["worker"].strip().replace("python ", f"{shlex.quote(sys.executable)} ", 1))
    poll(lambda: stack.redis.smembers("rq:workers"), 20, what="the worker")


# -- replies ---------------------------------------------------------------------------------

def test_a_right_reply_approves_and_wakes_a_waiting_caller_at_once(stack: Stack) -> None:
    number = new_number()
    handset(stack, number, sms_reply="Code: {code} thanks", sms_reply_delay_ms=1500)
    vid = two_way(stack, number)
    code = prompt_code(stack, number)
    assert not holds_code(redis_dump(stack.redis), code)  # pending: only a keyed hash in Redis
    v = stack.wait(vid, 20)
    woke = time.time()
    assert v["status"] == "approved" and v["reason"] is None
    assert woke - float(stored(stack, vid)["ended"]) < 1.0  # woken by the approval, not by the 20 s
    assert poll(lambda: [m["body"] for m in inbox(stack, number, "reply")], 15, what="the confirmation") == [APPROVED]
    (record,) = audit_of(stack, vid)
    assert record["status"] == "approved" and record["channel"] == "sms_reply"
    prompt = inbox(stack, number, "api")[0]
    assert prompt["from"] == SMS_NUMBER and prompt["num_segments"] == 1
    assert not holds_code(redis_dump(stack.redis), code)  # nor anywhere once approved


def test_a_wrong_reply_counts_down_and_never_approves(stack: Stack) -> None:
    number = new_number()
    vid = two_way(stack, number)
    code = prompt_code(stack, number)
    wrong = "000000" if code != "000000" else "111111"
    assert messages_in(text(stack, number, f"  {wrong[:3]} {wrong[3:]} ")["response_body"]) == []
    v = stack.read(vid)
    assert v["status"] == "pending" and v["remaining_attempts"] == 4
    text(stack, number, wrong)
    assert stack.read(vid)["remaining_attempts"] == 3
    assert messages_in(text(stack, number, code)["response_body"]) == [APPROVED]
    assert stack.read(vid)["status"] == "approved"


def test_a_reply_from_another_number_does_nothing(stack: Stack) -> None:
    number, stranger = new_number(), new_number()
    vid = two_way(stack, number)
    code = prompt_code(stack, number)
    answer = text(stack, stranger, code)
    assert answer["status"] == 200 and messages_in(answer["response_body"]) == []
    v = stack.read(vid)
    assert v["status"] == "pending" and v["remaining_attempts"] == 5
    assert stack.check(vid, code)["valid"] is True  # the code itself was never used up


def test_the_newest_pending_verification_takes_the_reply(stack: Stack) -> None:
    number = new_number()
    older = two_way(stack, number)
    older_code = prompt_code(stack, number)
    newer = two_way(stack, number)
    poll(lambda: len(inbox(stack, number, "api")) == 2, 15, what="the second prompt")
    newer_code = prompt_code(stack, number)
    assert messages_in(text(stack, number, newer_code)["response_body"]) == [APPROVED]
    assert stack.read(newer)["status"] == "approved" and stack.read(older)["status"] == "pending"
    assert messages_in(text(stack, number, older_code)["response_body"]) == [APPROVED]
    assert stack.read(older)["status"] == "approved"


# -- webhook hygiene -------------------------------------------------------------------------

def test_duplicate_inbound_webhooks_have_one_effect(stack: Stack) -> None:
    number = new_number()
    vid = two_way(stack, number)
    code = prompt_code(stack, number)
    wrong = inbound_form(number, "999999" if code != "999999" else "888888")
    assert [signed_post(stack, wrong).status_code for _ in range(3)] == [200, 200, 200]
    assert stack.read(vid)["remaining_attempts"] == 4
    right = inbound_form(number, code)
    answers = [messages_in(signed_post(stack, right).text) for _ in range(3)]
    assert answers == [[APPROVED], [], []]
    assert stack.read(vid)["status"] == "approved" and len(audit_of(stack, vid)) == 1


def test_forged_inbound_webhooks_are_refused_and_change_nothing(stack: Stack) -> None:
    number = new_number()
    vid = two_way(stack, number)
    code = prompt_code(stack, number)
    stack.attempts_where(vid, lambda a: a[0]["status"] == "delivered")  # no callback left to change it
    before = stored(stack, vid)
    forged = signed_post(stack, inbound_form(number, code), token="guessed-token")
    unsigned = requests.post(stack.url + INBOUND, data=inbound_form(number, code), timeout=10)
    stop = requests.post(stack.url + INBOUND, data=inbound_form(number, "STOP"), timeout=10)
    assert [forged.status_code, unsigned.status_code, stop.status_code] == [403, 403, 403]
    assert forged.json()["error"]["code"] == "forbidden"
    assert stored(stack, vid) == before and not stack.redis.exists(f"gw:optout:{number}")
    assert stack.read(vid)["status"] == "pending"


# -- opt-out keywords ------------------------------------------------------------------------

def test_stop_refuses_sms_but_allows_calls_and_start_lifts_it(stack: Stack) -> None:
    number = new_number()
    answer = text(stack, number, "Stop")
    assert answer["status"] == 200 and messages_in(answer["response_body"]) == []
    for channel in ("sms", "sms_reply"):
        r = stack.api("POST", "/v1/verifications", {"to": number, "channel": channel})
        assert r.status_code == 403 and r.json()["error"]["code"] == "destination_blocked"
    assert stack.api("POST", "/v1/verifications", {"to": number, "channel": "call"}).status_code == 201
    auto = stack.api("POST", "/v1/verifications", {"to": number, "channel": "auto", "fallback": ["sms"]})
    assert auto.status_code == 201 and auto.json()["channels"] == ["call"]
    assert text(stack, number, "START")["status"] == 200
    vid = two_way(stack, number)
    code = prompt_code(stack, number)  # the simulated carrier delivers to it again, too
    assert messages_in(text(stack, number, code)["response_body"]) == [APPROVED]
    assert stack.read(vid)["status"] == "approved"


def test_help_gets_a_help_text(stack: Stack) -> None:
    answer = text(stack, new_number(), "help")
    (body,) = messages_in(answer["response_body"])
    assert "STOP" in body and "START" in body


def test_a_carrier_opt_out_21610_is_recorded(stack: Stack) -> None:
    number = new_number()
    handset(stack, number, sms="reject", sms_error_code=21610, sms_http_status=400)
    vid = two_way(stack, number)
    v = stack.attempts_where(vid, lambda attempts: attempts[0]["status"] == "failed")
    assert v["attempts"][0]["error_code"] == 21610
    assert stack.wait(vid, 10)["reason"] == "delivery_failed"  # no fallback channels configured here
    r = stack.api("POST", "/v1/verifications", {"to": number, "channel": "sms"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "destination_blocked"


# -- the reply timeout -----------------------------------------------------------------------

def test_without_a_reply_the_scheduler_denies_at_the_timeout(timed: Stack) -> None:
    number = new_number()
    vid = two_way(timed, number)
    prompt_code(timed, number)
    # Nobody reads it through the API, which would end it too: the worker's scheduled timer must.
    done = poll(lambda: (h := stored(timed, vid))["status"] != "pending" and h, TIMEOUT + 10,
                what="the scheduled timer")
    assert done["status"] == "denied" and done["reason"] == "reply_timeout"
    assert 0 <= float(done["ended"]) - float(done["expires"]) < 2.5  # rq's scheduler looks every second
    (record,) = audit_of(timed, vid)
    assert record["reason"] == "reply_timeout" and record["result"] == "denied"


def test_a_waiting_caller_wakes_at_the_timeout(timed: Stack) -> None:
    number = new_number()
    vid = two_way(timed, number)
    prompt_code(timed, number)
    v = timed.wait(vid, 20)
    woke = time.time()
    assert v["status"] == "denied" and v["reason"] == "reply_timeout"
    assert 0 <= woke - float(stored(timed, vid)["expires"]) < 2.5


def test_a_late_reply_approves_nothing(timed: Stack) -> None:
    number = new_number()
    vid = two_way(timed, number)
    code = prompt_code(timed, number)
    assert timed.wait(vid, 20)["reason"] == "reply_timeout"
    answer = text(timed, number, code)
    assert answer["status"] == 200 and messages_in(answer["response_body"]) == []
    v = timed.read(vid)
    assert v["status"] == "denied" and v["reason"] == "reply_timeout" and len(audit_of(timed, vid)) == 1


def test_a_late_reply_approves_nothing_even_with_the_worker_stopped(timed: Stack) -> None:
    number = new_number()
    vid = two_way(timed, number)
    code = prompt_code(timed, number)
    timed.stop("worker")
    try:
        expires = float(stored(timed, vid)["expires"])
        poll(lambda: time.time() > expires + 0.5, TIMEOUT + 5, what="the reply timeout to pass")
        assert stored(timed, vid)["status"] == "pending"  # no timer ran: only the reply path can enforce it
        answer = text(timed, number, code)
        assert answer["status"] == 200 and messages_in(answer["response_body"]) == []
        done = stored(timed, vid)
        assert done["status"] == "denied" and done["reason"] == "reply_timeout"
    finally:
        restart_worker(timed)
