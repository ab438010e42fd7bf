"""Two-way SMS without I/O: reading a code out of a reply, keywords, the prompt's text."""
from __future__ import annotations

import pytest

from gateway import i18n
from sms.inbound import Keyword, extract_code, keyword
from sms.outbound import reply_window

# GSM 03.38 basic alphabet and extension table: a text of only these fits 160 per segment.
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")


def septets(text: str) -> int | None:
    """GSM-7 length of a text, or None when it needs UCS-2."""
    if not all(ch in GSM7 or ch in GSM7_EXTENDED for ch in text):
        return None
    return sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)


@pytest.mark.parametrize(
    "body, code",
    [
        ("123456", "123456"),
        ("  123 456 ", "123456"),
        ("Code: 123456 thanks", "123456"),
        ("code:123456", "123456"),
        ("123-456", "123456"),
        ("12 34 56", "123456"),
        ("\n123456\n", "123456"),
        ("１２３４５６", "123456"),  # full-width digits from some phone keyboards
        ("it is 123456, sent 10:30", "123456"),
        ("at 10:30 the code 123456", "123456"),
        ("123456 7 days", "123456"),
        ("111111 222222", "111111"),  # one reply, one guess: the first code only
        ("12345", "12345"),  # digits of the wrong length still count, as a wrong code
        ("1234567", "1234567"),
    ],
)
def test_codes_are_found_in_replies(body: str, code: str) -> None:
    assert extract_code(body, 6) == code


@pytest.mark.parametrize("body", ["", "   ", "ok thanks", "who is this?", "STOP please"])
def test_replies_without_digits_carry_no_code(body: str) -> None:
    assert extract_code(body, 6) is None


def test_code_length_follows_the_setting() -> None:
    assert extract_code("1234 567890", 4) == "1234"
    assert extract_code("reply 1234567890 ok", 10) == "1234567890"


@pytest.mark.parametrize(
    "body, expected",
    [
        ("STOP", Keyword.OPT_OUT), ("stop", Keyword.OPT_OUT), ("  Stop \n", Keyword.OPT_OUT),
        ("STOPALL", Keyword.OPT_OUT), ("unsubscribe", Keyword.OPT_OUT), ("Cancel", Keyword.OPT_OUT),
        ("END", Keyword.OPT_OUT), ("quit", Keyword.OPT_OUT), ("REVOKE", Keyword.OPT_OUT),
        ("optout", Keyword.OPT_OUT),
        ("START", Keyword.OPT_IN), ("yes", Keyword.OPT_IN), ("Unstop", Keyword.OPT_IN),
        ("HELP", Keyword.HELP), ("info", Keyword.HELP),
        ("STOP it", None), ("please stop", None), ("123456", None), ("STOPP", None), ("", None),
    ],
)
def test_keywords_are_single_words_in_any_case(body: str, expected: Keyword | None) -> None:
    assert keyword(body) is expected


@pytest.mark.parametrize("seconds, shown", [(60, "1 min"), (300, "5 min"), (3, "3 s"), (90, "90 s")])
def test_reply_window_is_stated_plainly(seconds: int, shown: str) -> None:
    assert reply_window(seconds) == shown


@pytest.mark.parametrize("locale", ["en", "pl"])
@pytest.mark.parametrize("org", ["Sign-in", "O" * 60])
@pytest.mark.parametrize("seconds", [3, 60, 86400])
def test_the_prompt_fits_one_gsm7_segment(locale: str, org: str, seconds: int) -> None:
    body = i18n.text(locale, "sms", "reply_prompt", org=org, code="1234567890", wait=reply_window(seconds))
    length = septets(body)
    assert length is not None, f"{locale} prompt needs UCS-2: {body!r}"
    assert length <= 160, f"{locale} prompt is {length} septets: {body!r}"
    assert "1234567890" in body and reply_window(seconds) in body


@pytest.mark.parametrize("locale", ["en", "pl"])
@pytest.mark.parametrize("key", ["code", "code_plain", "reply_approved", "help", "authenticator_added"])
def test_other_sms_texts_fit_one_gsm7_segment(locale: str, key: str) -> None:
    body = i18n.text(locale, "sms", key, org="O" * 60, code="1234567890", minutes=1440)
    length = septets(body)
    assert length is not None and length <= 160, body


def test_polish_prompt_is_polish() -> None:
    body = i18n.text("pl", "sms", "reply_prompt", org="Bank", code="123456", wait="1 min")
    assert body.startswith("Bank: odpisz 123456 w ciagu 1 min")
