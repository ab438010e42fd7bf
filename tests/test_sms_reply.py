"""The inbound SMS webhook in-process: two-way replies, signatures, duplicates, STOP/START/HELP."""
from __future__ import annotations

import secrets
import threading
import time
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from gateway import create_app, deliveries, i18n, verifications
from gateway.carrier import classify
from gateway.services import Services
from sms import outbound as sms_outbound
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, API_KEY, holds_code, redis_dump
from tests.stack import poll

PATH = "/webhooks/twilio/sms/inbound"
GATEWAY = "+15005550006"  # SMS_FROM of the test settings
USER = "+48600100200"
OTHER = "+48600100299"


def svc_of(app: Any) -> Services:
    return app.extensions["gateway"]  # type: ignore[no-any-return]


def prompted(app: Any, client: Any, code: str = "123456", to: str = USER, **body: Any) -> str:
    """Start a two-way verification and prompt it with a known code, as the sender does."""
    r = client.post("/v1/verifications", json={"to": to, "channel": "sms_reply", **body})
    assert r.status_code == 201, r.get_json()
    svc = svc_of(app)
    v = svc.store.load(r.get_json()["id"])
    assert deliveries.code_for(svc, v, 1, code) == code
    assert deliveries.await_reply(svc, v, 1, svc.settings.sms_from)
    return v.id


def sms_params(body: str, sender: str = USER, to: str = GATEWAY, sid: str | None = None) -> dict[str, str]:
    """The form of Twilio's inbound-SMS webhook."""
    sid = sid or "SM" + secrets.token_hex(16)
    return {
        "ToCountry": "US", "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid, "SmsStatus": "received",
        "Body": body, "To": to, "NumSegments": "1", "MessageSid": sid, "AccountSid": ACCOUNT_SID,
        "From": sender, "FromCountry": "PL", "ApiVersion": "2010-04-01",
    }


def post(app: Any, client: Any, params: dict[str, str], token: str = AUTH_TOKEN, signature: str | None = None) -> Any:
    """POST the webhook signed like Twilio (or with the given signature)."""
    url = svc_of(app).settings.public_base_url + PATH
    if signature is None:
        signature = RequestValidator(token).compute_signature(url, params)
    return client.post(PATH, data=params, headers={"X-Twilio-Signature": signature} if signature else {})


def reply(app: Any, client: Any, body: str, **kwargs: Any) -> list[str]:
    """Send an inbound SMS; return the texts of the TwiML answer's <Message>s."""
    r = post(app, client, sms_params(body, **kwargs))
    assert r.status_code == 200 and r.mimetype == "text/xml", r.data
    root = ET.fromstring(r.data)
    assert root.tag == "Response"
    return [m.text or "" for m in root.findall("Message")]


def read(client: Any, verification_id: str) -> dict[str, Any]:
    return client.get(f"/v1/verifications/{verification_id}").get_json()  # type: ignore[no-any-return]


# -- signatures -----------------------------------------------------------------------

@pytest.mark.parametrize("how", ["missing", "wrong token", "tampered body", "garbage"])
def test_unsigned_or_forged_replies_are_refused_and_change_nothing(app, client, redis_db, how) -> None:
    vid = prompted(app, client)
    before = redis_db.hgetall(f"gw:vf:{vid}")
    params = sms_params("123456")
    if how == "missing":
        r = post(app, client, params, signature="")
    elif how == "wrong token":
        r = post(app, client, params, token="not-the-token")
    elif how == "tampered body":
        signature = RequestValidator(AUTH_TOKEN).compute_signature(svc_of(app).settings.public_base_url + PATH,
                                                                   sms_params("000000", sid=params["MessageSid"]))
        r = post(app, client, params, signature=signature)
    else:
        r = post(app, client, params, signature="bm90IGEgc2lnbmF0dXJl")
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden"
    assert redis_db.hgetall(f"gw:vf:{vid}") == before
    assert not redis_db.keys("gw:inbound:*")
    stop = post(app, client, sms_params("STOP"), signature="")
    assert stop.status_code == 403 and not redis_db.exists(f"gw:optout:{USER}")


def test_without_an_auth_token_every_reply_is_refused(settings, redis_db) -> None:
    app = create_app(settings.replace(twilio_auth_token=None))
    r = post(app, app.test_client(), sms_params("STOP"))
    assert r.status_code == 403 and not redis_db.exists(f"gw:optout:{USER}")


# -- replies ---------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["123456", "  123 456 ", "Code: 123456 thanks", "123-456", "１２３４５６"])
def test_a_right_reply_approves_and_is_confirmed(app, client, redis_db, text) -> None:
    vid = prompted(app, client)
    assert reply(app, client, text) == [i18n.text("en", "sms", "reply_approved")]
    v = read(client, vid)
    assert v["status"] == "approved" and v["reason"] is None
    assert redis_db.xlen("gw:audit") == 1


