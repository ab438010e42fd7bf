"""Voice webhooks in-process against real Redis, signed with twilio's RequestValidator."""
from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import SimpleWorker
from rq.registry import ScheduledJobRegistry
from twilio.request_validator import RequestValidator
from werkzeug.test import TestResponse

from config import Settings
from gateway import deliveries, i18n, verifications
from gateway.carrier import Action, CarrierError
from gateway.models import Channel
from gateway.services import Services
from gateway.store import AUDIT_STREAM, key_for
from ivr import outbound
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN

MOBILE = "+48600100200"
from tests.stack import poll

CALL_SID = "CA" + "1" * 32
OTHER_SID = "CA" + "2" * 32
CODE = "402917"


@dataclass
class Voice:
    """A gateway app under test, driven the way Twilio drives it during a call."""

    app: Flask
    client: FlaskClient
    settings: Settings
    redis: Redis

    @property
    def svc(self) -> Services:
        """The app's services."""
        return self.app.extensions["gateway"]  # type: ignore[no-any-return]

    def start(self, **body: Any) -> str:
        """Start a call verification (no worker runs: the delivery waits in the outbox)."""
        body = {"to": MOBILE, "channel": "call", "fallback": [], **body}
        r = self.client.post("/v1/verifications", json=body)
        assert r.status_code == 201, r.get_data(as_text=True)
        return r.get_json()["id"]  # type: ignore[no-any-return]

    def deliver(self, vid: str, sid: str | None = CALL_SID) -> None:
        """What the sender does for a call: keep the code, record the carrier's SID."""
        v = self.svc.store.load(vid)
        assert v is not None and deliveries.code_for(self.svc, v, v.attempt.number, CODE) == CODE
        deliveries.record_sent(self.svc, vid, v.attempt.number, Channel.CALL, sid)

    def post(self, path: str, params: dict[str, str], token: str | None = AUTH_TOKEN) -> TestResponse:
        """POST like Twilio: form-encoded, signed over PUBLIC_BASE_URL + path (+ query)."""
        headers = {}
        if token is not None:
            url = self.settings.public_base_url + path
            headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(url, params)
        return self.client.post(path, data=params, headers=headers)

    def answer(self, vid: str, attempt: int = 1, **params: str) -> TestResponse:
        """The call's Url request on answer."""
        return self.post(f"/webhooks/twilio/voice/{vid}/{attempt}/answer", voice_params(**params))

    def press(self, vid: str, digits: str, turn: int = 1, attempt: int = 1, sid: str = CALL_SID,
              step: str | None = None) -> TestResponse:
        """A Gather action as Twilio posts it for our one-key Gathers (finishOnKey="": never a FinishedOnKey)."""
        params = voice_params(sid, Digits=digits, FinishedOnKey="")
        query = f"round={turn}" + (f"&step={step}" if step else "")
        return self.post(f"/webhooks/twilio/voice/{vid}/{attempt}/gather?{query}", params)

    def report_fraud(self, vid: str, turn: int = 1) -> TestResponse:
        """0, then # in the fraud step the answer to the 0 opened."""
        step = twiml_of(self.press(vid, "0", turn=turn)).find("Gather")
        assert step is not None and step.get("action", "").endswith(f"round={turn}&step=fraud")
        return self.press(vid, "#", turn=turn, step="fraud")

    def status(self, vid: str, status: str, attempt: int = 1, sid: str = CALL_SID, seq: int = 0) -> TestResponse:
        """A call-progress status callback."""
        params = voice_params(sid, CallStatus=status, CallbackSource="call-progress-events", SequenceNumber=str(seq))
        return self.post(f"/webhooks/twilio/voice/{vid}/{attempt}/status", params)

    def read(self, vid: str) -> dict[str, Any]:
        """The verification as the API shows it."""
        return self.client.get(f"/v1/verifications/{vid}").get_json()  # type: ignore[no-any-return]

    def audit(self) -> list[dict[str, str]]:
        """The audit records written so far."""
        return [{k.decode(): v.decode() for k, v in f.items()} for _, f in self.redis.xrange(AUDIT_STREAM)]

    def stored(self, vid: str) -> dict[bytes, bytes]:
        """The raw stored verification, to show that nothing changed."""
        return self.redis.hgetall(key_for(vid))  # type: ignore[return-value]


