"""The IVR channel end to end: web + worker processes, real Redis, the simulator's voice engine."""
from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from twilio.request_validator import RequestValidator

from gateway import i18n
from tests.stack import SMS_NUMBER, Stack, poll

PL_CALLER_ID = "+48221234567"
ORG = "Acme Bank"
TRIES = 2
_numbers = itertools.count(300)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """One gateway for the module: PL calls come from a Polish caller ID, others from VOICE_CALLER_ID."""
    running = Stack(
        3,
        SIM_NUMBERS=f"{SMS_NUMBER},{PL_CALLER_ID}",
        VOICE_CALLER_ID=SMS_NUMBER,
        CALLER_ID_BY_COUNTRY=f"PL={PL_CALLER_ID}",
        ORGANIZATION_NAME=ORG,
        CALL_MENU_TRIES=str(TRIES),
        CALL_TTL="30",
        FRAUD_BLOCK_SECONDS="60",
        RATE_LIMIT_PER_NUMBER="1000",
        CONFIRM_CALLS_PER_NUMBER_HOUR="1000",  # many calls to one handset; the cap has its own test
    )
    try:
        yield running.start()
    finally:
        running.stop()


def new_number() -> str:
    """A Polish mobile number no other test uses (handsets keep their calls)."""
    return f"+48600100{next(_numbers):03d}"


def handset(stack: Stack, number: str, **behaviour: Any) -> None:
    """How the simulated phone answers (call mode, scripted keys per Gather)."""
    stack.sim("PUT", f"handsets/{number}/behaviour", behaviour)


def call_verification(stack: Stack, number: str, **body: Any) -> str:
    """Start a call verification that falls back to nothing."""
    return stack.start_verification(number, channel="call", fallback=[], **body)["id"]  # type: ignore[no-any-return]


def ended(stack: Stack, verification_id: str) -> dict[str, Any]:
    """The verification once it has left pending."""
    def done() -> dict[str, Any] | None:
        v = stack.wait(verification_id, 10)
        return v if v["status"] != "pending" else None

    return poll(done, 30, what=f"{verification_id} to end")


def finished_call(stack: Stack, number: str) -> dict[str, Any]:
    """The handset's last call, once it has ended (with its transcript)."""
    def done() -> dict[str, Any] | None:
        calls = stack.sim("GET", f"handsets/{number}")["calls"]
        return calls[-1] if calls and not calls[-1]["active"] else None

    return poll(done, 30, what=f"a finished call to {number}")


def wait_in_menu(stack: Stack, number: str) -> dict[str, Any]:
    """The handset's call once it was answered and waits for keys (interactive handsets)."""
    def waiting() -> dict[str, Any] | None:
        call: dict[str, Any] | None = stack.sim("GET", f"handsets/{number}")["active_call"]
        return call if call and call["waiting_for_keys"] else None

    return poll(waiting, 20, what=f"the menu on {number}")


def call_form(stack: Stack, number: str) -> dict[str, list[str]]:
    """The Create Call request the gateway sent for a number, as name -> values."""
    for record in reversed(stack.sim("GET", "requests?validate=1")["requests"]):
        assert not record["problems"], record  # every request fits Twilio's OpenAPI description
        form: dict[str, list[str]] = {}
        for name, value in record["form"]:
            form.setdefault(name, []).append(value)
        if record["path"].endswith("/Calls.json") and form.get("To") == [number]:
            return form
    raise AssertionError(f"no call request to {number}")


def webhooks_of(stack: Stack, sid: str, count: int) -> list[dict[str, Any]]:
    """The webhooks the simulator sent about a call, once at least count of them were answered."""
    def enough() -> list[dict[str, Any]] | None:
        hooks: list[dict[str, Any]] = stack.sim("GET", f"webhooks?sid={sid}")["webhooks"]
        answered = [hook for hook in hooks if hook["status"] is not None or hook["error"] is not None]
        return hooks if len(answered) >= count else None

    return poll(enough, 15, what=f"{count} webhooks of {sid}")


def spoken_code(call: dict[str, Any]) -> str:
    """The code as the handset heard it (digits spelled one by one)."""
    for said in call["said"]:
        match = re.search(r"\d(?:, \d)+", said["text"])
        if match:
            return match.group(0).replace(", ", "")
    raise AssertionError(f"no code in {call['said']}")


