"""SMS status callbacks (signed, exact parameters, failures, duplicates, reordering) and inbound SMS."""
from __future__ import annotations

import time

import pytest
from flask import Response
from twilio.base.exceptions import TwilioRestException

from .conftest import ACCOUNT_SID, MOBILE, MOBILE_2, OWNED, OWNED_2, SERVICE, wait_for

BASE_KEYS = {"AccountSid", "ApiVersion", "From", "MessageSid", "MessageStatus", "SmsSid", "SmsStatus", "To"}
INBOUND_KEYS = {"MessageSid", "SmsSid", "SmsMessageSid", "AccountSid", "From", "To", "Body", "NumMedia",
                "NumSegments", "SmsStatus", "ApiVersion", "FromCountry", "FromState", "FromCity", "FromZip",
                "ToCountry", "ToState", "ToCity", "ToZip"}


def _send(client, receiver, to=MOBILE, **kwargs):
    """Send an SMS with a status callback to the receiver."""
    return client.messages.create(to=to, from_=kwargs.pop("from_", OWNED), body=kwargs.pop("body", "Code 482910"),
                                  status_callback=receiver.url("/status"), **kwargs)


def test_status_callbacks_are_signed_and_exact(sim, client, receiver):
    message = _send(client, receiver)
    sent, delivered = receiver.wait("/status", 2)
    for hit in (sent, delivered):
        assert hit.signature_valid, hit.url
        assert hit.headers["User-Agent"] == "TwilioProxy/1.1"
        assert hit.headers["I-Twilio-Idempotency-Token"]
        assert hit.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert set(sent.params()) == BASE_KEYS
    assert sent.params()["MessageStatus"] == sent.params()["SmsStatus"] == "sent"
    assert sent.params()["MessageSid"] == sent.params()["SmsSid"] == message.sid
    assert sent.params()["AccountSid"] == ACCOUNT_SID
    assert set(delivered.params()) == BASE_KEYS | {"RawDlrDoneDate"}
    assert delivered.params()["MessageStatus"] == "delivered"
    assert len(delivered.params()["RawDlrDoneDate"]) == 10
    assert sent.headers["I-Twilio-Idempotency-Token"] != delivered.headers["I-Twilio-Idempotency-Token"]


def test_messaging_service_callbacks(sim, client, receiver):
    client.messages.create(to=MOBILE, messaging_service_sid=SERVICE, body="hi",
                           status_callback=receiver.url("/status"))
    hits = receiver.wait("/status", 3)
    assert [h.params()["MessageStatus"] for h in hits] == ["queued", "sent", "delivered"]
    assert all(h.params()["MessagingServiceSid"] == SERVICE and h.params()["From"] == OWNED for h in hits)


@pytest.mark.parametrize("outcome, code, expected", [
    ("undelivered", 30003, ["sent", "undelivered"]),
    ("failed", 30001, ["failed"]),
    ("undelivered", None, ["sent", "undelivered"]),
])
def test_async_failures_carry_error_code(sim, client, control, receiver, outcome, code, expected):
    control.behave(MOBILE, sms=outcome, sms_error_code=code)
    message = _send(client, receiver)
    hits = receiver.wait("/status", len(expected))
    assert [h.params()["MessageStatus"] for h in hits] == expected
    last = hits[-1].params()
    assert last["ErrorCode"] == str(code or 30003)
    assert ("RawDlrDoneDate" in last) == (outcome == "undelivered")
    assert "ErrorCode" not in hits[0].params() or len(hits) == 1
    assert client.messages(message.sid).fetch().error_code == (code or 30003)
    assert control.handset(MOBILE)["inbox"] == []


def test_duplicates_share_idempotency_token(sim, client, control, receiver):
    control.behave(MOBILE, duplicate_callbacks=True)
    _send(client, receiver)
    hits = receiver.wait("/status", 4)
    assert [h.params()["MessageStatus"] for h in hits] == ["sent", "sent", "delivered", "delivered"]
    assert hits[0].headers["I-Twilio-Idempotency-Token"] == hits[1].headers["I-Twilio-Idempotency-Token"]
    assert all(h.signature_valid for h in hits)


def test_reordered_callbacks(sim, client, control, receiver):
    control.behave(MOBILE, reorder_callbacks=True)
    message = _send(client, receiver)
    hits = receiver.wait("/status", 2)
    assert [h.params()["MessageStatus"] for h in hits] == ["delivered", "sent"]
    assert client.messages(message.sid).fetch().status == "delivered"


def test_no_delivery_receipt_after_sent(sim, client, control, receiver):
    control.behave(MOBILE, sms="no_dlr")
    message = _send(client, receiver)
    receiver.wait("/status", 1)
    wait_for(lambda: control.handset(MOBILE)["inbox"], what="message in inbox")
    assert [h.params()["MessageStatus"] for h in receiver.get("/status")] == ["sent"]
    assert client.messages(message.sid).fetch().status == "sent"


