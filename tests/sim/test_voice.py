"""Voice engine against a throwaway TwiML app: Gather semantics, AMD, outcomes, callbacks, errors."""
from __future__ import annotations

import threading
import time

import pytest
from flask import Response
from twilio.twiml.voice_response import Gather, VoiceResponse

from .conftest import ACCOUNT_SID, MOBILE, OWNED, wait_for

VOICE_KEYS = {"AccountSid", "ApiVersion", "CallSid", "CallStatus", "Called", "CalledCity", "CalledCountry",
              "CalledState", "CalledZip", "Caller", "CallerCity", "CallerCountry", "CallerState", "CallerZip",
              "Direction", "From", "FromCity", "FromCountry", "FromState", "FromZip", "To", "ToCity", "ToCountry",
              "ToState", "ToZip"}
ALL_EVENTS = ["initiated", "ringing", "answered", "completed"]


def _twiml(gather_kwargs: dict, after: str = "Fell through") -> str:
    """A document with one Gather (prompt inside) and a Say after it, built with twilio's TwiML classes."""
    response = VoiceResponse()
    gather = Gather(**gather_kwargs)
    gather.say("Press a key", voice="Polly.Ewa", language="pl-PL")
    response.append(gather)
    response.say(after)
    return str(response)


def _call(client, receiver, path="/voice", **kwargs):
    """Create a call to MOBILE whose Url is on the receiver."""
    return client.calls.create(to=MOBILE, from_=OWNED, url=receiver.url(path), **kwargs)


def test_finish_on_key_disabled_hash_is_a_digit(sim, client, control, receiver):
    control.behave(MOBILE, keys=["#"])
    receiver.twiml("/voice", _twiml({"num_digits": 1, "finish_on_key": "", "action": "/action"}))
    receiver.twiml("/action", "<Response><Say>Thanks</Say></Response>")
    call = _call(client, receiver)
    hit = receiver.wait("/action")[0]
    assert hit.signature_valid
    assert hit.params()["Digits"] == "#" and hit.params()["FinishedOnKey"] == ""
    assert set(hit.params()) == VOICE_KEYS | {"Digits", "FinishedOnKey"}
    view = control.wait_call(call.sid)
    assert [s["text"] for s in view["said"]] == ["Press a key", "Thanks"]
    assert view["said"][0]["voice"] == "Polly.Ewa" and view["said"][0]["language"] == "pl-PL"


def test_lone_hash_with_default_finish_key_falls_through(sim, client, control, receiver):
    control.behave(MOBILE, keys=["#"])
    receiver.twiml("/voice", _twiml({"action": "/action"}))
    call = _call(client, receiver)
    view = control.wait_call(call.sid)
    assert receiver.get("/action") == []
    assert [s["text"] for s in view["said"]] == ["Press a key", "Fell through"]
    assert view["gathers"][0]["submitted"] is False and view["gathers"][0]["ended_by"] == "finish_key"


def test_action_on_empty_result_submits_a_lone_finish_key_exactly_like_silence(sim, client, control, receiver):
    # twilio.com/docs/api/twiml/gather ("action"): a finishOnKey before any other digit is no input.
    receiver.twiml("/voice", _twiml({"action": "/action", "action_on_empty_result": True}))
    receiver.twiml("/action", "<Response/>")
    control.behave(MOBILE, keys=["#"])
    _call(client, receiver)
    lone_hash = receiver.wait("/action")[0].params()
    control.behave(MOBILE, call="silent")
    _call(client, receiver)
    silence = receiver.wait("/action", 2)[1].params()
    assert (lone_hash["Digits"], lone_hash["FinishedOnKey"]) == ("", "")
    ignore = {"CallSid"}
    assert {k: v for k, v in lone_hash.items() if k not in ignore} == {k: v for k, v in silence.items() if k not in ignore}


def test_digits_then_finish_key(sim, client, control, receiver):
    control.behave(MOBILE, keys=["0#"])
    receiver.twiml("/voice", _twiml({"action": "/action"}))
    receiver.twiml("/action", "<Response/>")
    _call(client, receiver)
    hit = receiver.wait("/action")[0]
    assert (hit.params()["Digits"], hit.params()["FinishedOnKey"]) == ("0", "#")


