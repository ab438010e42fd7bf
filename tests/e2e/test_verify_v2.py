"""/v2 driven by the official twilio SDK (sync), only verify.base_url changed: the tester checklist
of twilio-verify-compat.md §7 and more, against the Procfile's processes and the simulator."""
from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import datetime

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from tests.e2e.v2_support import (
    ACCOUNT, API_KEY, API_SECRET, OTHER_ACCOUNT, OTHER_TOKEN, client, new_number, v2_stack,
)
from tests.stack import Stack, poll

VA = re.compile(r"^VA[0-9a-f]{32}$")
VE = re.compile(r"^VE[0-9a-f]{32}$")
VL = re.compile(r"^VL[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    running = v2_stack(11)
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture(scope="module")
def sdk(stack: Stack) -> Client:
    return client(stack)


@pytest.fixture(scope="module")
def va(sdk: Client) -> str:
    return str(sdk.verify.v2.services.create(friendly_name="Acme").sid)


def refused(call: object, *args: object, **kwargs: object) -> TwilioRestException:
    """The TwilioRestException a call raises (the SDK's own mapping of the error body)."""
    with pytest.raises(TwilioRestException) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    return info.value


def status_of_last(sdk: Client) -> int:
    """The HTTP status of the SDK's last response."""
    return int(sdk.http_client._test_only_last_response.status_code)  # type: ignore[attr-defined]


def test_service_create_fetch_update_list_delete(stack: Stack, sdk: Client) -> None:
    created = sdk.verify.v2.services.create(friendly_name="Lifecycle", code_length=8)
    assert status_of_last(sdk) == 201
    assert VA.match(created.sid) and isinstance(created.date_created, datetime)
    assert created.account_sid == ACCOUNT and created.code_length == 8
    fetched = sdk.verify.v2.services(created.sid).fetch()
    assert fetched.sid == created.sid and fetched.friendly_name == "Lifecycle"
    assert fetched.url == f"{stack.url}/v2/Services/{created.sid}"
    updated = sdk.verify.v2.services(created.sid).update(code_length=5, do_not_share_warning_enabled=True)
    assert updated.code_length == 5 and updated.do_not_share_warning_enabled is True
    assert updated.friendly_name == "Lifecycle"  # fields not sent stay as they were
    assert sdk.verify.v2.services(created.sid).delete() is True
    assert (refused(sdk.verify.v2.services(created.sid).fetch).status, 20404) == (404, 20404)


def test_services_list_pages_through_absolute_urls_on_the_gateway(stack: Stack) -> None:
    own = client(stack, API_KEY, API_SECRET, ACCOUNT)  # an API key of the account sees its Services
    made = {own.verify.v2.services.create(friendly_name=f"Paged {i}").sid for i in range(3)}
    page = own.verify.v2.services.page(page_size=2)
    assert page._payload["meta"]["next_page_url"].startswith(f"{stack.url}/v2/Services?")
    listed = {s.sid for s in own.verify.v2.services.list(page_size=2)}  # the SDK follows next_page_url
    assert made <= listed
    assert len(listed) == len({s.sid for s in own.verify.v2.services.stream(page_size=1000)})


def test_another_accounts_resources_are_not_found(stack: Stack, sdk: Client, va: str) -> None:
    other = client(stack, OTHER_ACCOUNT, OTHER_TOKEN)
    assert va not in {s.sid for s in other.verify.v2.services.list()}
    error = refused(other.verify.v2.services(va).fetch)
    assert (error.status, error.code) == (404, 20404)
    to = new_number()
    v = sdk.verify.v2.services(va).verifications.create(to=to, channel="sms")
    error = refused(other.verify.v2.services(va).verifications(v.sid).fetch)
    assert (error.status, error.code) == (404, 20404)
    own_service = other.verify.v2.services.create(friendly_name="Other").sid
    error = refused(other.verify.v2.services(own_service).verifications(v.sid).fetch)
    assert (error.status, error.code) == (404, 20404)  # a VE of another Service


@pytest.mark.parametrize("username, password", [(ACCOUNT, "wrong-token"), (API_KEY, "wrong"), (None, None)])
def test_bad_or_missing_credentials_get_20003(stack: Stack, va: str, username: str | None,
                                              password: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    anonymous = client(stack, username, password, ACCOUNT if username == API_KEY else None)  # type: ignore[arg-type]
    error = refused(anonymous.verify.v2.services(va).fetch)
    assert (error.status, error.code) == (401, 20003)
    error = refused(anonymous.verify.v2.services(va).verifications.create, to=new_number(), channel="sms")
    assert (error.status, error.code) == (401, 20003)


def test_repeat_create_resends_the_same_code_then_60203(stack: Stack, sdk: Client, va: str) -> None:
    to = new_number()
    first = sdk.verify.v2.services(va).verifications.create(to=to, channel="sms")
    assert status_of_last(sdk) == 201
    assert VE.match(first.sid) and first.status == "pending" and first.valid is False
    assert first.channel == "sms" and first.to == to and isinstance(first.date_created, datetime)
    assert [VL.match(a["attempt_sid"]) is not None for a in first.send_code_attempts] == [True]
    code = stack.sms_code(to)
    sends = [first]
    for n in range(2, 6):
        again = sdk.verify.v2.services(va).verifications.create(to=to, channel="sms")
        assert again.sid == first.sid and len(again.send_code_attempts) == n
        assert stack.sms_code(to, n) == code  # Twilio: the same code during its validity
        sends.append(again)
    error = refused(sdk.verify.v2.services(va).verifications.create, to=to, channel="sms")
    assert (error.status, error.code) == (429, 60203)
    assert error.msg.startswith("Unable to create record: ")
    assert len(sdk.verify.v2.services(va).verifications(first.sid).fetch().send_code_attempts) == 5
    approved = sdk.verify.v2.services(va).verification_checks.create(to=to, code=code)
    assert (approved.status, approved.valid) == ("approved", True)


def test_wrong_then_right_code_then_404_and_visible_in_v1(stack: Stack, sdk: Client, va: str) -> None:
    to = new_number()
    v = sdk.verify.v2.services(va).verifications.create(to=to, channel="sms")
    code = stack.sms_code(to)
    wrong = "000000" if code != "000000" else "111111"
    checks = sdk.verify.v2.services(va).verification_checks
    miss = checks.create(to=to, code=wrong)
    assert (miss.status, miss.valid, miss.sid) == ("pending", False, v.sid)
    hit = checks.create(to=to, code=code)
    assert (hit.status, hit.valid, hit.sid) == ("approved", True, v.sid)
    assert isinstance(hit.date_updated, datetime)
    error = refused(checks.create, to=to, code=code)
    assert (error.status, error.code) == (404, 20404)
    assert (refused(sdk.verify.v2.services(va).verifications(v.sid).fetch).code) == 20404
    seen = stack.read("vf_" + v.sid[2:])  # the same verification on /v1
    assert seen["status"] == "approved" and seen["to"] == to and seen["channel"] == "sms"
    record = {k.decode(): x.decode() for k, x in stack.redis.xrange("gw:audit")[-1][1].items()}
    assert record["verification_id"] == "vf_" + v.sid[2:] and record["result"] == "approved"


def test_five_wrong_codes_then_60202(stack: Stack, sdk: Client, va: str) -> None:
    to = new_number()
    sdk.verify.v2.services(va).verifications.create(to=to, channel="sms")
    code = stack.sms_code(to)
    wrong = "000000" if code != "000000" else "111111"
    checks = sdk.verify.v2.services(va).verification_checks
    answers = [checks.create(to=to, code=wrong) for _ in range(5)]
    assert [a.valid for a in answers] == [False] * 5
    assert [a.status for a in answers[:4]] == ["pending"] * 4
    error = refused(checks.create, to=to, code=code)
    assert (error.status, error.code) == (429, 60202)


def test_cancel_then_404_and_a_new_create_is_a_new_verification(stack: Stack, sdk: Client, va: str) -> None:
    to = new_number()
    v = sdk.verify.v2.services(va).verifications.create(to=to, channel="sms")
    code = stack.sms_code(to)
    canceled = sdk.verify.v2.services(va).verifications(v.sid).update(status="canceled")
    assert canceled.status == "canceled" and canceled.sid == v.sid
    error = refused(sdk.verify.v2.services(va).verification_checks.create, to=to, code=code)
    assert (error.status, error.code) == (404, 20404)
    fresh = sdk.verify.v2.services(va).verifications.create(to=to, channel="sms")
    assert fresh.sid != v.sid and len(fresh.send_code_attempts) == 1
    assert stack.read("vf_" + v.sid[2:])["status"] == "canceled"


def test_check_by_verification_sid_is_like_by_to(stack: Stack, sdk: Client, va: str) -> None:
    to = new_number()
    v = sdk.verify.v2.services(va).verifications.create(to=to, channel="sms")
    code = stack.sms_code(to)
    checks = sdk.verify.v2.services(va).verification_checks
    assert checks.create(verification_sid=v.sid, code="0000000").status == "pending"
    hit = checks.create(verification_sid=v.sid, code=code)
    assert (hit.status, hit.valid, hit.to) == ("approved", True, to)
    assert refused(checks.create, verification_sid=v.sid, code=code).code == 20404


def test_fetch_by_sid_and_by_to_and_approve_by_update(stack: Stack, sdk: Client, va: str) -> None:
    to = new_number()
    v = sdk.verify.v2.services(va).verifications.create(to=to, channel="sms")
    by_sid = sdk.verify.v2.services(va).verifications(v.sid).fetch()
    by_to = sdk.verify.v2.services(va).verifications(to).fetch()
    assert by_sid.sid == by_to.sid == v.sid and by_to.status == "pending"
    assert by_sid.url == f"{stack.url}/v2/Services/{va}/Verifications/{v.sid}"
    approved = sdk.verify.v2.services(va).verifications(to).update(status="approved")
    assert (approved.status, approved.valid) == ("approved", True)
    assert refused(sdk.verify.v2.services(va).verifications(to).fetch).code == 20404


@pytest.mark.parametrize("fields, parameter", [
    ({"to": "48600300999", "channel": "sms"}, "To"),
    ({"to": "+48 600", "channel": "sms"}, "To"),
    ({"to": "+999123", "channel": "sms"}, "To"),
    ({"to": "+48600300998", "channel": "fax"}, "Channel"),
    ({"to": "+48600300997", "channel": "sms", "custom_friendly_name": "x" * 31}, "CustomFriendlyName"),
    ({"to": "+48600300996", "channel": "sms", "locale": "not a locale"}, "Locale"),
    ({"to": "+48600300995", "channel": "sms", "custom_code": "123456"}, "CustomCode"),
])
def test_bad_create_is_60200_naming_the_parameter_and_creates_nothing(
        stack: Stack, sdk: Client, va: str, fields: dict[str, str], parameter: str) -> None:
    error = refused(sdk.verify.v2.services(va).verifications.create, **fields)
    assert (error.status, error.code) == (400, 60200)
    assert parameter in error.msg
    if fields["to"].startswith("+486"):
        assert refused(sdk.verify.v2.services(va).verifications(fields["to"]).fetch).code == 20404
        sent = [r for r in stack.sim("GET", "requests")["requests"] if dict(r["form"]).get("To") == fields["to"]]
        assert sent == []


def test_disabled_channels_are_60223(sdk: Client, va: str) -> None:
    for channel in ("whatsapp", "email", "sna"):
        error = refused(sdk.verify.v2.services(va).verifications.create, to=new_number(), channel=channel)
        assert (error.status, error.code) == (400, 60223) and channel in error.msg


def test_bad_check_and_service_input(sdk: Client, va: str) -> None:
    checks = sdk.verify.v2.services(va).verification_checks
    for code in ("123", "12345678901", "12 34"):
        error = refused(checks.create, to="+48600300990", code=code)
        assert (error.status, error.code) == (400, 60200) and "Code" in error.msg
    error = refused(checks.create, code="123456")
    assert (error.status, error.code) == (400, 60200)
    before = {s.sid for s in sdk.verify.v2.services.list()}
    error = refused(sdk.verify.v2.services.create, friendly_name="x" * 31)
    assert (error.status, error.code) == (400, 60200) and "FriendlyName" in error.msg
    error = refused(sdk.verify.v2.services.create, friendly_name="Fine", code_length=11)
    assert (error.status, error.code) == (400, 60200) and "CodeLength" in error.msg
    assert {s.sid for s in sdk.verify.v2.services.list()} == before  # nothing half-created
    error = refused(sdk.verify.v2.services(va).update, code_length=3)
    assert "CodeLength" in error.msg and sdk.verify.v2.services(va).fetch().code_length == 6


def test_unknown_service_or_verification_is_20404(sdk: Client, va: str) -> None:
    unknown_va = "VA" + "0" * 32
    error = refused(sdk.verify.v2.services(unknown_va).verifications.create, to=new_number(), channel="sms")
    assert (error.status, error.code) == (404, 20404)
    error = refused(sdk.verify.v2.services(va).verifications("VE" + "0" * 32).fetch)
    assert (error.status, error.code) == (404, 20404)
    error = refused(sdk.verify.v2.services(va).verification_checks.create, to=new_number(), code="123456")
    assert (error.status, error.code) == (404, 20404)
    assert refused(sdk.verify.v2.services("not-a-sid").fetch).code == 20404


def test_service_settings_shape_the_code_and_its_text(stack: Stack, sdk: Client) -> None:
    va = sdk.verify.v2.services.create(friendly_name="Bank", code_length=8, custom_code_enabled=True,
                                       do_not_share_warning_enabled=True).sid
    to = new_number()
    sdk.verify.v2.services(va).verifications.create(to=to, channel="sms", custom_friendly_name="Shop")
    code = stack.sms_code(to)
    body = stack.inbox(to)[0]["body"]
    assert len(code) == 8 and body.startswith("Shop:") and "Never share" in body
    assert "10 min" in body  # Twilio's default lifetime, as the Service keeps it
    other = new_number()
    sdk.verify.v2.services(va).verifications.create(to=other, channel="sms", custom_code="4711", locale="pl")
    stack.sms_code(other)
    text = stack.inbox(other)[0]["body"]
    assert "4711" in text and text.startswith("Bank: Twoj kod")
    assert sdk.verify.v2.services(va).verification_checks.create(to=other, code="4711").valid is True
    plain = sdk.verify.v2.services.create(friendly_name="Plain").sid
    third = new_number()
    sdk.verify.v2.services(plain).verifications.create(to=third, channel="sms")
    assert len(stack.sms_code(third)) == 6 and "Never share" not in stack.inbox(third)[0]["body"]


def test_skip_sms_to_landlines_is_60205(sdk: Client) -> None:
    va = sdk.verify.v2.services.create(friendly_name="Landlines", skip_sms_to_landlines=True).sid
    error = refused(sdk.verify.v2.services(va).verifications.create, to="+48221234567", channel="sms")
    assert (error.status, error.code) == (403, 60205)
    call = sdk.verify.v2.services(va).verifications.create(to="+48221234567", channel="call")
    assert call.channel == "call" and call.status == "pending"


def test_extension_fields_switch_on_the_fallback_to_a_call(stack: Stack, sdk: Client) -> None:
    # Extension fields go through the SDK's own generic request, as an application would send them.
    answer = sdk.request("POST", f"{stack.url}/v2/Services", data={
        "FriendlyName": "Fallback", "FallbackChannels": "call", "DeliveryDeadline": "600", "CodeLifetime": "300",
    })
    assert answer.status_code == 201, answer.text
    service = sdk.verify.v2.services(json.loads(answer.text)["sid"]).fetch()
    assert service.friendly_name == "Fallback"
    to = new_number()
    stack.sim("PUT", f"handsets/{to}/behaviour", {"sms": "undelivered", "sms_error_code": 30003})
    v = sdk.verify.v2.services(service.sid).verifications.create(to=to, channel="sms")

    def moved_to_call() -> object:
        seen = sdk.verify.v2.services(service.sid).verifications(v.sid).fetch()
        return seen if seen.channel == "call" else None

    seen = poll(moved_to_call, 30, what="the fallback to a call")
    assert [a["channel"] for a in seen.send_code_attempts] == ["sms", "call"]
    assert stack.read("vf_" + v.sid[2:])["attempts"][0]["status"] == "undelivered"


def test_the_async_client_runs_the_same_flow(stack: Stack, va: str) -> None:
    from twilio.http.async_http_client import AsyncTwilioHttpClient

    async def flow() -> None:
        http = AsyncTwilioHttpClient()
        sdk = client(stack, http_client=http)
        try:
            to = new_number()
            service = await sdk.verify.v2.services(va).fetch_async()
            assert service.sid == va and isinstance(service.date_created, datetime)
            v = await sdk.verify.v2.services(va).verifications.create_async(to=to, channel="sms")
            assert VE.match(v.sid) and v.status == "pending"
            code = stack.sms_code(to)
            again = await sdk.verify.v2.services(va).verifications.create_async(to=to, channel="sms")
            assert again.sid == v.sid and len(again.send_code_attempts) == 2
            assert stack.sms_code(to, 2) == code
            checks = sdk.verify.v2.services(va).verification_checks
            miss = await checks.create_async(verification_sid=v.sid, code="0000000")
            assert (miss.status, miss.valid) == ("pending", False)
            hit = await checks.create_async(to=to, code=code)
            assert (hit.status, hit.valid) == ("approved", True)
            with pytest.raises(TwilioRestException) as info:
                await sdk.verify.v2.services(va).verifications(v.sid).fetch_async()
            assert (info.value.status, info.value.code) == (404, 20404)
            with pytest.raises(TwilioRestException) as info:
                await client(stack, ACCOUNT, "wrong", http_client=http).verify.v2.services(va).fetch_async()
            assert (info.value.status, info.value.code) == (401, 20003)
        finally:
            await http.close()

    asyncio.run(flow())


def test_attempts_api_lists_fetches_and_sums_up_the_deliveries(stack: Stack, sdk: Client) -> None:
    va = sdk.verify.v2.services.create(friendly_name="Attempts").sid
    first, second = new_number(), new_number()
    v = sdk.verify.v2.services(va).verifications.create(to=first, channel="sms")
    code = stack.sms_code(first)
    sdk.verify.v2.services(va).verifications.create(to=first, channel="sms")
    sdk.verify.v2.services(va).verifications.create(to=second, channel="sms")
    stack.sms_code(second)
    assert sdk.verify.v2.services(va).verification_checks.create(to=first, code=code).valid is True
    attempts = sdk.verify.v2.verification_attempts.list(verify_service_sid=va)
    assert len(attempts) == 3 and all(VL.match(a.sid) for a in attempts)
    mine = [a for a in attempts if a.verification_sid == v.sid]
    assert sorted(a.conversion_status for a in mine) == ["converted", "unconverted"]
    assert {a.channel_data["to"] for a in attempts} == {first, second}
    assert isinstance(attempts[0].date_created, datetime)
    one = sdk.verify.v2.verification_attempts(mine[0].sid).fetch()
    assert (one.sid, one.verification_sid, one.service_sid) == (mine[0].sid, v.sid, va)
    assert v.send_code_attempts[0]["attempt_sid"] in {a.sid for a in mine}
    converted = sdk.verify.v2.verification_attempts.list(verify_service_sid=va, status="converted")
    assert [a.verification_sid for a in converted] == [v.sid]
    by_to = sdk.verify.v2.verification_attempts.list(channel_data_to=second)
    assert [a.channel_data["to"] for a in by_to] == [second]
    summary = sdk.verify.v2.verification_attempts_summary().fetch(verify_service_sid=va)
    assert (summary.total_attempts, summary.total_converted, summary.total_unconverted) == (3, 1, 2)
    assert float(summary.conversion_rate_percentage) == pytest.approx(33.33)
    other = client(stack, OTHER_ACCOUNT, OTHER_TOKEN)
    assert other.verify.v2.verification_attempts.list(verify_service_sid=va) == []
    assert refused(other.verify.v2.verification_attempts(mine[0].sid).fetch).code == 20404


def test_a_call_reads_the_code_in_the_services_voice_and_the_check_approves(stack: Stack, sdk: Client) -> None:
    va = sdk.verify.v2.services.create(friendly_name="Voice", tts_name="Polly.Matthew", code_length=5).sid
    to = new_number()
    stack.sim("PUT", f"handsets/{to}/behaviour", {"call": "answer", "keys": []})
    v = sdk.verify.v2.services(va).verifications.create(to=to, channel="call")
    assert v.channel == "call"

    def finished() -> object:
        calls = stack.sim("GET", f"handsets/{to}")["calls"]
        return calls[-1] if calls and not calls[-1]["active"] else None

    call = poll(finished, 30, what=f"the call to {to}")
    spoken = [re.search(r"\d(?:, \d)+", s["text"]) for s in call["said"]]
    code = next(m.group(0).replace(", ", "") for m in spoken if m)
    assert len(code) == 5 and {s["voice"] for s in call["said"]} == {"Polly.Matthew"}
    assert "Voice" in call["said"][0]["text"]  # the Service's name is the one the call says
    hit = sdk.verify.v2.services(va).verification_checks.create(to=to, code=code)
    assert (hit.status, hit.valid, hit.channel) == ("approved", True, "call")


def test_device_ip_feeds_the_gateways_per_client_limit(sdk: Client, va: str) -> None:
    verifications = sdk.verify.v2.services(va).verifications
    for _ in range(4):  # RATE_LIMIT_PER_IP=4 in this stack
        verifications.create(to=new_number(), channel="sms", device_ip="198.51.100.7")
    error = refused(verifications.create, to=new_number(), channel="sms", device_ip="198.51.100.7")
    assert (error.status, error.code) == (429, 60203)
    assert verifications.create(to=new_number(), channel="sms", device_ip="198.51.100.8").status == "pending"
    error = refused(verifications.create, to=new_number(), channel="sms", device_ip="not-an-ip")
    assert (error.status, error.code) == (400, 60200) and "DeviceIp" in error.msg