@pytest.fixture
def voice(app: Flask, client: FlaskClient, settings: Settings, redis_db: Redis) -> Voice:
    """A fresh gateway app on the clean test database."""
    return Voice(app, client, settings, redis_db)


def voice_params(sid: str = CALL_SID, **extra: str) -> dict[str, str]:
    """The parameters Twilio sends on every voice request."""
    return {
        "AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": sid, "CallStatus": "in-progress",
        "Direction": "outbound-api", "From": "+15005550006", "To": MOBILE, "Called": MOBILE, **extra,
    }


def twiml_of(response: TestResponse) -> ET.Element:
    """The <Response> of a TwiML answer."""
    assert response.status_code == 200 and response.mimetype == "text/xml", response.get_data(as_text=True)
    return ET.fromstring(response.data)


def said(root: ET.Element) -> str:
    """Everything a TwiML document says."""
    return " ".join(say.text or "" for say in root.iter("Say"))


def text(key: str, locale: str = "en") -> str:
    """A voice text of a locale."""
    return i18n.text(locale, "voice", key)


# -- placing the call ----------------------------------------------------------------


def test_caller_id_prefers_the_destination_country(settings: Settings) -> None:
    s = settings.replace(caller_id_by_country={"PL": "+48221234567"}, voice_caller_id="+15005550006")
    assert outbound.caller_id(s, "PL") == "+48221234567"
    assert outbound.caller_id(s, "DE") == "+15005550006"
    assert outbound.caller_id(s.replace(voice_caller_id=None), "DE") is None


def test_no_caller_id_is_a_failed_channel_not_a_retry(voice: Voice) -> None:
    vid = voice.start()
    voice.svc.settings = voice.settings.replace(voice_caller_id=None, caller_id_by_country={})
    v = voice.svc.store.load(vid)
    assert v is not None
    with voice.app.app_context(), pytest.raises(CarrierError) as caught:
        outbound.place_call(voice.svc, v, 1, CODE)
    assert caught.value.action is Action.FALLBACK and "VOICE_CALLER_ID" in caught.value.message


# -- signatures ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["answer", "gather?round=1", "status"])
@pytest.mark.parametrize("token", [None, "forged-token"])
def test_unsigned_or_forged_voice_webhooks_are_refused_and_change_nothing(
    voice: Voice, kind: str, token: str | None
) -> None:
    vid = voice.start()
    voice.deliver(vid)
    before = voice.stored(vid)
    params = voice_params(Digits="", FinishedOnKey="#", CallStatus="completed")
    r = voice.post(f"/webhooks/twilio/voice/{vid}/1/{kind}", params, token=token)
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden"
    assert voice.stored(vid) == before


def test_a_signature_for_another_verification_is_refused(voice: Voice) -> None:
    victim, other = voice.start(), voice.start(to="+48600100201")
    voice.deliver(victim)
    params = voice_params(Digits="", FinishedOnKey="#")
    signature = RequestValidator(AUTH_TOKEN).compute_signature(
        f"{voice.settings.public_base_url}/webhooks/twilio/voice/{other}/1/gather?round=1", params
    )
    r = voice.client.post(f"/webhooks/twilio/voice/{victim}/1/gather?round=1", data=params,
                          headers={"X-Twilio-Signature": signature})
    assert r.status_code == 403 and voice.read(victim)["status"] == "pending"


# -- confirm mode --------------------------------------------------------------------