def test_num_digits_ends_input_and_extra_keys_are_dropped(sim, client, control, receiver):
    control.behave(MOBILE, keys=["1234"])
    receiver.twiml("/voice", _twiml({"action": "/action", "num_digits": 2}))
    receiver.twiml("/action", "<Response/>")
    call = _call(client, receiver)
    hit = receiver.wait("/action")[0]
    assert (hit.params()["Digits"], hit.params()["FinishedOnKey"]) == ("12", "")
    view = control.wait_call(call.sid)
    assert view["pressed"] == "1234" and view["unheard"] == "34"


SECOND_GATHER = ('<Response><Gather numDigits="1" finishOnKey="" timeout="1" action="/second" '
                 'actionOnEmptyResult="true"/></Response>')


def _two_one_key_gathers(client, control, receiver, action=None):
    """A call whose first one-key Gather listens now; its action answers with a second one."""
    receiver.twiml("/voice", _twiml({"action": "/action", "num_digits": 1, "finish_on_key": "", "timeout": 10}))
    if action is None:
        receiver.twiml("/action", SECOND_GATHER)
    else:
        receiver.on("/action", action)
    receiver.twiml("/second", "<Response/>")
    call = _call(client, receiver)
    wait_for(lambda: control.call_of(call.sid)["waiting_for_keys"], what="gather waiting")
    return call


def test_keys_typed_in_one_go_do_not_carry_over_to_the_next_gather(sim, client, control, receiver):
    call = _two_one_key_gathers(client, control, receiver)
    control.call("POST", f"/handsets/{MOBILE}/keys", {"keys": "0#"})
    assert receiver.wait("/action")[0].params()["Digits"] == "0"
    assert receiver.wait("/second")[0].params()["Digits"] == ""  # the # did not reach the next Gather
    view = control.wait_call(call.sid)
    assert view["pressed"] == "0#" and view["unheard"] == "#"


def test_keys_pressed_while_the_action_is_requested_are_lost(sim, client, control, receiver):
    pressed = threading.Event()

    def slow_action(req):
        control.call("POST", f"/handsets/{MOBILE}/keys", {"keys": "#"})  # no Gather listens now
        pressed.set()
        return Response(SECOND_GATHER, mimetype="text/xml")

    call = _two_one_key_gathers(client, control, receiver, slow_action)
    control.call("POST", f"/handsets/{MOBILE}/keys", {"keys": "0"})
    assert receiver.wait("/second")[0].params()["Digits"] == "" and pressed.is_set()
    assert control.wait_call(call.sid)["unheard"] == "#"


def test_a_key_during_the_nested_prompt_stops_it(sim, client, control, receiver):
    control.behave(MOBILE, keys=["1"], barge_in=True)
    response = VoiceResponse()
    gather = Gather(action="/action", num_digits=1)
    gather.say("First sentence")
    gather.pause(length=2)
    gather.say("Never heard")
    response.append(gather)
    receiver.twiml("/voice", str(response))
    receiver.twiml("/action", "<Response><Say>Done</Say></Response>")
    call = _call(client, receiver)
    assert receiver.wait("/action")[0].params()["Digits"] == "1"
    view = control.wait_call(call.sid)
    assert [(e["kind"], e.get("text"), e.get("interrupted")) for e in view["transcript"] if e["kind"] != "gather"] == [
        ("say", "First sentence", True), ("say", "Done", None)]


def test_without_barge_in_the_whole_nested_prompt_plays(sim, client, control, receiver):
    control.behave(MOBILE, keys=["1"])
    response = VoiceResponse()
    gather = Gather(action="/action", num_digits=1)
    gather.say("First sentence")
    gather.say("Second sentence")
    response.append(gather)
    receiver.twiml("/voice", str(response))
    receiver.twiml("/action", "<Response/>")
    call = _call(client, receiver)
    assert [s["text"] for s in control.wait_call(call.sid)["said"]] == ["First sentence", "Second sentence"]


def test_script_spans_documents_relative_action_and_get(sim, client, control, receiver):
    control.behave(MOBILE, keys=["1", "#"])
    receiver.twiml("/ivr/start", '<Response><Gather action="step2" method="GET" numDigits="1">'
                                 "<Say>First</Say></Gather></Response>")
    receiver.twiml("/ivr/step2", lambda req: '<Response><Gather actionOnEmptyResult="true"><Say>Second</Say>'
                   "</Gather></Response>" if req.method == "GET" else "<Response><Hangup/></Response>")
    call = _call(client, receiver, path="/ivr/start")
    step2 = receiver.wait("/ivr/step2", 2)
    first, second = step2
    assert first.method == "GET" and first.signature_valid and first.params()["Digits"] == "1"
    assert second.method == "POST" and second.signature_valid  # default action = current document URL
    assert (second.params()["Digits"], second.params()["FinishedOnKey"]) == ("", "")  # a lone # is no input
    assert control.wait_call(call.sid)["digits"] == ["1", ""]


