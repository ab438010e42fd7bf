"""Dataclasses for the simulator's state: behaviours, rules, messages, calls, handsets, records."""
from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

SMS_OUTCOMES = ("deliver", "reject", "failed", "undelivered", "no_dlr", "lost")
CALL_MODES = ("auto", "answer", "interactive", "silent", "voicemail", "busy", "no-answer", "failed")
ACTIVE_CALL_STATUSES = ("queued", "initiated", "ringing", "in-progress")


def new_sid(prefix: str) -> str:
    """A random Twilio-style SID: two-letter prefix + 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


def utcnow() -> datetime:
    """Current time in UTC (timezone-aware)."""
    return datetime.now(timezone.utc)


def rfc2822(moment: datetime | None) -> str | None:
    """Format a datetime like Twilio's JSON dates: 'Thu, 24 Aug 2023 05:01:45 +0000'."""
    if moment is None:
        return None
    return format_datetime(moment.astimezone(timezone.utc).replace(microsecond=0))


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 (UTC, 'Z') for the control API."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BehaviourError(ValueError):
    """A control-API payload that does not describe a valid behaviour or rule."""


@dataclass
class Behaviour:
    """How a simulated handset reacts to SMS and calls."""

    sms: str = "deliver"
    sms_error_code: int | None = None
    sms_http_status: int | None = None
    sms_reply: str | None = None
    sms_reply_delay_ms: int = 0
    callback_delay_ms: int | None = None
    duplicate_callbacks: bool = False
    reorder_callbacks: bool = False
    call: str = "auto"
    keys: list[str] = field(default_factory=list)
    barge_in: bool = False
    ring_ms: int | None = None
    rest_delay_ms: int = 0

    def validate(self) -> None:
        """Raise BehaviourError when a field holds an impossible value."""
        if self.sms not in SMS_OUTCOMES:
            raise BehaviourError(f"sms must be one of {', '.join(SMS_OUTCOMES)}")
        if self.call not in CALL_MODES:
            raise BehaviourError(f"call must be one of {', '.join(CALL_MODES)}")
        if self.sms == "reject" and self.sms_error_code is None:
            raise BehaviourError("sms=reject needs sms_error_code")
        for name in ("sms_reply_delay_ms", "callback_delay_ms", "ring_ms", "rest_delay_ms"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise BehaviourError(f"{name} must be >= 0")
        if any(not isinstance(k, str) for k in self.keys):
            raise BehaviourError("keys must be a list of strings")

    def call_mode(self) -> str:
        """The effective call mode: 'auto' means scripted answer with keys, else interactive."""
        if self.call != "auto":
            return self.call
        return "answer" if self.keys else "interactive"

    def to_json(self) -> dict[str, Any]:
        """JSON view (all fields)."""
        return dataclasses.asdict(self)


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "sms": (str,), "sms_error_code": (int, type(None)), "sms_http_status": (int, type(None)),
    "sms_reply": (str, type(None)), "sms_reply_delay_ms": (int,), "callback_delay_ms": (int, type(None)),
    "duplicate_callbacks": (bool,), "reorder_callbacks": (bool,), "call": (str,), "keys": (list,), "barge_in": (bool,),
    "ring_ms": (int, type(None)), "rest_delay_ms": (int,),
}


def behaviour_from_json(data: Any, base: Behaviour | None = None) -> Behaviour:
    """Build a Behaviour from a JSON object, optionally merging over a base; validates names and types."""
    if not isinstance(data, dict):
        raise BehaviourError("behaviour must be a JSON object")
    unknown = sorted(set(data) - set(_FIELD_TYPES))
    if unknown:
        raise BehaviourError(f"unknown behaviour field(s): {', '.join(unknown)}")
    values = dataclasses.asdict(base) if base is not None else {}
    for name, value in data.items():
        allowed = _FIELD_TYPES[name]
        if isinstance(value, bool) and bool not in allowed:
            raise BehaviourError(f"{name} has the wrong type")
        if not isinstance(value, allowed):
            raise BehaviourError(f"{name} has the wrong type")
        values[name] = list(value) if isinstance(value, list) else value
    behaviour = Behaviour(**values)
    behaviour.validate()
    return behaviour


@dataclass
class Rule:
    """A behaviour applied to every number matching a prefix and/or a libphonenumber type."""

    behaviour: Behaviour
    prefix: str | None = None
    number_type: str | None = None
    name: str = ""

    def matches(self, number: str, kind: str) -> bool:
        """True when the number has the prefix and the type (each only if set)."""
        if self.prefix is not None and not number.startswith(self.prefix):
            return False
        if self.number_type is not None and kind != self.number_type:
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        """JSON view."""
        return {"name": self.name, "prefix": self.prefix, "number_type": self.number_type,
                "behaviour": self.behaviour.to_json()}