def test_pound_approves(stack: Stack) -> None:
    number = new_number()
    handset(stack, number, call="answer", keys=["#"])
    vid = call_verification(stack, number)
    body = ended(stack, vid)
    assert (body["status"], body["reason"]) == ("approved", None)
    call = finished_call(stack, number)
    assert ORG in call["said"][0]["text"] and call["said"][0]["language"] == "en-US"
    assert call["said"][0]["voice"] == "Polly.Joanna" and not call["errors"]
    hooks = webhooks_of(stack, call["sid"], 6)  # initiated, ringing, answered, answer URL, Gather, completed
    assert [w["kind"] for w in hooks].count("voice") == 2  # the answer URL and one Gather action
    assert all(200 <= (w["status"] or 0) < 300 for w in hooks), hooks
    form = call_form(stack, number)
    assert form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert form["Url"] == [f"{stack.url}/webhooks/twilio/voice/{vid}/1/answer"]
    assert form["StatusCallback"] == [f"{stack.url}/webhooks/twilio/voice/{vid}/1/status"]
    assert form["Timeout"] == ["30"] and "MachineDetection" not in form
    poll(lambda: stack.read(vid)["attempts"][0]["status"] == "completed", 15, what="the completed callback")


def test_zero_then_pound_reports_fraud_and_blocks_the_number(stack: Stack) -> None:
    number = new_number()
    handset(stack, number, call="answer", keys=["0", "#"])
    vid = call_verification(stack, number)
    body = ended(stack, vid)
    assert (body["status"], body["reason"]) == ("denied", "fraud_reported")
    r = stack.api("POST", "/v1/verifications", {"to": number, "channel": "call"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "destination_blocked"
    call = finished_call(stack, number)
    assert "fraud" in call["said"][-1]["text"] and [g["digits"] for g in call["gathers"]] == ["0", "#"]


def test_zero_pound_typed_in_one_go_is_asked_for_again_not_lost(stack: Stack) -> None:
    # The simulator, like Twilio's documents allow, drops the # pressed while no Gather listens
    # (it ended on the 0); the fraud step's prompt asks for it, and the caller's next # reports fraud.
    number = new_number()
    handset(stack, number, call="answer", keys=["0#", "#"])
    vid = call_verification(stack, number)
    body = ended(stack, vid)
    assert (body["status"], body["reason"]) == ("denied", "fraud_reported")
    call = finished_call(stack, number)
    assert call["unheard"] == "#" and [g["digits"] for g in call["gathers"]] == ["0", "#"]
    assert i18n.text("en", "voice", "fraud_confirm") in [s["text"] for s in call["said"]]


def test_keys_pressed_on_a_live_call_approve_and_report_fraud(stack: Stack) -> None:
    approver, reporter = new_number(), new_number()
    for number in (approver, reporter):
        handset(stack, number, call="interactive")
    approve, report = call_verification(stack, approver), call_verification(stack, reporter)
    wait_in_menu(stack, approver)
    stack.sim("POST", f"handsets/{approver}/keys", {"keys": "#"})
    assert ended(stack, approve)["status"] == "approved"
    wait_in_menu(stack, reporter)
    stack.sim("POST", f"handsets/{reporter}/keys", {"keys": "0"})
    poll(lambda: stack.sim("GET", f"handsets/{reporter}")["active_call"]["gather"] is not None
         and stack.sim("GET", f"handsets/{reporter}")["active_call"]["said"][-1]["text"]
         == i18n.text("en", "voice", "fraud_confirm"), 20, what="the fraud step")
    stack.sim("POST", f"handsets/{reporter}/keys", {"keys": "#"})
    assert ended(stack, report)["reason"] == "fraud_reported"


def test_silence_denies_no_input_after_the_menu_tries(stack: Stack) -> None:
    number = new_number()
    handset(stack, number, call="silent")
    vid = call_verification(stack, number)
    body = ended(stack, vid)
    assert (body["status"], body["reason"]) == ("denied", "no_input")
    call = finished_call(stack, number)
    assert len(call["gathers"]) == TRIES and all(g["digits"] == "" for g in call["gathers"])


def test_a_wrong_key_then_pound_approves(stack: Stack) -> None:
    number = new_number()
    handset(stack, number, call="answer", keys=["5", "#"])
    vid = call_verification(stack, number)
    assert ended(stack, vid)["status"] == "approved"
    call = finished_call(stack, number)
    assert [g["digits"] for g in call["gathers"]] == ["5", "#"]


def test_hanging_up_mid_menu_denies_no_input(stack: Stack) -> None:
    number = new_number()
    handset(stack, number, call="interactive")
    vid = call_verification(stack, number)
    wait_in_menu(stack, number)
    stack.sim("POST", f"handsets/{number}/hangup")
    body = ended(stack, vid)
    assert (body["status"], body["reason"]) == ("denied", "no_input")


def test_code_mode_reads_a_code_that_checks_through_the_api(stack: Stack) -> None:
    number = new_number()
    handset(stack, number, call="answer", keys=["1"])  # hear it again once, then silence
    vid = call_verification(stack, number, ivr_mode="code")
    call = finished_call(stack, number)
    code = spoken_code(call)
    assert len(code) == 6 and sum(code in s["text"].replace(", ", "") for s in call["said"]) == 4
    assert call["answered_by"] == "human" and call_form(stack, number)["MachineDetection"] == ["Enable"]
    assert stack.read(vid)["status"] == "pending"  # the call is over; the user types the code in
    wrong = "0" * 6 if code != "0" * 6 else "1" * 6
    assert stack.check(vid, wrong)["valid"] is False
    result = stack.check(vid, code)
    assert result["valid"] is True and result["status"] == "approved"


def test_polish_prompts(stack: Stack) -> None:
    number = new_number()
    handset(stack, number, call="answer", keys=["#"])
    vid = call_verification(stack, number, locale="pl")
    assert ended(stack, vid)["status"] == "approved"
    said = finished_call(stack, number)["said"]
    assert said and all((s["language"], s["voice"]) == ("pl-PL", "Polly.Ewa") for s in said)
    assert "krzyżyk" in said[0]["text"] and "zatwierdzone" in said[-1]["text"]


@pytest.mark.parametrize("mode", ["busy", "no-answer", "failed"])
def test_unanswered_calls_are_failed_deliveries(stack: Stack, mode: str) -> None:
    number = new_number()
    handset(stack, number, call=mode)
    vid = call_verification(stack, number)
    body = ended(stack, vid)
    assert (body["status"], body["reason"]) == ("failed", "delivery_failed")
    assert body["attempts"][0]["status"] == mode


def test_caller_id_follows_the_destination_country(stack: Stack) -> None:
    polish, american = new_number(), f"+1202555{next(_numbers):04d}"
    for number in (polish, american):
        handset(stack, number, call="answer", keys=["#"])
        assert ended(stack, call_verification(stack, number))["status"] == "approved"
    assert finished_call(stack, polish)["from"] == PL_CALLER_ID
    assert finished_call(stack, american)["from"] == SMS_NUMBER


def test_voicemail_never_hears_the_code(stack: Stack) -> None:
    number = new_number()
    handset(stack, number, call="voicemail")
    vid = call_verification(stack, number, ivr_mode="code")
    body = ended(stack, vid)
    assert (body["status"], body["reason"]) == ("failed", "delivery_failed")
    assert body["attempts"][0]["status"] == "failed"
    call = finished_call(stack, number)
    assert call["answered_by"].startswith("machine") and call["said"] == []
    assert not any(re.search(r"\d", str(entry.get("text", ""))) for entry in call["transcript"])


def test_forged_voice_webhooks_are_rejected(stack: Stack) -> None:
    number = new_number()
    handset(stack, number, call="interactive")
    vid = call_verification(stack, number)
    sid = wait_in_menu(stack, number)["sid"]
    path = f"/webhooks/twilio/voice/{vid}/1/gather?round=1"
    params = {"CallSid": sid, "Digits": "", "FinishedOnKey": "#", "CallStatus": "in-progress"}
    forged = RequestValidator("not-the-token").compute_signature(stack.url + path, params)
    for headers in ({}, {"X-Twilio-Signature": forged}):
        r = requests.post(stack.url + path, data=params, headers=headers, timeout=10)
        assert r.status_code == 403
    assert stack.read(vid)["status"] == "pending"
    stack.sim("POST", f"handsets/{number}/hangup")
    assert ended(stack, vid)["reason"] == "no_input"


@pytest.fixture(scope="module")
def short_stack() -> Iterator[Stack]:
    """A gateway whose calls expire after two seconds."""
    running = Stack(4, CALL_TTL="2", RATE_LIMIT_PER_NUMBER="1000")
    try:
        yield running.start()
    finally:
        running.stop()


def test_a_call_answered_after_the_verification_expired_only_hears_goodbye(short_stack: Stack) -> None:
    number = new_number()
    handset(short_stack, number, call="answer", keys=["#"], ring_ms=3000)
    vid = call_verification(short_stack, number)
    call = finished_call(short_stack, number)
    assert [s["text"] for s in call["said"]] == [i18n.text("en", "voice", "ended")]
    assert call["gathers"] == []
    body = short_stack.read(vid)
    assert (body["status"], body["reason"]) == ("expired", "expired")