def test_silent_handset_times_out_and_falls_through(sim, client, control, receiver):
    control.behave(MOBILE, call="silent")
    receiver.twiml("/voice", _twiml({"action": "/action", "timeout": 7}))
    call = _call(client, receiver)
    view = control.wait_call(call.sid)
    assert receiver.get("/action") == []
    assert view["gathers"][0]["ended_by"] == "timeout" and view["gathers"][0]["timeout"] == 7
    assert view["said"][-1]["text"] == "Fell through"
    assert view["duration"] >= 7  # the Gather waited its timeout (simulated time)


def test_interactive_gather_ends_after_its_timeout_with_the_digits_so_far(sim, client, control, receiver):
    receiver.twiml("/voice", _twiml({"action": "/action", "timeout": 1}))
    receiver.twiml("/action", "<Response/>")
    call = _call(client, receiver)
    wait_for(lambda: control.call_of(call.sid)["waiting_for_keys"], what="gather waiting")
    started = time.monotonic()
    control.call("POST", f"/handsets/{MOBILE}/keys", {"keys": "42"})
    hit = receiver.wait("/action")[0]
    assert (hit.params()["Digits"], hit.params()["FinishedOnKey"]) == ("42", "")
    assert time.monotonic() - started >= 0.9  # no finish key, no numDigits: only the timeout ends it


@pytest.mark.parametrize("mode, amd, expected", [
    ("voicemail", "Enable", "machine_start"),
    ("voicemail", "DetectMessageEnd", "machine_end_beep"),
    ("answer", "Enable", "human"),
    ("voicemail", None, None),
])
def test_answering_machine_detection(sim, client, control, receiver, mode, amd, expected):
    control.behave(MOBILE, call=mode, keys=["1"])
    receiver.twiml("/voice", _twiml({"action": "/action", "num_digits": 1}))
    receiver.twiml("/action", "<Response/>")
    kwargs = {"machine_detection": amd} if amd else {}
    call = _call(client, receiver, **kwargs)
    hit = receiver.wait("/voice")[0]
    assert hit.params().get("AnsweredBy") == expected
    assert ("MachineDetectionDuration" in hit.params()) == (amd is not None)
    view = control.wait_call(call.sid)
    assert view["answered_by"] == expected
    if mode == "voicemail":
        assert receiver.get("/action") == []  # the machine presses nothing
        assert [s["text"] for s in view["said"]] == ["Press a key", "Fell through"]
    else:
        assert receiver.wait("/action")[0].params()["Digits"] == "1"


def test_answered_call_progress_callbacks(sim, client, control, receiver):
    control.behave(MOBILE, keys=["1"])
    receiver.twiml("/voice", "<Response><Say>Hello</Say></Response>")
    call = _call(client, receiver, status_callback=receiver.url("/status"), status_callback_event=ALL_EVENTS)
    hits = receiver.wait("/status", 4)
    params = [h.params() for h in hits]
    assert [p["CallStatus"] for p in params] == ["initiated", "ringing", "in-progress", "completed"]
    assert [p["SequenceNumber"] for p in params] == ["0", "1", "2", "3"]
    assert all(h.signature_valid for h in hits)
    assert all(p["CallbackSource"] == "call-progress-events" and p["Timestamp"].endswith("+0000") for p in params)
    assert all(p["CallSid"] == call.sid and p["AccountSid"] == ACCOUNT_SID for p in params)
    final = params[-1]
    assert final["SipResponseCode"] == "200" and int(final["CallDuration"]) >= 1 and final["Duration"] == "1"
    assert "CallDuration" not in params[2]


def test_default_events_only_completed(sim, client, control, receiver):
    control.behave(MOBILE, call="silent")
    call = _call(client, receiver, status_callback=receiver.url("/status"))
    control.wait_call(call.sid)
    hits = receiver.wait("/status", 1)
    assert [(h.params()["CallStatus"], h.params()["SequenceNumber"]) for h in hits] == [("completed", "0")]


