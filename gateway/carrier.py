"""The carrier: Twilio's REST client, and what each Twilio error means for delivery."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum

import requests
import urllib3
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from gateway.carrier_http import http_client


class Action(str, Enum):
    """What to do after a carrier error."""

    RETRY = "retry"        # transient: the same channel again later (DELIVERY_RETRY_INTERVALS)
    FALLBACK = "fallback"  # this channel cannot reach the user: try the next one
    STOP = "stop"          # nothing will work: end the verification


# Twilio error code -> action; from ../shared/reference/twilio-wire.md §3. Codes not
# listed fall back (and are counted), because a user stuck on a broken channel is worse.
ERROR_ACTIONS: dict[int, Action] = {
    20429: Action.RETRY,
    30001: Action.FALLBACK,
    30002: Action.STOP,
    30003: Action.FALLBACK,
    30004: Action.FALLBACK,
    30005: Action.STOP,
    30006: Action.FALLBACK,
    30007: Action.FALLBACK,
    30008: Action.FALLBACK,
    30017: Action.FALLBACK,
    30022: Action.FALLBACK,
    30023: Action.FALLBACK,
    30034: Action.FALLBACK,
    30036: Action.FALLBACK,
    21211: Action.STOP,
    21408: Action.FALLBACK,
    21610: Action.FALLBACK,
    21612: Action.FALLBACK,
    21614: Action.FALLBACK,
    21635: Action.FALLBACK,
    21606: Action.FALLBACK,
    21212: Action.FALLBACK,
    21608: Action.STOP,
    21219: Action.STOP,
    20003: Action.STOP,
    21214: Action.FALLBACK,
    21215: Action.FALLBACK,
    21216: Action.STOP,
    21210: Action.FALLBACK,
}
KNOWN_CODES = frozenset(ERROR_ACTIONS)

# Transport failures of the REST request itself (urllib3's exceptions from carrier_http's client,
# requests' from TwilioHttpClient behind a proxy; the twilio package lets both through), most
# specific first. A read timeout or a connection dropped mid-request is
# ambiguous: Twilio may have accepted the message and only the answer was lost (its REST API has
# no idempotency key for Create Message: ../shared/reference/twilio-wire.md). Retrying is still
# right, because the retry sends the same code (`set_code.lua`): at worst one duplicate SMS.
TRANSPORT_ACTIONS: tuple[tuple[type[Exception], Action, bool], ...] = (
    # (exception, action, whether Twilio may have acted on the request)
    # No connection made (NewConnectionError, a refusal or a failed lookup, is one of these):
    (urllib3.exceptions.ConnectTimeoutError, Action.RETRY, False),
    (urllib3.exceptions.ReadTimeoutError, Action.RETRY, True),
    (urllib3.exceptions.HTTPError, Action.RETRY, True),  # the connection dropped mid-request, TLS, …
    (requests.exceptions.ConnectTimeout, Action.RETRY, False),
    (requests.exceptions.ReadTimeout, Action.RETRY, True),
    (requests.exceptions.ConnectionError, Action.RETRY, True),
    (requests.exceptions.RequestException, Action.RETRY, True),
)


def classify(code: int | None, http_status: int | None = None) -> Action:
    """The action for a Twilio error code (or, without one, its HTTP status)."""
    if code in ERROR_ACTIONS:
        return ERROR_ACTIONS[code]
    if http_status is not None and (http_status == 429 or http_status >= 500):
        return Action.RETRY
    return Action.FALLBACK


@dataclass(frozen=True)
class CarrierError(Exception):
    """A Twilio request failed; `action` says what delivery should do next."""

    code: int | None
    http_status: int | None
    message: str
    action: Action
    ambiguous: bool = False  # no answer: the carrier may have acted on the request anyway

    def __str__(self) -> str:
        maybe = " (the carrier may have accepted it)" if self.ambiguous else ""
        return f"carrier error {self.code} (HTTP {self.http_status}): {self.message}{maybe} -> {self.action.value}"


@dataclass(frozen=True)
class CallRequest:
    """What an outbound call needs."""

    to: str
    caller_id: str
    url: str
    status_callback: str
    ring_timeout: int
    machine_detection: str | None = None


class Carrier:
    """Sends messages and places calls through the `twilio` package."""

    def __init__(self, account_sid: str, auth_token: str, base_url: str, timeout: float) -> None:
        self._args = (account_sid, auth_token, base_url, timeout)
        self.client = Client(account_sid, auth_token, http_client=http_client(base_url, timeout))
        # Region/edge rewrite the host name (see the wire reference §9); we address one base URL.
        self.client.region = None
        self.client.edge = None
        self.client.api.base_url = base_url

    def clone(self) -> "Carrier":
        """The same carrier with a client (and HTTP session) of its own, for another thread."""
        return Carrier(*self._args)

    def send_sms(self, to: str, body: str, sender: str, status_callback: str | None, validity: int) -> str:
        """Create a message and return its SID (no status callback for a notice that tracks nothing)."""
        extra = {"messaging_service_sid": sender} if sender.startswith("MG") else {"from_": sender}
        if status_callback:
            extra["status_callback"] = status_callback
        with _translated_errors():
            message = self.client.messages.create(to=to, body=body, validity_period=validity, **extra)
        return str(message.sid)

    def place_call(self, call: CallRequest) -> str:
        """Create a call and return its SID."""
        extra = {"machine_detection": call.machine_detection} if call.machine_detection else {}
        with _translated_errors():
            created = self.client.calls.create(
                to=call.to,
                from_=call.caller_id,
                url=call.url,
                method="POST",
                status_callback=call.status_callback,
                status_callback_event=["initiated", "ringing", "answered", "completed"],
                status_callback_method="POST",
                timeout=call.ring_timeout,
                **extra,
            )
        return str(created.sid)


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Turn the twilio package's errors into CarrierError with its action."""
    try:
        yield
    except TwilioRestException as exc:
        # Without a Twilio error body the package reports the HTTP status as the code.
        code = exc.code if isinstance(exc.code, int) and exc.code >= 10000 else None
        raise CarrierError(code, exc.status, exc.msg, classify(code, exc.status)) from None
    except TwilioException as exc:
        raise CarrierError(None, None, str(exc), Action.RETRY) from None
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        action, ambiguous = transport_action(exc)
        raise CarrierError(None, None, f"{type(exc).__name__}: {exc}", action, ambiguous) from None


def transport_action(exc: Exception) -> tuple[Action, bool]:
    """The action for a failed REST request, and whether Twilio may have acted on it."""
    for kind, action, ambiguous in TRANSPORT_ACTIONS:
        if isinstance(exc, kind):
            return action, ambiguous
    return Action.RETRY, True