def rule_from_json(data: Any) -> Rule:
    """Build a Rule from {"prefix"?, "number_type"?, "name"?, "behaviour": {...}}."""
    if not isinstance(data, dict):
        raise BehaviourError("rule must be a JSON object")
    unknown = sorted(set(data) - {"prefix", "number_type", "name", "behaviour"})
    if unknown:
        raise BehaviourError(f"unknown rule field(s): {', '.join(unknown)}")
    for name in ("prefix", "number_type", "name"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise BehaviourError(f"{name} must be a string")
    return Rule(behaviour=behaviour_from_json(data.get("behaviour", {})), prefix=data.get("prefix"),
                number_type=data.get("number_type"), name=data.get("name") or "")


def default_rules() -> list[Rule]:
    """Built-in rules: like Twilio, SMS to a fixed-line number fails at the REST call with 21614."""
    return [Rule(name="landline-sms", number_type="fixed_line",
                 behaviour=Behaviour(sms="reject", sms_error_code=21614))]


@dataclass
class MessageRecord:
    """One Message resource (outbound from the API, a TwiML reply, an auto-reply or an inbound SMS)."""

    sid: str
    account_sid: str
    to: str
    from_: str | None
    body: str
    status: str
    direction: str
    num_segments: int
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    error_code: int | None = None
    kind: str = "api"
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)
    date_sent: datetime | None = None
    num_media: int = 0
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    webhook_status: int | None = None
    webhook_error: str | None = None


@dataclass
class CallRecord:
    """One outbound Call resource and everything the simulated handset experienced on it."""

    sid: str
    account_sid: str
    to: str
    from_: str
    url: str | None
    method: str
    twiml: str | None
    fallback_url: str | None
    fallback_method: str
    status_callback: str | None
    status_callback_method: str
    events: tuple[str, ...]
    timeout: int
    machine_detection: str | None
    async_amd: bool
    async_amd_callback: str | None
    async_amd_callback_method: str
    send_digits: str | None
    mode: str
    script: list[str]
    ring_ms: int
    duplicate_callbacks: bool = False
    barge_in: bool = False
    status: str = "queued"
    answered_by: str | None = None
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)
    start_time: datetime | None = None
    end_time: datetime | None = None
    sim_seconds: float = 0.0
    duration: int | None = None
    sequence: int = 0
    transcript: list[dict[str, Any]] = field(default_factory=list)
    gathers: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    keybuf: list[str] = field(default_factory=list)
    pressed: list[str] = field(default_factory=list)
    unheard: list[str] = field(default_factory=list)
    listening: bool = False
    end_requested: str | None = None
    redirect: tuple[str | None, str, str | None] | None = None
    waiting_for_keys: bool = False
    gather_state: dict[str, Any] | None = None
    answered_mono: float | None = None
    created_mono: float = field(default_factory=time.monotonic)

    @property
    def active(self) -> bool:
        """True until the call reached a terminal status."""
        return self.status in ACTIVE_CALL_STATUSES


@dataclass
class Handset:
    """A simulated phone: its number and the message/call SIDs that touched it."""

    number: str
    number_type: str
    country: str
    created: datetime = field(default_factory=utcnow)
    inbox: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    last_activity: datetime = field(default_factory=utcnow)


@dataclass
class RestRequestRecord:
    """A REST request the simulator received (recorded for tests and OpenAPI validation)."""

    index: int
    method: str
    path: str
    form: list[tuple[str, str]]
    query: list[tuple[str, str]]
    status: int
    error_code: int | None
    auth_user: str | None
    time: datetime = field(default_factory=utcnow)

    def to_json(self) -> dict[str, Any]:
        """JSON view; form/query as lists of [name, value] pairs in the order received."""
        return {"index": self.index, "method": self.method, "path": self.path,
                "form": [list(p) for p in self.form], "query": [list(p) for p in self.query],
                "status": self.status, "error_code": self.error_code, "auth_user": self.auth_user,
                "time": iso(self.time)}


@dataclass
class WebhookRecord:
    """A webhook the simulator sent and what the receiver answered."""

    index: int
    kind: str
    sid: str | None
    url: str
    method: str
    params: list[tuple[str, str]]
    signature: str
    idempotency_token: str
    attempts: int = 0
    status: int | None = None
    content_type: str | None = None
    response_body: str | None = None
    error: str | None = None
    error_code: int | None = None
    duration_ms: int | None = None
    time: datetime = field(default_factory=utcnow)

    def to_json(self) -> dict[str, Any]:
        """JSON view."""
        return {"index": self.index, "kind": self.kind, "sid": self.sid, "url": self.url,
                "method": self.method, "params": [list(p) for p in self.params],
                "signature": self.signature, "idempotency_token": self.idempotency_token,
                "attempts": self.attempts, "status": self.status, "content_type": self.content_type,
                "response_body": self.response_body, "error": self.error, "error_code": self.error_code,
                "duration_ms": self.duration_ms, "time": iso(self.time)}