def test_a_lost_message_is_sent_and_then_nothing(sim, client, control, receiver):
    control.behave(MOBILE, sms="lost")
    message = _send(client, receiver)
    receiver.wait("/status", 1)
    wait_for(lambda: client.messages(message.sid).fetch().status == "sent", what="sent")
    control.call("POST", f"/handsets/{MOBILE_2}/sms", {"body": "later traffic", "to": OWNED}, expect=202)
    receiver.wait("/sms/inbound")  # the simulator has moved on; still nothing more for the lost one
    assert [h.params()["MessageStatus"] for h in receiver.get("/status")] == ["sent"]
    assert control.handset(MOBILE)["inbox"] == []


def test_callback_delay(sim, client, control, receiver):
    control.behave(MOBILE, callback_delay_ms=300)
    started = time.monotonic()
    _send(client, receiver)
    receiver.wait("/status", 2)
    assert time.monotonic() - started >= 0.55


def test_message_lands_in_handset_inbox(sim, client, control, receiver):
    message = _send(client, receiver, body="<b>x</b> code 991122")
    inbox = wait_for(lambda: control.handset(MOBILE)["inbox"], what="inbox")
    assert inbox[0]["sid"] == message.sid
    assert inbox[0]["body"] == "<b>x</b> code 991122"
    assert inbox[0]["from"] == OWNED


def test_inbound_sms_is_signed_with_twilio_params(sim, control, receiver):
    sent = control.sms_from(MOBILE, "Hello there", to=OWNED_2)
    hit = receiver.wait("/sms/inbound")[0]
    assert hit.signature_valid
    params = hit.params()
    assert set(params) == INBOUND_KEYS
    assert params["Body"] == "Hello there" and params["From"] == MOBILE and params["To"] == OWNED_2
    assert params["MessageSid"] == params["SmsSid"] == params["SmsMessageSid"] == sent["sid"]
    assert params["SmsStatus"] == "received" and params["NumMedia"] == "0" and params["NumSegments"] == "1"
    assert params["FromCountry"] == "PL" and params["ToCountry"] == "US"


def test_twiml_reply_reaches_the_handset(sim, control, receiver):
    receiver.twiml("/sms/inbound", "<Response><Message>Thanks, got &lt;it&gt;</Message></Response>")
    control.sms_from(MOBILE, "hi")
    inbox = wait_for(lambda: control.handset(MOBILE)["inbox"], what="reply")
    assert inbox[0]["body"] == "Thanks, got <it>"
    assert inbox[0]["from"] == OWNED and inbox[0]["kind"] == "reply"


def test_stop_blocks_until_start(sim, client, control, receiver):
    control.sms_from(MOBILE, "STOP", to=OWNED)
    receiver.wait("/sms/inbound")  # still forwarded, like Twilio
    with pytest.raises(TwilioRestException) as info:
        client.messages.create(to=MOBILE, from_=OWNED, body="x")
    assert (info.value.status, info.value.code) == (400, 21610)
    with pytest.raises(TwilioRestException):
        client.messages.create(to=MOBILE, messaging_service_sid=SERVICE, body="x")
    client.messages.create(to=MOBILE, from_=OWNED_2, body="other sender still works")
    client.messages.create(to=MOBILE_2, from_=OWNED, body="other handset still works")
    handset = control.handset(MOBILE)
    assert handset["opted_out_from"] == [OWNED]
    assert any(m["kind"] == "auto" and "unsubscribed" in m["body"] for m in handset["inbox"])
    control.sms_from(MOBILE, " start ", to=OWNED)
    receiver.wait("/sms/inbound", 2)
    assert client.messages.create(to=MOBILE, from_=OWNED, body="back").status == "queued"


def test_auto_reply_with_code(sim, client, control, receiver):
    control.behave(MOBILE, sms_reply="My code is {code}", sms_reply_delay_ms=50)
    receiver.twiml("/sms/inbound", "<Response/>")
    _send(client, receiver, body="Your verification code: 004815. Do not share it.")
    hit = receiver.wait("/sms/inbound")[0]
    assert hit.params()["Body"] == "My code is 004815"
    assert hit.params()["To"] == OWNED and hit.params()["From"] == MOBILE


def test_inbound_webhook_errors_are_recorded(sim, control, receiver):
    receiver.on("/sms/inbound", lambda req: Response("nope", status=500))
    sent = control.sms_from(MOBILE, "hi")
    wait_for(lambda: control.call("GET", f"/messages/{sent['sid']}")["webhook_status"] == 500, what="500 recorded")
    hooks = control.call("GET", "/webhooks?kind=sms-inbound")["webhooks"]
    assert hooks[0]["status"] == 500 and hooks[0]["error_code"] == 11200