def test_answer_plays_the_menu_and_marks_the_attempt_answered(voice: Voice) -> None:
    vid = voice.start()
    voice.deliver(vid)
    root = twiml_of(voice.answer(vid))
    gather = root.find("Gather")
    assert gather is not None
    assert gather.get("action") == f"{voice.settings.public_base_url}/webhooks/twilio/voice/{vid}/1/gather?round=1"
    assert voice.settings.organization_name in said(root)
    assert voice.read(vid)["attempts"][0]["status"] == "answered"


def test_pound_approves_once_and_a_repeat_changes_nothing(voice: Voice) -> None:
    vid = voice.start()
    voice.deliver(vid)
    voice.answer(vid)
    root = twiml_of(voice.press(vid, "#"))
    assert said(root) == text("approved") and root.find("Hangup") is not None
    assert voice.read(vid)["status"] == "approved"
    again = twiml_of(voice.press(vid, "#"))  # Twilio retried the same post
    assert said(again) == text("approved")
    assert [record["status"] for record in voice.audit()] == ["approved"]


def test_zero_pound_reports_fraud_and_blocks_the_number(voice: Voice) -> None:
    vid = voice.start(user_id="alice")
    voice.deliver(vid)
    voice.answer(vid)
    root = twiml_of(voice.report_fraud(vid))
    assert said(root) == text("fraud") and root.find("Hangup") is not None
    body = voice.read(vid)
    assert (body["status"], body["reason"]) == ("denied", "fraud_reported")
    (record,) = voice.audit()
    assert record["reason"] == "fraud_reported" and record["result"] == "denied" and record["user_id"] == "alice"
    assert 0 < voice.redis.ttl(f"gw:block:{MOBILE}") <= voice.settings.fraud_block_seconds
    r = voice.client.post("/v1/verifications", json={"to": MOBILE, "channel": "sms"})
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "destination_blocked"


def test_a_fraud_report_denies_and_blocks_in_one_step_and_a_repeat_changes_nothing(voice: Voice) -> None:
    vid = voice.start()
    voice.deliver(vid)
    voice.answer(vid)
    voice.report_fraud(vid)
    assert voice.redis.exists(f"gw:block:{MOBILE}")  # written by the script that denied it
    voice.redis.delete(f"gw:block:{MOBILE}")  # an operator lifts the block
    assert said(twiml_of(voice.press(vid, "#", step="fraud"))) == text("fraud")  # Twilio repeats the webhook
    assert not voice.redis.exists(f"gw:block:{MOBILE}") and len(voice.audit()) == 1


def test_zero_alone_changes_nothing_and_asks_for_the_pound_key(voice: Voice) -> None:
    vid = voice.start()
    voice.deliver(vid)
    voice.answer(vid)
    before = voice.stored(vid)
    root = twiml_of(voice.press(vid, "0"))
    assert [child.tag for child in root] == ["Gather"]
    gather = root[0]
    assert (gather.get("numDigits"), gather.get("finishOnKey"), gather.get("actionOnEmptyResult")) == ("1", "", "true")
    assert gather.get("action", "").endswith("?round=1&step=fraud")
    assert [say.text for say in gather.iter("Say")] == [text("fraud_confirm")]  # nested: an early # cuts it
    assert voice.stored(vid) == before


def test_pound_in_the_fraud_step_reports_fraud_and_never_approves(voice: Voice) -> None:
    vid = voice.start()
    voice.deliver(vid)
    voice.answer(vid)
    voice.press(vid, "0")
    twiml_of(voice.press(vid, "#", step="fraud"))
    body = voice.read(vid)
    assert (body["status"], body["reason"]) == ("denied", "fraud_reported")
    assert said(twiml_of(voice.press(vid, "#"))) == text("fraud")  # a late # of the menu changes nothing
    assert voice.read(vid)["status"] == "denied" and len(voice.audit()) == 1