def test_the_confirmation_is_in_the_verifications_language(app, client) -> None:
    prompted(app, client, locale="pl")
    assert reply(app, client, "123456") == [i18n.text("pl", "sms", "reply_approved")]


def test_without_confirmation_the_answer_is_empty(settings, redis_db) -> None:
    app = create_app(settings.replace(sms_reply_confirmation=False))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    vid = prompted(app, client)
    assert reply(app, client, "123456") == []
    assert read(client, vid)["status"] == "approved"


def test_a_wrong_reply_counts_as_a_failed_attempt(app, client) -> None:
    vid = prompted(app, client)
    assert reply(app, client, "654321") == []
    v = read(client, vid)
    assert v["status"] == "pending" and v["remaining_attempts"] == 4
    assert reply(app, client, "12345") == []  # a code of the wrong length is wrong too
    assert read(client, vid)["remaining_attempts"] == 3
    assert reply(app, client, "123456") == [i18n.text("en", "sms", "reply_approved")]


def test_replies_without_digits_are_not_attempts(app, client) -> None:
    vid = prompted(app, client)
    assert reply(app, client, "who is this?") == []
    v = read(client, vid)
    assert v["status"] == "pending" and v["remaining_attempts"] == 5


def test_wrong_replies_up_to_the_limit_deny_and_then_nothing_approves(app, client) -> None:
    vid = prompted(app, client)
    for _ in range(5):
        assert reply(app, client, "000000") == []
    v = read(client, vid)
    assert v["status"] == "denied" and v["reason"] == "max_attempts"
    assert reply(app, client, "123456") == []
    assert read(client, vid)["status"] == "denied"


def test_a_reply_from_another_number_changes_nothing(app, client, redis_db) -> None:
    vid = prompted(app, client)
    before = redis_db.hgetall(f"gw:vf:{vid}")
    assert reply(app, client, "123456", sender=OTHER) == []
    assert reply(app, client, "000000", sender=OTHER) == []
    assert redis_db.hgetall(f"gw:vf:{vid}") == before


def test_a_reply_to_another_gateway_number_changes_nothing(app, client, redis_db) -> None:
    vid = prompted(app, client)
    before = redis_db.hgetall(f"gw:vf:{vid}")
    assert reply(app, client, "123456", to="+15005550007") == []
    assert redis_db.hgetall(f"gw:vf:{vid}") == before


def test_prompts_sent_through_a_messaging_service_match_replies_to_its_numbers(settings, redis_db) -> None:
    service = "MG" + "ab" * 16
    app = create_app(settings.replace(sms_from=service))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    vid = prompted(app, client)
    assert reply(app, client, "123456") == []  # the number alone: not the service's reply
    assert read(client, vid)["remaining_attempts"] == 5
    r = post(app, client, {**sms_params("123456"), "MessagingServiceSid": service})
    assert len(ET.fromstring(r.data).findall("Message")) == 1
    assert read(client, vid)["status"] == "approved"


def test_a_reply_with_nothing_pending_is_harmless(app, client) -> None:
    assert reply(app, client, "123456") == []
    assert reply(app, client, "000000", sender=OTHER) == []


def test_one_way_sms_codes_are_not_approved_by_replies(app, client) -> None:
    r = client.post("/v1/verifications", json={"to": USER, "channel": "sms"})
    svc = svc_of(app)
    v = svc.store.load(r.get_json()["id"])
    assert deliveries.code_for(svc, v, 1, "123456") == "123456"
    assert not deliveries.await_reply(svc, v, 1, GATEWAY)  # only two-way prompts are indexed
    assert reply(app, client, "123456") == []
    assert read(client, v.id)["status"] == "pending"


def test_the_newest_pending_verification_is_matched(app, client) -> None:
    older = prompted(app, client, code="111111")
    newer = prompted(app, client, code="222222")
    assert reply(app, client, "111111") == []  # the older code, tried against the newest: wrong
    assert read(client, newer)["remaining_attempts"] == 4
    assert read(client, older)["remaining_attempts"] == 5 and read(client, older)["status"] == "pending"
    assert reply(app, client, "222222")
    assert read(client, newer)["status"] == "approved"
    # Once the newest no longer waits, the next newest pending one is matched.
    assert reply(app, client, "111111")
    assert read(client, older)["status"] == "approved"


def test_a_verification_that_moved_on_to_a_call_is_not_matched(app, client) -> None:
    vid = prompted(app, client)
    svc = svc_of(app)
    deliveries.record_failure(svc, vid, 1, 30008, classify(30008))
    v = read(client, vid)
    assert v["channel"] == "call" and v["status"] == "pending"
    assert reply(app, client, "123456") == []
    assert read(client, vid)["status"] == "pending" and read(client, vid)["remaining_attempts"] == 5


