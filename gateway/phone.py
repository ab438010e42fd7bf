"""Phone numbers: parse, validate and classify with phonenumbers; mask for logs."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import phonenumbers
from phonenumbers import PhoneNumberType

from gateway.errors import DestinationBlocked, InvalidPhoneNumber


class NumberType(str, Enum):
    MOBILE = "mobile"
    FIXED_LINE = "fixed_line"
    FIXED_LINE_OR_MOBILE = "fixed_line_or_mobile"
    VOIP = "voip"
    TOLL_FREE = "toll_free"
    PREMIUM_RATE = "premium_rate"
    SHARED_COST = "shared_cost"
    PERSONAL_NUMBER = "personal_number"
    PAGER = "pager"
    UAN = "uan"
    VOICEMAIL = "voicemail"
    UNKNOWN = "unknown"


_TYPES = {
    PhoneNumberType.MOBILE: NumberType.MOBILE,
    PhoneNumberType.FIXED_LINE: NumberType.FIXED_LINE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE: NumberType.FIXED_LINE_OR_MOBILE,
    PhoneNumberType.VOIP: NumberType.VOIP,
    PhoneNumberType.TOLL_FREE: NumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE: NumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST: NumberType.SHARED_COST,
    PhoneNumberType.PERSONAL_NUMBER: NumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER: NumberType.PAGER,
    PhoneNumberType.UAN: NumberType.UAN,
    PhoneNumberType.VOICEMAIL: NumberType.VOICEMAIL,
}

# Numbers that cost the organisation money or cannot take a code: never sent to. Personal
# numbers (UK 070, …) forward anywhere and are a known toll-fraud route (docs/abuse.md).
BLOCKED_TYPES = frozenset({
    NumberType.PREMIUM_RATE, NumberType.SHARED_COST, NumberType.PAGER, NumberType.UAN, NumberType.VOICEMAIL,
    NumberType.PERSONAL_NUMBER,
})
SMS_CAPABLE = frozenset(
    {NumberType.MOBILE, NumberType.FIXED_LINE_OR_MOBILE, NumberType.VOIP, NumberType.PERSONAL_NUMBER, NumberType.UNKNOWN}
)


@dataclass(frozen=True)
class PhoneNumber:
    """A validated number in E.164 with its country and type."""

    e164: str
    country: str
    type: NumberType

    @property
    def sms_capable(self) -> bool:
        """Whether an SMS can reach this kind of number at all."""
        return self.type in SMS_CAPABLE


def parse(raw: object, country: str | None = None) -> PhoneNumber:
    """Parse and validate a number given in E.164 or nationally with a country."""
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 32:
        raise InvalidPhoneNumber("'to' must be a phone number in E.164 form, like +48600100200.")
    region = country.upper() if country else None
    if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidPhoneNumber(f"'country' {country!r} is not an ISO 3166 alpha-2 code.")
    if region is None and not raw.strip().startswith("+"):
        raise InvalidPhoneNumber("A national number needs 'country'; or give 'to' in E.164 form.")
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise InvalidPhoneNumber(f"{mask(raw)} is not a phone number.") from None
    # phonenumbers' is_valid_number is exactly number_type() != UNKNOWN for the number's own
    # region, and each walks the region's patterns: asked once (tests/test_units.py holds the two
    # equal for every region's example numbers).
    found = phonenumbers.number_type(number)
    if found == PhoneNumberType.UNKNOWN:
        raise InvalidPhoneNumber(f"{mask(raw)} is not a valid phone number.")
    kind = _TYPES.get(found, NumberType.UNKNOWN)
    return PhoneNumber(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        country=phonenumbers.region_code_for_number(number) or "ZZ",
        type=kind,
    )


def check_allowed(number: PhoneNumber, allowed_countries: frozenset[str]) -> None:
    """Refuse countries outside the allow-list and number types that cannot take codes."""
    if allowed_countries and number.country not in allowed_countries:
        raise DestinationBlocked(f"Destination country {number.country} is not allowed.")
    if number.type in BLOCKED_TYPES:
        raise DestinationBlocked(f"Numbers of type {number.type.value} cannot receive codes.")


def mask(number: str) -> str:
    """Hide all but the country prefix and the last two digits, for logs."""
    digits = str(number)
    if len(digits) <= 5:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 5) + digits[-2:]