@pytest.mark.parametrize("digits, retry", [("", False), ("5", True), ("0", True)])
def test_no_pound_in_the_fraud_step_repeats_the_menu_then_denies_no_input(voice: Voice, digits: str,
                                                                         retry: bool) -> None:
    vid = voice.start()
    voice.deliver(vid)
    voice.answer(vid)
    voice.press(vid, "0")
    root = twiml_of(voice.press(vid, digits, step="fraud"))
    assert [child.tag for child in root] == (["Say", "Gather"] if retry else ["Gather"])
    assert root.find("Gather").get("action", "").endswith("?round=2")  # type: ignore[union-attr]
    assert voice.read(vid)["status"] == "pending"
    last = voice.settings.call_menu_tries
    voice.press(vid, "0", turn=last)
    root = twiml_of(voice.press(vid, digits, turn=last, step="fraud"))
    assert said(root) == text("no_input") and root.find("Hangup") is not None
    assert voice.read(vid)["reason"] == "no_input"


def test_a_finish_key_posted_as_empty_digits_is_silence_not_approval(voice: Voice) -> None:
    # The old menu read Digits="" + FinishedOnKey="#" as approval; Twilio documents that as no input.
    vid = voice.start()
    voice.deliver(vid)
    voice.answer(vid)
    params = voice_params(Digits="", FinishedOnKey="#")
    root = twiml_of(voice.post(f"/webhooks/twilio/voice/{vid}/1/gather?round=1", params))
    assert [child.tag for child in root] == ["Gather"] and voice.read(vid)["status"] == "pending"


@pytest.mark.parametrize("query, digits", [
    ("round=1", "0#"), ("round=1", "##"), ("round=1", "12"), ("round=1", "x"), ("round=1", "#0"),
    ("round=1&step=fraud", "0#"), ("round=1&step=bogus", "#"),
])
def test_bad_input_changes_nothing_and_hangs_up(voice: Voice, query: str, digits: str) -> None:
    vid = voice.start()
    voice.deliver(vid)
    voice.answer(vid)
    before = voice.stored(vid)
    params = voice_params(Digits=digits, FinishedOnKey="")
    root = twiml_of(voice.post(f"/webhooks/twilio/voice/{vid}/1/gather?{query}", params))
    assert [child.tag for child in root] == ["Say", "Hangup"] and said(root) == text("goodbye")
    assert voice.stored(vid) == before


def test_silence_repeats_the_menu_then_denies_no_input(voice: Voice) -> None:
    vid = voice.start()
    voice.deliver(vid)
    voice.answer(vid)
    tries = voice.settings.call_menu_tries
    for turn in range(1, tries):
        root = twiml_of(voice.press(vid, "", turn=turn))
        assert [child.tag for child in root] == ["Gather"]  # silence is not scolded as a wrong key
        assert root[0].get("action", "").endswith(f"?round={turn + 1}")
        assert voice.read(vid)["status"] == "pending"
    root = twiml_of(voice.press(vid, "", turn=tries))
    assert said(root) == text("no_input") and root.find("Gather") is None and root.find("Hangup") is not None
    body = voice.read(vid)
    assert (body["status"], body["reason"]) == ("denied", "no_input")


def test_a_wrong_key_repeats_the_menu_and_pound_then_approves(voice: Voice) -> None:
    vid = voice.start()
    voice.deliver(vid)
    voice.answer(vid)
    root = twiml_of(voice.press(vid, "5"))
    assert [child.tag for child in root] == ["Say", "Gather"] and root[0].text == text("invalid")
    assert root[1].get("action", "").endswith("round=2")
    twiml_of(voice.press(vid, "#", turn=2))
    assert voice.read(vid)["status"] == "approved"


def test_a_retried_gather_post_does_not_count_twice(voice: Voice) -> None:
    vid = voice.start()
    voice.deliver(vid)
    voice.answer(vid)
    for _ in range(voice.settings.call_menu_tries + 2):
        assert twiml_of(voice.press(vid, "", turn=1)).find("Gather") is not None
    assert voice.read(vid)["status"] == "pending"