@pytest.mark.parametrize("mode, status, sip, events", [
    ("busy", "busy", "486", ["initiated", "ringing", "busy"]),
    ("no-answer", "no-answer", "487", ["initiated", "ringing", "no-answer"]),
    ("failed", "failed", "404", ["initiated", "failed"]),
])
def test_unanswered_outcomes(sim, client, control, receiver, mode, status, sip, events):
    control.behave(MOBILE, call=mode)
    call = _call(client, receiver, status_callback=receiver.url("/status"), status_callback_event=ALL_EVENTS)
    hits = receiver.wait("/status", len(events))
    params = [h.params() for h in hits]
    assert [p["CallStatus"] for p in params] == events
    assert [p["SequenceNumber"] for p in params] == [str(i) for i in range(len(events))]
    assert params[-1]["SipResponseCode"] == sip and params[-1]["CallDuration"] == "0"
    assert receiver.get("/voice") == []
    assert client.calls(call.sid).fetch().status == status


def test_duplicate_completed_callback(sim, client, control, receiver):
    control.behave(MOBILE, call="silent", duplicate_callbacks=True)
    _call(client, receiver, status_callback=receiver.url("/status"))
    hits = receiver.wait("/status", 2)
    assert hits[0].params() == hits[1].params()


def test_interactive_keys_reach_gather_action(sim, client, control, receiver):
    receiver.twiml("/voice", _twiml({"action": "/action", "timeout": 10}))
    receiver.twiml("/action", "<Response><Say>Confirmed</Say></Response>")
    call = _call(client, receiver)  # no script: interactive by default
    wait_for(lambda: control.call_of(call.sid)["waiting_for_keys"], what="gather waiting")
    control.call("POST", f"/handsets/{MOBILE}/keys", {"keys": "4"})
    control.call("POST", f"/handsets/{MOBILE}/keys", {"keys": "2#"})
    hit = receiver.wait("/action")[0]
    assert (hit.params()["Digits"], hit.params()["FinishedOnKey"]) == ("42", "#")
    view = control.wait_call(call.sid)
    assert view["pressed"] == "42#" and view["said"][-1]["text"] == "Confirmed"


def test_keys_without_answered_call_are_409(sim, control):
    body = control.call("POST", f"/handsets/{MOBILE}/keys", {"keys": "1"}, expect=409)
    assert "no answered call" in body["error"]
    control.call("POST", f"/handsets/{MOBILE}/keys", {"keys": "x"}, expect=400)


def test_verbs_redirect_hangup_loop_play_pause(sim, client, control, receiver):
    control.behave(MOBILE, call="silent")
    receiver.twiml("/voice", '<Response><Say loop="2">Twice</Say><Play>https://example.com/a.mp3</Play>'
                             '<Pause length="30"/><Redirect>/next</Redirect><Say>unreachable</Say></Response>')
    receiver.twiml("/next", "<Response><Say>Next</Say><Hangup/><Say>after hangup</Say></Response>")
    call = _call(client, receiver)
    view = control.wait_call(call.sid)
    kinds = [e["kind"] for e in view["transcript"]]
    assert kinds == ["say", "say", "play", "pause", "redirect", "say", "hangup"]
    assert [s["text"] for s in view["said"]] == ["Twice", "Twice", "Next"]
    assert view["duration"] >= 30  # simulated time, not real sleeping


def test_inline_twiml(sim, client, control):
    control.behave(MOBILE, keys=["9"])
    call = client.calls.create(to=MOBILE, from_=OWNED,
                               twiml='<Response><Gather numDigits="1" action="https://example.invalid/x">'
                                     "<Say>Inline</Say></Gather></Response>")
    view = control.wait_call(call.sid)
    assert view["said"][0]["text"] == "Inline" and view["gathers"][0]["digits"] == "9"


@pytest.mark.parametrize("answer, code", [
    (lambda req: Response("boom", status=500), 11200),
    (lambda req: Response("<Response><Say>x</Response>", mimetype="text/xml"), 12100),
    (lambda req: Response("{}", mimetype="application/json"), 12300),
])
def test_application_errors(sim, client, control, receiver, answer, code):
    control.behave(MOBILE, call="silent")
    receiver.on("/voice", answer)
    call = _call(client, receiver)
    view = control.wait_call(call.sid)
    assert view["errors"][0]["code"] == code
    assert view["said"][-1]["text"].startswith("We are sorry, an application error has occurred")
    assert view["status"] == "completed"


