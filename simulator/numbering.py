"""Phone-number helpers: E.164 validation, number types, SMS segment counting."""
from __future__ import annotations

import hashlib
import re

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

_TYPE_NAMES = {
    value: name.lower()
    for name, value in vars(PhoneNumberType).items()
    if not name.startswith("_") and isinstance(value, int)
}

E164_RE = re.compile(r"\A\+[1-9][0-9]{1,14}\Z")  # \Z: $ also matches before a final newline

# GSM 03.38 basic set and extension table (extension chars cost two septets).
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT = set("^{}\\[~]|€\f")


def parse_e164(value: str) -> phonenumbers.PhoneNumber | None:
    """Parse a strict E.164 string into a valid phone number, or None."""
    if not isinstance(value, str) or not E164_RE.match(value):
        return None
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return number


def is_valid_e164(value: str) -> bool:
    """True when value is an E.164 number that libphonenumber considers valid."""
    return parse_e164(value) is not None


def number_type(value: str) -> str:
    """The libphonenumber type name in lower case (mobile, fixed_line, ...) or 'unknown'."""
    number = parse_e164(value)
    if number is None:
        return "unknown"
    return _TYPE_NAMES.get(phonenumbers.number_type(number), "unknown")


def country(value: str) -> str:
    """ISO alpha-2 region of a number, or '' when unknown."""
    number = parse_e164(value)
    if number is None:
        return ""
    return phonenumbers.region_code_for_number(number) or ""


def national_format(value: str) -> str:
    """National formatting like Twilio's to_formatted/from_formatted (falls back to the input)."""
    number = parse_e164(value)
    if number is None:
        return value
    return phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)


def is_gsm7(text: str) -> bool:
    """True when every character fits the GSM-7 alphabet (basic or extension table)."""
    return all(ch in _GSM_BASIC or ch in _GSM_EXT for ch in text)


def count_segments(text: str) -> int:
    """Number of SMS segments Twilio would bill for a body (GSM-7 160/153, UCS-2 70/67)."""
    if not text:
        return 1
    if is_gsm7(text):
        units = sum(2 if ch in _GSM_EXT else 1 for ch in text)
        single, multi = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi = 70, 67
    if units <= single:
        return 1
    return -(-units // multi)


def stable_sid(prefix: str, seed: str) -> str:
    """A deterministic Twilio-style SID (prefix + 32 hex) derived from a seed string."""
    return prefix + hashlib.sha256(seed.encode("utf-8")).hexdigest()[:32]


CODE_RE = re.compile(r"(?<!\d)\d{4,10}(?!\d)")


def first_code(text: str) -> str:
    """The first run of 4-10 digits in a text (a verification code), or ''."""
    match = CODE_RE.search(text or "")
    return match.group(0) if match else ""