def test_a_gather_from_another_call_or_attempt_changes_nothing(voice: Voice) -> None:
    vid = voice.start()
    voice.deliver(vid)
    voice.answer(vid)
    before = voice.stored(vid)
    for r in (
        voice.press(vid, "#", sid=OTHER_SID),
        voice.press(vid, "#", attempt=2),
        voice.press(vid, "0", attempt=0),
    ):
        root = twiml_of(r)
        assert said(root) == text("ended") and root.find("Hangup") is not None
    assert voice.stored(vid) == before


def test_a_stale_attempt_cannot_approve_the_new_one(voice: Voice) -> None:
    vid = voice.start(channel="sms", fallback=["call"])
    verifications.delivery_failed(voice.svc, vid, 1, 30003, "undelivered")  # moves on to a call: attempt 2
    voice.deliver(vid)
    voice.answer(vid, attempt=2)
    twiml_of(voice.press(vid, "#", attempt=1))
    assert voice.read(vid)["status"] == "pending"
    twiml_of(voice.press(vid, "#", attempt=2))
    assert voice.read(vid)["status"] == "approved"


def test_answer_binds_the_call_sid_when_the_job_has_not_recorded_it_yet(voice: Voice) -> None:
    vid = voice.start()
    voice.deliver(vid, sid=None)
    twiml_of(voice.answer(vid))
    hijack = twiml_of(voice.answer(vid, CallSid=OTHER_SID))
    assert hijack.find("Gather") is None and said(hijack) == text("ended")
    twiml_of(voice.press(vid, "#", sid=OTHER_SID))
    assert voice.read(vid)["status"] == "pending"
    twiml_of(voice.press(vid, "#"))
    assert voice.read(vid)["status"] == "approved"


def test_after_the_verification_ended_the_caller_hears_goodbye(voice: Voice) -> None:
    vid = voice.start(locale="pl")
    voice.deliver(vid)
    voice.answer(vid)
    assert voice.client.post(f"/v1/verifications/{vid}/cancel").get_json()["status"] == "canceled"
    for root in (twiml_of(voice.answer(vid)), twiml_of(voice.press(vid, "#"))):
        assert said(root) == text("ended", "pl") and root.find("Hangup") is not None
    assert voice.read(vid)["status"] == "canceled"


def test_an_expired_call_attempt_answers_goodbye_and_stays_expired(voice: Voice) -> None:
    vid = voice.start()
    voice.deliver(vid)
    voice.answer(vid)
    voice.redis.hset(key_for(vid), "expires", "1")  # the call's time is up
    assert said(twiml_of(voice.press(vid, "#"))) == text("ended")
    body = voice.read(vid)
    assert (body["status"], body["reason"]) == ("expired", "expired")


def test_unknown_verification_hears_goodbye(voice: Voice) -> None:
    unknown = "vf_" + "0" * 32
    assert said(twiml_of(voice.answer(unknown))) == text("ended")
    assert said(twiml_of(voice.press(unknown, "#"))) == text("ended")
    assert voice.status(unknown, "completed").status_code == 204


# -- code mode -----------------------------------------------------------------------


def test_code_mode_reads_the_code_and_repeats_it_on_1(voice: Voice) -> None:
    vid = voice.start(ivr_mode="code", locale="pl")
    voice.deliver(vid)
    root = twiml_of(voice.answer(vid, AnsweredBy="human"))
    assert said(root).count(", ".join(CODE)) == 2
    assert all(say.get("language") == "pl-PL" for say in root.iter("Say"))
    again = twiml_of(voice.press(vid, "1"))
    assert said(again).count(", ".join(CODE)) == 2
    last = twiml_of(voice.press(vid, "1", turn=voice.settings.call_menu_tries))
    assert ", ".join(CODE) not in said(last) and last.find("Hangup") is not None
    assert voice.read(vid)["status"] == "pending"
    r = voice.client.post(f"/v1/verifications/{vid}/check", json={"code": CODE})
    assert r.get_json()["valid"] is True


