"""Pure pieces: numbers, codes, chains, error classification."""
from __future__ import annotations

import base64

import pytest
import requests
import urllib3

from gateway import codes, phone
from gateway.carrier import Action, classify, transport_action
from gateway.errors import DestinationBlocked, InvalidPhoneNumber
from gateway.models import Channel
from gateway.fallback import Reach, next_channel, plan_chain


def test_phone_parsing_and_types() -> None:
    mobile = phone.parse("+48 600 100 200")
    assert (mobile.e164, mobile.country, mobile.type) == ("+48600100200", "PL", phone.NumberType.MOBILE)
    fixed = phone.parse("22 123 45 67", "PL")
    assert fixed.e164 == "+48221234567" and fixed.type is phone.NumberType.FIXED_LINE
    assert phone.parse("+12025550100").type is phone.NumberType.FIXED_LINE_OR_MOBILE
    for bad in ("", "abc", "+1", "+999123456789", "600100200"):
        with pytest.raises(InvalidPhoneNumber):
            phone.parse(bad)


def test_a_number_is_valid_exactly_when_its_type_is_known() -> None:
    """phone.parse asks phonenumbers for the type once and takes UNKNOWN as invalid: the same
    verdict as is_valid_number, for every region's example numbers and near misses of them."""
    import phonenumbers
    from phonenumbers import PhoneNumberType

    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE, PhoneNumberType.VOIP,
                     PhoneNumberType.TOLL_FREE, PhoneNumberType.PREMIUM_RATE, PhoneNumberType.PERSONAL_NUMBER):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            for change in (0, 1, 7, 10**9):
                number = phonenumbers.PhoneNumber(country_code=example.country_code,
                                                  national_number=example.national_number + change)
                raw = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                try:
                    parsed = phone.parse(raw)
                except InvalidPhoneNumber:
                    parsed = None
                assert (parsed is not None) == phonenumbers.is_valid_number(phonenumbers.parse(raw)), raw
                checked += 1
    assert checked > 2000


def test_blocked_types_and_countries() -> None:
    with pytest.raises(DestinationBlocked):
        phone.check_allowed(phone.parse("+48701234567"), frozenset())  # premium rate
    with pytest.raises(DestinationBlocked):
        phone.check_allowed(phone.parse("+48600100200"), frozenset({"US"}))
    phone.check_allowed(phone.parse("+48600100200"), frozenset({"PL"}))


def test_mask_hides_the_middle() -> None:
    assert phone.mask("+48600100200") == "+48*******00"


def test_codes_are_random_digits_and_digests_are_keyed() -> None:
    generated = {codes.generate(6) for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in generated) and len(generated) > 190
    key = codes.derive_key("s" * 40, "code-hmac")
    stored = codes.digest(key, "vf_1", "123456")
    assert "123456" not in stored and codes.digest(key, "vf_1", "123456") == stored
    assert codes.digest(key, "vf_2", "123456") != stored  # bound to its verification
    assert codes.digest(codes.derive_key("t" * 40, "code-hmac"), "vf_1", "123456") != stored
    # A check tries both stored forms, made from one HMAC.
    assert codes.check_digests(key, "vf_1", "123456") == (codes.code_digest(key, "vf_1", "123456"), stored)
    cipher = codes.derive_key("s" * 40, "code-cipher")
    other = codes.derive_key("t" * 40, "code-cipher")
    token = codes.encrypt(cipher, "123456")
    assert "123456" not in token and codes.decrypt([cipher], token) == "123456"
    assert codes.decrypt([other], token) is None
    assert codes.decrypt([other, cipher], token) == "123456"  # a previous key still decrypts


def fernet(key: bytes, plaintext: str) -> str:
    """A value as the gateway encrypted it before the compact format (Fernet)."""
    from cryptography.fernet import Fernet

    return Fernet(base64.urlsafe_b64encode(key)).encrypt(plaintext.encode()).decode()