def test_fallback_url_is_used(sim, client, control, receiver):
    control.behave(MOBILE, call="silent")
    receiver.on("/voice", lambda req: Response("down", status=503))
    receiver.twiml("/fallback", "<Response><Say>Fallback</Say></Response>")
    call = _call(client, receiver, fallback_url=receiver.url("/fallback"))
    hit = receiver.wait("/fallback")[0]
    assert hit.params()["ErrorCode"] == "11200" and hit.params()["ErrorUrl"] == receiver.url("/voice")
    assert control.wait_call(call.sid)["said"][0]["text"] == "Fallback"


def test_redirect_loop_is_bounded(sim, client, control, receiver):
    control.behave(MOBILE, call="silent")
    receiver.twiml("/voice", "<Response><Redirect>/voice</Redirect></Response>")
    call = _call(client, receiver)
    view = control.wait_call(call.sid, timeout=15)
    assert view["errors"] and "too many" in view["errors"][0]["message"]
    assert len(receiver.get("/voice")) == sim_limit()


def sim_limit() -> int:
    """The default max TwiML requests per call."""
    from simulator import SimulatorConfig
    return SimulatorConfig().max_requests_per_call


def test_handset_hangup(sim, client, control, receiver):
    receiver.twiml("/voice", _twiml({"action": "/action", "timeout": 10}))
    call = _call(client, receiver, status_callback=receiver.url("/status"))
    wait_for(lambda: control.call_of(call.sid)["waiting_for_keys"], what="gather waiting")
    control.call("POST", f"/handsets/{MOBILE}/hangup")
    hit = receiver.wait("/status")[0]
    assert hit.params()["CallStatus"] == "completed"
    assert receiver.get("/action") == []


def test_get_methods_put_params_in_signed_query(sim, client, control, receiver):
    control.behave(MOBILE, keys=["5"])
    receiver.twiml("/voice", '<Response><Gather numDigits="1" action="/action?step=2" method="GET"/></Response>')
    receiver.twiml("/action", "<Response/>")
    client.calls.create(to=MOBILE, from_=OWNED, url=receiver.url("/voice?lang=pl"), method="GET",
                        status_callback=receiver.url("/status?x=1"), status_callback_method="GET")
    voice, action, status = receiver.wait("/voice")[0], receiver.wait("/action")[0], receiver.wait("/status")[0]
    for hit in (voice, action, status):
        assert hit.method == "GET" and hit.signature_valid, hit.url
    assert voice.query["lang"] == "pl" and voice.query["CallStatus"] == "in-progress"
    assert action.query["step"] == "2" and action.query["Digits"] == "5"
    assert status.query["x"] == "1" and status.query["CallStatus"] == "completed"


def test_async_amd_posts_result_separately(sim, client, control, receiver):
    control.behave(MOBILE, call="voicemail")
    receiver.twiml("/voice", "<Response><Say>Leave a message</Say></Response>")
    client.calls.create(to=MOBILE, from_=OWNED, url=receiver.url("/voice"), machine_detection="Enable",
                        async_amd="true", async_amd_status_callback=receiver.url("/amd"))
    assert "AnsweredBy" not in receiver.wait("/voice")[0].params()
    amd = receiver.wait("/amd")[0]
    assert amd.signature_valid and amd.params()["AnsweredBy"] == "machine_start"


def test_say_pause_redirect_defaults_and_hangup_ends_the_call(sim, client, control, receiver):
    control.behave(MOBILE, call="silent")
    receiver.twiml("/voice", "<Response><Say>Plain</Say><Pause/><Redirect>next</Redirect></Response>")
    receiver.twiml("/next", "<Response><Hangup/><Say>never</Say></Response>")
    call = _call(client, receiver, path="/voice")
    view = control.wait_call(call.sid)
    assert view["said"] == [{"text": "Plain", "voice": "man", "language": "en-US"}]
    pause = next(e for e in view["transcript"] if e["kind"] == "pause")
    assert pause["length"] == 1
    redirect = receiver.wait("/next")[0]
    assert redirect.method == "POST" and redirect.signature_valid  # relative URL, default method
    assert [e["kind"] for e in view["transcript"]][-1] == "hangup" and view["status"] == "completed"
