"""validate_request: recorded twilio-client requests validate; wrong ones are caught."""
from __future__ import annotations

import json

import pytest

from simulator import validate_request
from simulator.openapi import spec_path

from .conftest import ACCOUNT_SID, MOBILE, OWNED, SERVICE

MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
CALLS = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
VALID_MESSAGE = [("To", MOBILE), ("From", OWNED), ("Body", "hi")]


def test_spec_is_found_beside_the_repo():
    assert spec_path().name == "twilio_api_v2010.json" and spec_path().exists()


def test_recorded_client_requests_are_valid(sim, client, control, receiver):
    control.behave(MOBILE, call="silent")
    client.messages.create(to=MOBILE, from_=OWNED, body="Kod: 123456 ż", status_callback=receiver.url("/s"),
                           validity_period=300)
    client.messages.create(to=MOBILE, messaging_service_sid=SERVICE, body="hi", smart_encoded=True)
    call = client.calls.create(to=MOBILE, from_=OWNED, url=receiver.url("/v"), method="POST",
                               status_callback=receiver.url("/s"), status_callback_method="POST",
                               status_callback_event=["initiated", "ringing", "answered", "completed"],
                               timeout=30, machine_detection="Enable")
    client.calls(call.sid).update(status="completed")
    client.calls(call.sid).fetch()
    records = control.call("GET", "/requests?validate=1")["requests"]
    assert len(records) == 5
    for record in records:
        assert record["problems"] == [], record
        assert validate_request(record["method"], record["path"], record["form"] or record["query"]) == []
    events = [value for name, value in records[2]["form"] if name == "StatusCallbackEvent"]
    assert events == ["initiated", "ringing", "answered", "completed"]


@pytest.mark.parametrize("method, path, form, needle", [
    ("POST", MESSAGES, VALID_MESSAGE + [("Bogus", "1")], "unknown form parameter 'Bogus'"),
    ("POST", MESSAGES, VALID_MESSAGE + [("to", MOBILE)], "unknown form parameter 'to'"),
    ("POST", MESSAGES, [("From", OWNED), ("Body", "x")], "missing required form parameter 'To'"),
    ("POST", MESSAGES, VALID_MESSAGE + [("ValidityPeriod", "ten")], "not an integer"),
    ("POST", MESSAGES, VALID_MESSAGE + [("ProvideFeedback", "yes")], "not a boolean"),
    ("POST", MESSAGES, VALID_MESSAGE + [("StatusCallback", "/relative")], "not an absolute"),
    ("POST", MESSAGES, VALID_MESSAGE + [("RiskCheck", "maybe")], "is not one of"),
    ("POST", MESSAGES, VALID_MESSAGE + [("Body", "again")], "given 2 times"),
    ("POST", MESSAGES, VALID_MESSAGE + [("MessagingServiceSid", "MG123")], "does not match"),
    ("POST", CALLS, [("To", MOBILE), ("From", OWNED), ("Method", "PUT")], "is not one of"),
    ("POST", CALLS, [("To", MOBILE), ("From", OWNED), ("Timeout", "1.5")], "not an integer"),
    ("DELETE", MESSAGES, [], "DELETE is not defined"),
    ("POST", "/2010-04-01/Accounts/ACnope/Messages.json", VALID_MESSAGE, "AccountSid"),
    ("POST", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Nothing.json", [], "no path template"),
    ("GET", MESSAGES, [("Bogus", "1")], "unknown query parameter 'Bogus'"),
    # Python's $ matches before a final newline; the spec's (ECMA-262) and the templates' must not
    ("POST", MESSAGES, VALID_MESSAGE + [("MessagingServiceSid", "MG" + "0" * 32 + "\n")], "does not match"),
    ("POST", MESSAGES + "\n", VALID_MESSAGE, "no path template"),
])
def test_problems_are_reported(method, path, form, needle):
    problems = validate_request(method, path, form)
    assert any(needle in p for p in problems), problems


def test_prefixed_path_and_query_string_are_tolerated():
    assert validate_request("POST", "/dev" + MESSAGES + "?x=1", VALID_MESSAGE) == []


def test_spec_location_from_environment(tmp_path, monkeypatch):
    spec = {"openapi": "3.0.1", "paths": {"/x/{Id}.json": {"post": {"parameters": [], "requestBody": {
        "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "properties": {"A": {"type": "integer"}}, "required": ["A"]}}}}}}}}
    target = tmp_path / "spec.json"
    target.write_text(json.dumps(spec))
    monkeypatch.setenv("TWILIO_OPENAPI_SPEC", str(target))
    assert spec_path() == target
    assert validate_request("POST", "/x/1.json", [("A", "3")]) == []
    assert validate_request("POST", "/x/1.json", [("B", "3")]) == [
        "unknown form parameter 'B'", "missing required form parameter 'A'"]
