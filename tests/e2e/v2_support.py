"""Shared by the /v2 tests: accounts, a Stack that accepts them, and SDK clients pointed at it."""
from __future__ import annotations

import itertools

from twilio.rest import Client

from tests.stack import Stack

ACCOUNT = "AC" + "1" * 32
TOKEN = "account-one-token"
OTHER_ACCOUNT = "AC" + "2" * 32
OTHER_TOKEN = "account-two-token"
API_KEY = "SK" + "3" * 32
API_SECRET = "api-key-secret"
VERIFY_ACCOUNTS = f"{ACCOUNT}:{TOKEN},{OTHER_ACCOUNT}:{OTHER_TOKEN},{API_KEY}:{API_SECRET}@{ACCOUNT}"
_numbers = itertools.count(100)


def new_number(prefix: str = "+48600300") -> str:
    """A mobile number no other /v2 test uses."""
    return f"{prefix}{next(_numbers):03d}"


def v2_stack(db: int, **env: str) -> Stack:
    """A Stack with the /v2 accounts configured (not started)."""
    settings = {"VERIFY_ACCOUNTS": VERIFY_ACCOUNTS, "FALLBACK_CHANNELS": "", "RATE_LIMIT_PER_NUMBER": "1000",
                "DELIVERY_RETRY_INTERVALS": "0", "DELIVERY_DEADLINE": "600",
                "RATE_LIMIT_PER_IP": "4",
                # These tests send to one number range within seconds, faster than the conversions
                # of their approvals are counted (about a second later, by the supervisor): the
                # pumping breaker is tested in tests/test_abuse.py, not here.
                "PUMPING_MIN_SENDS": "1000"}
    return Stack(db, **{**settings, **env})


def client(stack: Stack, username: str = ACCOUNT, password: str = TOKEN, account_sid: str | None = None,
           **kwargs: object) -> Client:
    """The official SDK with only Verify's base URL changed, as an application would do it."""
    sdk = Client(username, password, account_sid, **kwargs)  # type: ignore[arg-type]
    sdk.verify.base_url = stack.url
    return sdk