def test_encrypted_codes_are_compact_and_values_from_before_the_upgrade_still_decrypt() -> None:
    cipher, other = codes.derive_key("s" * 40, "code-cipher"), codes.derive_key("t" * 40, "code-cipher")
    token = codes.encrypt(cipher, "123456")
    assert len(token) <= 48 and codes.encrypt(cipher, "123456") != token  # a fresh nonce each time
    assert len(codes.encrypt(cipher, "1234567890")) <= 64  # the longest code fits a compact Redis hash value
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert codes.decrypt([cipher], tampered) is None and codes.decrypt([cipher], "1.!!") is None
    old = fernet(cipher, "654321")
    assert codes.decrypt([cipher], old) == "654321" and codes.decrypt([other, cipher], old) == "654321"
    assert codes.decrypt([other], old) is None


@pytest.mark.parametrize(
    "requested, number, opted_out, chain",
    [
        ("auto", "+48600100200", False, [Channel.SMS, Channel.CALL]),
        ("auto", "+48221234567", False, [Channel.CALL]),
        ("auto", "+48600100200", True, [Channel.CALL]),
        ("sms", "+48221234567", False, [Channel.CALL]),
        ("sms", "+48600100200", True, []),
        ("call", "+48600100200", False, [Channel.CALL]),
    ],
)
def test_plan_chain(requested: str, number: str, opted_out: bool, chain: list[Channel]) -> None:
    parsed = phone.parse(number)
    reach = Reach(parsed.type.value, opted_out, False)
    assert plan_chain(requested, (Channel.CALL,), parsed, "sms", reach) == chain


def test_auto_for_fixed_line_or_mobile_follows_the_setting() -> None:
    us = phone.parse("+12025550100")
    reach = Reach(us.type.value, False, False)
    assert plan_chain("auto", (), us, "call", reach) == [Channel.CALL]
    assert plan_chain("auto", (), us, "sms", reach) == [Channel.SMS]


def test_next_channel_skips_what_cannot_reach() -> None:
    chain = [Channel.SMS, Channel.SMS_REPLY, Channel.TOTP, Channel.CALL]
    assert next_channel(chain, 0, Reach("mobile", True, False)) == (3, Channel.CALL)
    assert next_channel(chain, 0, Reach("mobile", False, True)) == (1, Channel.SMS_REPLY)
    assert next_channel(chain, 3, Reach("mobile", False, True)) is None
    assert next_channel(chain, 0, Reach("fixed_line", False, False), forced=Channel.SMS) is None
    assert next_channel(chain, 1, Reach("mobile", False, False), forced=Channel.CALL) == (3, Channel.CALL)


@pytest.mark.parametrize(
    "code, status, action",
    [(30003, None, Action.FALLBACK), (21614, 400, Action.FALLBACK), (20429, 429, Action.RETRY),
     (None, 503, Action.RETRY), (21211, 400, Action.STOP), (30005, None, Action.STOP), (39999, None, Action.FALLBACK)],
)
def test_error_classification(code: int | None, status: int | None, action: Action) -> None:
    assert classify(code, status) is action


@pytest.mark.parametrize(
    "exc, ambiguous",
    [(requests.exceptions.ConnectTimeout(), False), (requests.exceptions.ReadTimeout(), True),
     (requests.exceptions.ConnectionError(), True), (requests.exceptions.ChunkedEncodingError(), True),
     # urllib3's, from the pooled client (gateway/carrier_http.py): refused, no answer in time, cut off
     (urllib3.exceptions.NewConnectionError(None, "refused"), False),  # type: ignore[arg-type]
     (urllib3.exceptions.ConnectTimeoutError(), False), (urllib3.exceptions.ReadTimeoutError(None, "/", "late"), True),
     (urllib3.exceptions.ProtocolError("Connection aborted."), True)],
)
def test_transport_failures_are_retried_and_a_late_answer_is_ambiguous(exc: Exception, ambiguous: bool) -> None:
    assert transport_action(exc) == (Action.RETRY, ambiguous)
