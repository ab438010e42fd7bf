"""Configuration of the carrier simulator."""
from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_AUTH_TOKEN = "simulator-auth-token-0000000000000"
DEFAULT_NUMBERS = ("+15005550006",)


def _split(value: str | None) -> tuple[str, ...]:
    """Split a comma list from the environment into a tuple of stripped items."""
    if not value:
        return ()
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _int_env(name: str, default: int) -> int:
    """Read an integer environment variable, naming it in the error when malformed."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything the simulator needs: credentials, owned senders, where inbound SMS go, timings."""

    account_sid: str = DEFAULT_ACCOUNT_SID
    auth_token: str = DEFAULT_AUTH_TOKEN
    numbers: tuple[str, ...] = DEFAULT_NUMBERS
    messaging_services: tuple[str, ...] = ()
    sms_url: str | None = None
    callback_delay_ms: int = 0
    ring_ms: int = 20
    webhook_connect_timeout_s: float = 5.0
    webhook_read_timeout_s: float = 15.0
    job_workers: int = 16
    call_workers: int = 32
    max_verbs_per_call: int = 300
    max_requests_per_call: int = 60
    max_records: int = 5000

    def __post_init__(self) -> None:
        """Normalise list fields given as lists and reject impossible values."""
        object.__setattr__(self, "numbers", tuple(self.numbers))
        object.__setattr__(self, "messaging_services", tuple(self.messaging_services))
        if self.callback_delay_ms < 0:
            raise ValueError("callback_delay_ms must be >= 0")
        if not self.account_sid or not self.auth_token:
            raise ValueError("account_sid and auth_token must not be empty")

    @classmethod
    def from_env(cls) -> "SimulatorConfig":
        """Build a config from the SIM_* environment variables (see the package docstring)."""
        env = os.environ
        numbers = _split(env.get("SIM_NUMBERS")) or DEFAULT_NUMBERS
        return cls(
            account_sid=env.get("SIM_ACCOUNT_SID") or DEFAULT_ACCOUNT_SID,
            auth_token=env.get("SIM_AUTH_TOKEN") or DEFAULT_AUTH_TOKEN,
            numbers=numbers,
            messaging_services=_split(env.get("SIM_MESSAGING_SERVICES")),
            sms_url=env.get("SIM_SMS_URL") or None,
            callback_delay_ms=_int_env("SIM_CALLBACK_DELAY_MS", 0),
        )
