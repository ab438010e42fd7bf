"""Reading Twilio's form fields: each bad value is 400/60200 naming the parameter."""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from gateway.verify_v2.errors import invalid

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
CODE = re.compile(r"^[0-9A-Za-z]{4,10}$")
LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,4})?$")
SID = {"VA": re.compile(r"^VA[0-9a-f]{32}$"), "VE": re.compile(r"^VE[0-9a-f]{32}$"),
       "VL": re.compile(r"^VL[0-9a-f]{32}$")}


def text(form: Mapping[str, str], name: str, limit: int, required: bool = False) -> str | None:
    """A string parameter of at most limit characters."""
    value = form.get(name)
    if value is None or value == "":
        if required:
            raise invalid(name, "required")
        return None
    if len(value) > limit:
        raise invalid(name, f"at most {limit} characters")
    return value


def boolean(form: Mapping[str, str], name: str) -> bool | None:
    """true/false as the SDKs send them (any case)."""
    value = form.get(name)
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise invalid(name, "true or false")
    return lowered == "true"


def integer(form: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    """A whole number within [low, high]."""
    value = form.get(name)
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:  # isdigit alone takes "²"
        raise invalid(name, f"a whole number from {low} to {high}")
    return int(value)


def e164(form: Mapping[str, str], name: str, required: bool = True) -> str | None:
    """A phone number in E.164 (with the +), as Twilio requires of `To`."""
    value = text(form, name, 32, required)
    if value is not None and not E164.fullmatch(value.strip()):
        raise invalid(name, "a phone number in E.164 form, like +15017122661")
    return value.strip() if value else None


def code(form: Mapping[str, str], name: str, required: bool = False) -> str | None:
    """A verification code: 4 to 10 letters or digits."""
    value = form.get(name)
    if value is None or value == "":
        if required:
            raise invalid(name, "required")
        return None
    if not CODE.fullmatch(value):
        raise invalid(name, "4 to 10 letters or digits")
    return value


def ip(form: Mapping[str, str], name: str) -> str | None:
    """An IPv4 or IPv6 address (Twilio's DeviceIp: the gateway's per-client limits use it)."""
    value = text(form, name, 45)
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise invalid(name, "an IPv4 or IPv6 address") from None


def sid(value: str | None, prefix: str) -> bool:
    """Whether a value is a SID of the given kind (VA, VE, VL)."""
    return bool(value and SID[prefix].fullmatch(value))


def page(args: Mapping[str, str]) -> tuple[int, int]:
    """(page, page size) of a list request: PageSize 1–1000 (default 50), Page from 0."""
    size = integer(args, "PageSize", 1, 1000) or 50
    number = integer(args, "Page", 0, 10**6) or 0
    return number, size
