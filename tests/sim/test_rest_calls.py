"""Create/fetch/update Call through the real twilio client: shape, validations, ending a call."""
from __future__ import annotations

import re

import pytest
import requests
from twilio.base.exceptions import TwilioRestException

from .conftest import ACCOUNT_SID, AUTH_TOKEN, MOBILE, OWNED, wait_for

HANGUP = "<Response><Hangup/></Response>"


def test_create_call_returns_twilio_shaped_resource(sim, client, control, receiver):
    control.behave(MOBILE, call="silent")
    call = client.calls.create(to=MOBILE, from_=OWNED, twiml="<Response><Say>Hi</Say></Response>")
    assert re.fullmatch(r"CA[0-9a-f]{32}", call.sid)
    assert call.status == "queued"
    assert call.direction == "outbound-api"
    assert call.account_sid == ACCOUNT_SID
    assert call.api_version == "2010-04-01"
    assert call.to_formatted == "600 100 200"
    assert call.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{call.sid}.json"
    done = control.wait_call(call.sid)
    assert done["status"] == "completed"
    fetched = client.calls(call.sid).fetch()
    assert fetched.status == "completed"
    assert fetched.duration is not None and int(fetched.duration) >= 1
    assert fetched.start_time is not None and fetched.end_time is not None


@pytest.mark.parametrize("kwargs, code", [
    (dict(to="", from_=OWNED, url="https://example.com/v"), 21201),
    (dict(to="+4860010020", from_=OWNED, url="https://example.com/v"), 21211),
    (dict(to=MOBILE, from_="", url="https://example.com/v"), 21213),
    (dict(to=MOBILE, from_="+15005550099", url="https://example.com/v"), 21210),
    (dict(to=MOBILE, from_=OWNED), 21205),
    (dict(to=MOBILE, from_=OWNED, url="ftp://example.com/v"), 21205),
    (dict(to=MOBILE, from_=OWNED, url="https://example.com/v", status_callback="nope"), 21609),
    (dict(to=MOBILE, from_=OWNED, url="https://example.com/v", timeout=0), 20001),
    (dict(to=MOBILE, from_=OWNED, url="https://example.com/v", timeout=601), 20001),
    (dict(to=MOBILE, from_=OWNED, url="https://example.com/v", status_callback_event=["bogus"]), 20001),
    (dict(to=MOBILE, from_=OWNED, url="https://example.com/v", machine_detection="Maybe"), 20001),
    (dict(to=MOBILE, from_=OWNED, url="https://example.com/v", method="PUT"), 20001),
])
def test_call_validation_errors(sim, client, kwargs, code):
    with pytest.raises(TwilioRestException) as info:
        client.calls.create(**kwargs)
    assert info.value.status == 400
    assert info.value.code == code


def test_url_wins_over_twiml(sim, client, control, receiver):
    receiver.twiml("/voice", HANGUP)
    control.behave(MOBILE, call="silent")
    call = client.calls.create(to=MOBILE, from_=OWNED, url=receiver.url("/voice"),
                               twiml="<Response><Say>ignored</Say></Response>")
    control.wait_call(call.sid)
    assert len(receiver.get("/voice")) == 1
    assert control.call_of(call.sid)["said"] == []


def test_cancel_ringing_call(sim, client, control, receiver):
    control.behave(MOBILE, call="silent", ring_ms=3000)
    call = client.calls.create(to=MOBILE, from_=OWNED, url=receiver.url("/voice"),
                               status_callback=receiver.url("/status"))
    wait_for(lambda: control.call_of(call.sid)["status"] == "ringing", what="ringing")
    updated = client.calls(call.sid).update(status="canceled")
    assert updated.status == "canceled"
    hit = receiver.wait("/status")[0]
    assert hit.params()["CallStatus"] == "canceled"
    assert hit.params()["SipResponseCode"] == "487"
    assert receiver.get("/voice") == []


def test_complete_in_progress_call(sim, client, control, receiver):
    control.behave(MOBILE, call="interactive")
    receiver.twiml("/voice", '<Response><Gather timeout="10"><Say>Press something</Say></Gather></Response>')
    call = client.calls.create(to=MOBILE, from_=OWNED, url=receiver.url("/voice"))
    wait_for(lambda: control.call_of(call.sid)["waiting_for_keys"], what="gather waiting")
    updated = client.calls(call.sid).update(status="completed")
    assert updated.status == "completed"
    # canceling a finished call changes nothing
    assert client.calls(call.sid).update(status="canceled").status == "completed"


def test_redirect_live_call_with_update(sim, client, control, receiver):
    control.behave(MOBILE, call="interactive")
    receiver.twiml("/voice", '<Response><Gather timeout="10"><Say>Wait</Say></Gather></Response>')
    receiver.twiml("/other", "<Response><Say>Redirected</Say></Response>")
    call = client.calls.create(to=MOBILE, from_=OWNED, url=receiver.url("/voice"))
    wait_for(lambda: control.call_of(call.sid)["waiting_for_keys"], what="gather waiting")
    client.calls(call.sid).update(url=receiver.url("/other"))
    done = control.wait_call(call.sid)
    assert [s["text"] for s in done["said"]] == ["Wait", "Redirected"]


def test_list_calls_and_messages(sim, client, control):
    control.behave(MOBILE, call="busy")
    call = client.calls.create(to=MOBILE, from_=OWNED, twiml=HANGUP)
    control.wait_call(call.sid)
    client.messages.create(to=MOBILE, from_=OWNED, body="one")
    client.messages.create(to=MOBILE, from_=OWNED, body="two")
    assert [c.sid for c in client.calls.list(to=MOBILE, status="busy")] == [call.sid]
    assert [m.body for m in client.messages.list(to=MOBILE, limit=5)] == ["two", "one"]
    assert len(list(client.messages.stream(page_size=1))) == 2


def test_unknown_call_and_unknown_path(sim, client):
    with pytest.raises(TwilioRestException) as info:
        client.calls("CA" + "0" * 32).fetch()
    assert (info.value.status, info.value.code) == (404, 20404)
    response = requests.get(f"{sim.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Queues.json",
                            auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    assert response.status_code == 404 and response.json()["code"] == 20404