def test_a_stale_attempt_is_neither_indexed_nor_texted(app, client) -> None:
    r = client.post("/v1/verifications", json={"to": USER, "channel": "sms_reply"})
    svc = svc_of(app)
    v = svc.store.load(r.get_json()["id"])
    client.post(f"/v1/verifications/{v.id}/cancel")
    # The carrier would be unreachable here (TWILIO_API_BASE_URL points at a closed port): None means no send.
    assert sms_outbound.send_reply_prompt(svc, v, 1, "123456") is None
    assert not svc.store.reply_candidates([GATEWAY], USER)


# -- duplicates --------------------------------------------------------------------------

def test_a_repeated_message_sid_has_one_effect(app, client, redis_db) -> None:
    vid = prompted(app, client)
    wrong = sms_params("000000")
    for _ in range(3):
        assert post(app, client, wrong).status_code == 200
    assert read(client, vid)["remaining_attempts"] == 4
    right = sms_params("123456")
    answers = [ET.fromstring(post(app, client, right).data).findall("Message") for _ in range(3)]
    assert [len(a) for a in answers] == [1, 0, 0]
    assert read(client, vid)["status"] == "approved" and redis_db.xlen("gw:audit") == 1
    assert 0 < redis_db.ttl(f"gw:inbound:{right['MessageSid']}") <= verifications.INBOUND_DEDUPE_TTL


def test_twilios_retry_after_a_handler_died_mid_way_is_handled_and_counts_once(app, client, redis_db) -> None:
    vid = prompted(app, client)
    wrong = sms_params("000000")
    # The first handler checked the code, then its process died before noting the message handled.
    verifications.check(svc_of(app), vid, "000000", wrong["MessageSid"])
    assert post(app, client, wrong).status_code == 200  # Twilio's retry
    assert read(client, vid)["remaining_attempts"] == 4  # one wrong code, not two
    stop = sms_params("STOP")
    verifications.opt_out(svc_of(app), USER)  # a STOP whose handler died before noting it
    assert post(app, client, stop).status_code == 200 and redis_db.exists(f"gw:optout:{USER}")
    assert redis_db.exists(f"gw:inbound:{stop['MessageSid']}")


def test_concurrent_duplicates_and_concurrent_right_replies_approve_once(app, redis_db) -> None:
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    vid = prompted(app, client)
    same = sms_params("123456")
    forms = [same] * 8 + [sms_params("123456") for _ in range(8)]
    confirmations: list[int] = []
    barrier = threading.Barrier(len(forms))

    def send(params: dict[str, str]) -> None:
        own = app.test_client()
        barrier.wait(10)
        r = post(app, own, params)
        confirmations.append(len(ET.fromstring(r.data).findall("Message")))

    threads = [threading.Thread(target=send, args=(f,)) for f in forms]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(confirmations) == [0] * 15 + [1]
    assert read(client, vid)["status"] == "approved" and redis_db.xlen("gw:audit") == 1


def test_a_failure_while_handling_lets_twilios_retry_through(app, client, redis_db) -> None:
    vid = prompted(app, client)
    params = sms_params("123456")
    redis_db.hset(f"gw:vf:{vid}", "status", "corrupt")  # loading the record now fails
    assert post(app, client, params).status_code == 500
    assert not redis_db.exists(f"gw:inbound:{params['MessageSid']}")
    redis_db.hset(f"gw:vf:{vid}", "status", "pending")
    assert len(ET.fromstring(post(app, client, params).data).findall("Message")) == 1
    assert read(client, vid)["status"] == "approved"


# -- the reply timeout -------------------------------------------------------------------

def test_a_late_reply_never_approves(settings, redis_db) -> None:
    app = create_app(settings.replace(sms_reply_timeout=1))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    vid = prompted(app, client)
    expires = svc_of(app).store.load(vid).expires_at
    assert expires - time.time() <= 1.01
    poll(lambda: time.time() > expires, 5, what="the reply timeout to pass")
    assert redis_db.hget(f"gw:vf:{vid}", "status") == b"pending"  # no worker here: nobody ended it yet
    assert reply(app, client, "123456") == []
    v = read(client, vid)
    assert v["status"] == "denied" and v["reason"] == "reply_timeout" and v["remaining_attempts"] == 5