def test_code_mode_offers_a_repeat_only_while_one_is_left(voice: Voice) -> None:
    vid = voice.start(ivr_mode="code")
    voice.deliver(vid)
    tries = voice.settings.call_menu_tries
    root = twiml_of(voice.answer(vid, AnsweredBy="human"))
    assert root[0].tag == "Gather" and root[0].get("action", "").endswith("round=1")
    last = twiml_of(voice.press(vid, "1", turn=tries - 1))  # the last reading there is
    assert last.find("Gather") is None and text("code_repeat") not in said(last)
    assert said(last).count(", ".join(CODE)) == 2


@pytest.mark.parametrize("digits", ["#", "11", "", "0"])
def test_code_mode_anything_but_1_says_goodbye_and_changes_nothing(voice: Voice, digits: str) -> None:
    vid = voice.start(ivr_mode="code")
    voice.deliver(vid)
    voice.answer(vid, AnsweredBy="human")
    before = voice.stored(vid)
    root = twiml_of(voice.press(vid, digits))
    assert [child.tag for child in root] == ["Say", "Hangup"] and said(root) == text("goodbye")
    assert voice.stored(vid) == before


@pytest.mark.parametrize("answered_by", ["machine_start", "machine_end_beep", "fax"])
def test_code_mode_never_reads_the_code_to_a_machine(voice: Voice, answered_by: str) -> None:
    vid = voice.start(ivr_mode="code")
    voice.deliver(vid)
    root = twiml_of(voice.answer(vid, AnsweredBy=answered_by))
    assert [child.tag for child in root] == ["Hangup"]
    body = voice.read(vid)
    assert (body["status"], body["reason"]) == ("failed", "delivery_failed")
    assert body["attempts"][0]["status"] == "failed"


def test_voicemail_moves_the_chain_on_once(voice: Voice) -> None:
    vid = voice.start(ivr_mode="code", fallback=["sms"])
    voice.deliver(vid)
    twiml_of(voice.answer(vid, AnsweredBy="machine_start"))
    twiml_of(voice.answer(vid, AnsweredBy="machine_start"))  # a retry: still one step
    body = voice.read(vid)
    assert body["status"] == "pending" and [a["channel"] for a in body["attempts"]] == ["call", "sms"]
    assert body["attempts"][0]["status"] == "failed" and voice.redis.hget(key_for(vid), "a1:why") == b"voicemail"


def test_code_mode_stays_pending_after_the_call_completes(voice: Voice) -> None:
    vid = voice.start(ivr_mode="code")
    voice.deliver(vid)
    voice.answer(vid, AnsweredBy="human")
    assert voice.status(vid, "completed", seq=3).status_code == 204
    body = voice.read(vid)
    assert body["status"] == "pending" and body["attempts"][0]["status"] == "completed"


# -- status callbacks ----------------------------------------------------------------


def test_status_callbacks_only_move_forward(voice: Voice) -> None:
    vid = voice.start(ivr_mode="code")
    voice.deliver(vid)
    steps = (("initiated", "queued"), ("in-progress", "answered"), ("ringing", "answered"),
             ("completed", "completed"), ("in-progress", "completed"), ("completed", "completed"))
    for status, expected in steps:
        r = voice.status(vid, status)
        assert r.status_code == 204 and not r.data
        assert voice.read(vid)["attempts"][0]["status"] == expected, status


