"""Redis access for abuse protection: limit counters, pumping windows, breakers, spend."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from gateway.store import AUDIT_STREAM

_LUA = Path(__file__).with_name("lua")
BREAKERS_INDEX = "gw:breakers"


@dataclass(frozen=True)
class Admission:
    """What the admission script decided: refused with a reason, a warning, a breaker tripped."""

    refused: str | None
    retry_after: int = 0
    warned: tuple[str, ...] = ()
    tripped: str | None = None


@dataclass(frozen=True)
class Breaker:
    """A tripped breaker as operators see it."""

    scope: str
    id: str
    tripped_at: float
    until: float
    sends: int
    conversions: int


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AbuseStore:
    """The abuse scripts and the reads behind the operators' view and /metrics."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection
        self._scripts = {
            name: connection.register_script((_LUA / f"{name}.lua").read_text())
            for name in ("admit", "convert", "check_gate", "breaker_reset")
        }

    def admit(self, payload: dict[str, Any]) -> Admission:
        """Run every limit, breaker and budget for one send atomically, counting it if admitted."""
        reply = [_text(v) for v in self._scripts["admit"](args=[json.dumps(payload)])]
        if reply[0] == "refused":
            return Admission(reply[1], int(reply[2]), (), reply[3] or None)
        return Admission(None, 0, tuple(w for w in reply[1].split(",") if w), reply[2] or None)

    def converted(self, payload: dict[str, Any]) -> None:
        """Count a conversion in the windows and remember the converted number."""
        self._scripts["convert"](args=[json.dumps(payload)])

    def refused(self, record: dict[str, Any], audit_retention: int) -> None:
        """Count and audit a refusal decided without a script (the send cap of a verification)."""
        minid = int(time.time() * 1000) - audit_retention * 1000
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby("gw:metrics:refused", record["reason"], 1)
        pipe.xadd(AUDIT_STREAM, {k: str(v) for k, v in record.items()}, minid=minid, approximate=True)
        pipe.execute()

    def check_gate(
        self, key: str, limit: int, window: int, audit_retention_ms: int, server: str, user_id: str | None = None
    ) -> int | None:
        """Count a check (a verification's key) or an authenticator confirmation (the user's hash and
        id) against the user's allowance; seconds to wait when refused, else None."""
        args: list[object] = [limit, window, audit_retention_ms, server] + ([user_id] if user_id else [])
        reply = [_text(v) for v in self._scripts["check_gate"](keys=[key], args=args)]
        return int(reply[2]) if reply[0] == "refused" else None

    def reset_breaker(self, payload: dict[str, Any]) -> bool:
        """Close a breaker and clear its window; True when it was tripped."""
        return bool(self._scripts["breaker_reset"](args=[json.dumps(payload)]))

    def breakers(self, now: float) -> list[Breaker]:
        """Every tripped breaker, soonest to close first (the index is bounded by trips)."""
        members = [_text(m) for m in self.redis.zrangebyscore(BREAKERS_INDEX, now, "+inf")]
        if not members:
            return []
        states = self.redis.mget([f"gw:breaker:{m}" for m in members])
        found = []
        for raw in states:
            if raw:
                s = json.loads(raw)
                found.append(Breaker(s["scope"], s["id"], s["tripped_at"], s["until"], s["sends"], s["conversions"]))
        return found

    def spend(self, day: int) -> dict[str, int]:
        """Estimated spend of a UTC day (days since the epoch) in micro-units: '*' and by country."""
        return {_text(k): int(v) for k, v in self.redis.hgetall(f"gw:spend:{day}").items()}

    def counters(self) -> dict[str, dict[str, int]]:
        """The cluster-wide abuse counters: refusals by reason, breaker trips and resets, warnings."""
        names = ("refused", "breaker_trips", "breaker_resets", "spend_warnings")
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(f"gw:metrics:{name}")
        return {n: {_text(k): int(v) for k, v in values.items()} for n, values in zip(names, pipe.execute())}