def test_a_prompt_found_expired_ends_the_verification_with_its_audit_line(settings, redis_db, caplog) -> None:
    app = create_app(settings.replace(sms_reply_timeout=1))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    r = client.post("/v1/verifications", json={"to": USER, "channel": "sms_reply"})
    svc = svc_of(app)
    v = svc.store.load(r.get_json()["id"])
    assert deliveries.code_for(svc, v, 1, "123456") == "123456"
    expires = svc.store.load(v.id).expires_at
    poll(lambda: time.time() > expires, 5, what="the reply timeout to pass")
    caplog.set_level("INFO", logger="gateway.audit")
    assert not deliveries.await_reply(svc, v, 1, svc.settings.sms_from)  # the script ends it instead
    assert redis_db.hget(f"gw:vf:{v.id}", "status") == b"denied"
    said = [rec.getMessage() for rec in caplog.records if rec.name == "gateway.audit"]
    assert len(said) == 1 and v.id in said[0] and "reply_timeout" in said[0]


# -- keywords ----------------------------------------------------------------------------

@pytest.mark.parametrize("word", ["STOP", "stop", " Unsubscribe ", "QUIT", "optout"])
def test_stop_blocks_sms_but_not_calls_and_start_lifts_it(app, client, redis_db, word) -> None:
    assert reply(app, client, word) == []
    assert redis_db.exists(f"gw:optout:{USER}")
    for channel in ("sms", "sms_reply"):
        r = client.post("/v1/verifications", json={"to": USER, "channel": channel})
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "destination_blocked"
    r = client.post("/v1/verifications", json={"to": USER, "channel": "call"})
    assert r.status_code == 201
    r = client.post("/v1/verifications", json={"to": USER, "channel": "auto", "fallback": ["sms", "call"]})
    assert r.status_code == 201 and r.get_json()["channels"] == ["call"]
    assert reply(app, client, "Start") == []
    assert not redis_db.exists(f"gw:optout:{USER}")
    assert client.post("/v1/verifications", json={"to": USER, "channel": "sms"}).status_code == 201


def test_stop_from_one_number_leaves_others_alone(app, client, redis_db) -> None:
    reply(app, client, "STOP", sender=OTHER)
    assert client.post("/v1/verifications", json={"to": USER, "channel": "sms"}).status_code == 201


def test_stop_with_more_words_is_a_plain_message(app, client, redis_db) -> None:
    assert reply(app, client, "stop sending me codes") == []
    assert not redis_db.exists(f"gw:optout:{USER}")


@pytest.mark.parametrize("word", ["HELP", "info"])
def test_help_answers_a_short_help_text(app, client, word) -> None:
    org = svc_of(app).settings.organization_name
    assert reply(app, client, word) == [i18n.text("en", "sms", "help", org=org)]


def test_help_is_in_the_language_of_the_pending_verification(app, client) -> None:
    vid = prompted(app, client, locale="pl")
    org = svc_of(app).settings.organization_name
    assert reply(app, client, "HELP") == [i18n.text("pl", "sms", "help", org=org)]
    assert read(client, vid)["remaining_attempts"] == 5


def test_twilio_error_21610_records_the_opt_out_and_falls_back_to_a_call(app, client, redis_db) -> None:
    vid = prompted(app, client)
    deliveries.record_failure(svc_of(app), vid, 1, 21610, classify(21610))
    assert redis_db.exists(f"gw:optout:{USER}")
    v = read(client, vid)
    assert v["channel"] == "call" and v["attempts"][0]["error_code"] == 21610
    r = client.post("/v1/verifications", json={"to": USER, "channel": "sms_reply"})
    assert r.status_code == 403


def test_replies_leave_no_code_in_logs_or_redis(app, client, redis_db, caplog) -> None:
    caplog.set_level("DEBUG")
    vid = prompted(app, client, code="482913")
    reply(app, client, "Code: 775193")
    reply(app, client, "482913")
    assert read(client, vid)["status"] == "approved"
    assert "482913" not in caplog.text and "775193" not in caplog.text
    dump = redis_dump(redis_db)
    assert not holds_code(dump, "482913") and not holds_code(dump, "775193")


@pytest.mark.parametrize("base, signed_over", [
    ("https://gw.example.com", "https://gw.example.com:443"),  # Twilio signed with the default port
    ("https://gw.example.com:443", "https://gw.example.com"),  # or without it
    ("http://gw.example.com:8080", "http://gw.example.com"),
])
def test_a_signature_over_the_url_with_or_without_its_port_is_accepted(settings, redis_db, base, signed_over) -> None:
    """The exact URL is checked first; the port variants twilio's validate() accepts still pass."""
    app = create_app(settings.replace(public_base_url=base))
    params = sms_params("HELP")
    signature = RequestValidator(AUTH_TOKEN).compute_signature(signed_over + PATH, params)
    assert app.test_client().post(PATH, data=params, headers={"X-Twilio-Signature": signature}).status_code == 200
    wrong = RequestValidator(AUTH_TOKEN).compute_signature("https://other.example.com" + PATH, params)
    assert app.test_client().post(PATH, data=params, headers={"X-Twilio-Signature": wrong}).status_code == 403