@pytest.mark.parametrize("status", ["busy", "no-answer", "failed", "canceled"])
def test_a_failed_call_is_a_failed_delivery(voice: Voice, status: str) -> None:
    vid = voice.start()
    voice.deliver(vid)
    voice.status(vid, "ringing", seq=1)
    voice.status(vid, status, seq=2)
    voice.status(vid, status, seq=2)  # duplicate
    voice.status(vid, "ringing", seq=1)  # late
    body = voice.read(vid)
    assert (body["status"], body["reason"]) == ("failed", "delivery_failed")
    assert body["attempts"][0]["status"] == status and len(voice.audit()) == 1


def test_hanging_up_mid_menu_denies_no_input_after_a_grace(voice: Voice) -> None:
    vid = voice.start()
    voice.deliver(vid)
    voice.answer(vid)
    voice.status(vid, "completed", seq=3)
    assert voice.read(vid)["status"] == "pending"  # a Gather posted before the hang-up may still arrive
    scheduled = ScheduledJobRegistry(queue=voice.svc.queue)
    (job_id,) = scheduled.get_job_ids()
    due = scheduled.get_scheduled_time(job_id).timestamp() - time.time()
    assert 0 < due <= voice.settings.call_hangup_grace
    voice.redis.delete(voice.svc.queue.key)  # only rq's scheduled hang-up check matters here
    poll(lambda: scheduled.get_scheduled_time(job_id).timestamp() <= time.time(), what="the grace to pass")
    with voice.app.app_context():  # a real worker, with rq's scheduler, in this process
        SimpleWorker([voice.svc.queue], connection=voice.svc.redis).work(burst=True, with_scheduler=True)
    body = voice.read(vid)
    assert (body["status"], body["reason"]) == ("denied", "no_input")


def test_a_pound_arriving_after_the_hang_up_still_approves(voice: Voice) -> None:
    vid = voice.start()
    voice.deliver(vid)
    voice.answer(vid)
    voice.status(vid, "completed", seq=3)
    voice.press(vid, "#")
    assert voice.read(vid)["status"] == "approved" and len(voice.audit()) == 1


def test_completed_after_approval_changes_nothing(voice: Voice) -> None:
    vid = voice.start()
    voice.deliver(vid)
    voice.answer(vid)
    voice.press(vid, "#")
    voice.status(vid, "completed", seq=3)
    assert voice.read(vid)["status"] == "approved" and len(voice.audit()) == 1


def test_a_status_callback_of_another_call_changes_nothing(voice: Voice) -> None:
    vid = voice.start()
    voice.deliver(vid)
    voice.answer(vid)
    before = voice.stored(vid)
    voice.status(vid, "completed", sid=OTHER_SID)
    voice.status(vid, "busy", sid=OTHER_SID)
    voice.status(vid, "completed", attempt=2)
    assert voice.stored(vid) == before


def test_a_non_ascii_error_code_in_signed_callbacks_is_ignored_not_a_500(voice: Voice) -> None:
    # str.isdigit takes "²", which int() refuses: an ErrorCode like that was a 500 on both callbacks.
    vid = voice.start()
    voice.deliver(vid)
    params = voice_params(CallStatus="failed", CallbackSource="call-progress-events", SequenceNumber="0",
                          ErrorCode="\u00b2")
    assert voice.post(f"/webhooks/twilio/voice/{vid}/1/status", params).status_code < 300
    sms = voice.client.post("/v1/verifications", json={"to": MOBILE, "channel": "sms", "fallback": []}).get_json()["id"]
    v = voice.svc.store.load(sms)
    assert v is not None and deliveries.code_for(voice.svc, v, 1, CODE) == CODE
    deliveries.record_sent(voice.svc, sms, 1, Channel.SMS, "SM" + "3" * 32)
    params = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "MessageSid": "SM" + "3" * 32,
              "MessageStatus": "undelivered", "ErrorCode": "\u00b2", "To": MOBILE}
    assert voice.post(f"/webhooks/twilio/sms/status/{sms}/1", params).status_code < 300
    assert voice.read(sms)["attempts"][0]["status"] == "undelivered"
