"""The verification record as the domain sees it: enums and dataclasses, no I/O."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from functools import lru_cache


class Status(str, Enum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELED = "canceled"
    FAILED = "failed"


class Reason(str, Enum):
    MAX_ATTEMPTS = "max_attempts"
    EXPIRED = "expired"
    REPLY_TIMEOUT = "reply_timeout"
    FRAUD_REPORTED = "fraud_reported"
    NO_INPUT = "no_input"
    DELIVERY_FAILED = "delivery_failed"
    CANCELED = "canceled"


class Channel(str, Enum):
    SMS = "sms"
    SMS_REPLY = "sms_reply"
    CALL = "call"
    TOTP = "totp"
    RECOVERY_CODE = "recovery_code"  # one of the user's single-use recovery codes; nothing is sent


class AttemptStatus(str, Enum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    RINGING = "ringing"
    ANSWERED = "answered"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"


# An attempt's status only moves to a higher rank; equal ranks never replace each other,
# so the first terminal outcome wins and a late "sent" cannot overwrite "delivered".
ATTEMPT_RANK = {
    AttemptStatus.QUEUED: 1,
    AttemptStatus.SENT: 2,
    AttemptStatus.RINGING: 2,
    AttemptStatus.ANSWERED: 3,
    AttemptStatus.DELIVERED: 4,
    AttemptStatus.UNDELIVERED: 4,
    AttemptStatus.FAILED: 4,
    AttemptStatus.COMPLETED: 4,
    AttemptStatus.BUSY: 4,
    AttemptStatus.NO_ANSWER: 4,
    AttemptStatus.CANCELED: 4,
}
FAILED_ATTEMPT = frozenset(
    {AttemptStatus.UNDELIVERED, AttemptStatus.FAILED, AttemptStatus.BUSY, AttemptStatus.NO_ANSWER, AttemptStatus.CANCELED}
)


def iso(ts: float | None) -> str | None:
    """Seconds since the epoch as an ISO 8601 UTC string (whole seconds)."""
    if ts is None:
        return None
    return _iso_second(int(ts))


@lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    # Every answer formats a few times, and a burst's share the same seconds: format each once.
    return datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class CodeOptions:
    """Per-verification overrides of the gateway's code settings (the /v2 Services set them)."""

    length: int | None = None
    ttl: int | None = None
    # Twilio's rule: every send within the validity carries the same code. The code is then
    # made at the start and kept encrypted with the verification (a CustomCode likewise).
    same_code: bool = False
    custom_code: str | None = None
    org_name: str | None = None
    share_warning: bool | None = None
    delivery_deadline: int | None = None
    voice: str | None = None  # the <Say> voice of calls (Twilio's tts_name)
    # At most one pending verification per this key: a start finds the live one instead.
    live_key: str | None = None
    # Fields a layer above keeps with the verification (x_<name> in the hash).
    tags: tuple[tuple[str, str], ...] = ()


@dataclass
class Attempt:
    """One delivery attempt on one channel."""

    number: int
    channel: Channel
    status: AttemptStatus
    error_code: int | None
    started_at: float
    sid: str | None = None
    ended_because: str | None = None

    def to_json(self) -> dict[str, object]:
        """The attempt as the API shows it."""
        return {
            "channel": self.channel.value,
            "status": self.status.value,
            "error_code": self.error_code,
            "started_at": iso(self.started_at),
        }


@dataclass
class Verification:
    """A verification as stored, with its attempts."""

    id: str
    status: Status
    reason: Reason | None
    to: str
    country: str
    number_type: str
    channel: Channel
    channels: list[Channel]
    position: int
    created_at: float
    expires_at: float
    max_attempts: int
    failures: int
    attempts: list[Attempt] = field(default_factory=list)
    user_id: str | None = None
    locale: str = "en"
    ivr_mode: str = "confirm"
    client_ip: str | None = None
    code_encrypted: str = ""
    deadline: float | None = None
    code_length: int | None = None
    code_ttl: int | None = None
    code_kept: str = ""
    org_name: str | None = None
    share_warning: bool | None = None
    delivery_deadline: int | None = None
    voice: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def pending(self) -> bool:
        """True while the verification can still be approved."""
        return self.status is Status.PENDING

    @property
    def attempt(self) -> Attempt:
        """The current (last) attempt."""
        return self.attempts[-1]

    @property
    def remaining_attempts(self) -> int:
        """Wrong codes left before the verification is denied."""
        return max(self.max_attempts - self.failures, 0)

    def to_json(self) -> dict[str, object]:
        """The verification object of the API contract (never the code)."""
        return {
            "id": self.id,
            "status": self.status.value,
            "reason": self.reason.value if self.reason else None,
            "to": self.to,
            "channel": self.channel.value,
            "channels": [c.value for c in self.channels],
            "attempts": [a.to_json() for a in self.attempts],
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "remaining_attempts": self.remaining_attempts,
        }
