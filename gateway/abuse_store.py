"""Redis access for abuse protection: limit counters, pumping windows, breakers, spend."""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import redis

from gateway import keys

_LUA = Path(__file__).with_name("lua")
CLOCK_TRIES = 3  # a script run again at Redis's time at most this often (a bucket boundary passing)


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


def admission_of(reply: Sequence[str]) -> Admission:
    """admit.lua's answer, whether run alone or in a start's create call."""
    if reply[0] == "refused":
        return Admission(reply[1], int(reply[2]), (), reply[3] or None)
    return Admission(None, 0, tuple(w for w in reply[1].split(",") if w), reply[2] or None)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _keyed(payload: dict[str, Any], before: int = 0) -> tuple[list[str], bytes]:
    """KEYS from a request's named keys ('keys': name -> key), and the ARGV that carries the
    request: packed with MessagePack (Redis's Lua has cmsgpack; packing is ~3x faster than
    json.dumps, and unpacking a little faster than cjson), each key replaced by its position in
    KEYS (abuse_lib.lua), after `before` keys of another script run in the same call."""
    declared: list[str] = []

    def at(key: str) -> int:
        declared.append(key)
        return before + len(declared)

    request = dict(payload)
    request["keys"] = {name: at(key) for name, key in payload["keys"].items()}
    return declared, msgpack.packb(request)


class AbuseStore:
    """The abuse scripts and the reads behind the operators' view and /metrics."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection
        self.offset = 0.0  # Redis's clock minus this node's, as Redis last said (_clocked)
        lib, windows = (_LUA / "abuse_lib.lua").read_text(), (_LUA / "conversion_lib.lua").read_text()
        self._scripts = {
            name: connection.register_script(lib + (windows if name in ("admit", "convert") else "")
                                             + (_LUA / f"{name}.lua").read_text())
            for name in ("admit", "convert", "breaker_reset", "refused")
        }

    def _run(self, name: str, payload: dict[str, Any]) -> Any:
        script_keys, request = _keyed(payload)
        return self._scripts[name](keys=script_keys, args=[request])

    def now(self) -> float:
        """This node's clock corrected by what Redis's clock last said (the keys chosen by time)."""
        return time.time() + self.offset

    def _clocked(self, name: str, build: Callable[[float], dict[str, Any]]) -> list[str]:
        """Run a script whose keys depend on the time, chosen at now(); when the script finds that
        Redis's clock disagrees, learn Redis's and choose again (one more round trip)."""
        for _ in range(CLOCK_TRIES):
            reply = [_text(v) for v in self._run(name, build(self.now()))]
            if reply[0] != "clock":
                return reply
            self.learn(float(reply[1]))
        raise redis.exceptions.RedisError("Redis's clock kept moving past the keys chosen for it")

    def placed(self, payload: dict[str, Any], before: int) -> tuple[list[str], bytes]:
        """A request's keys and packed request for a call that runs admit.lua after `before` keys
        of its own (a start: Store.create)."""
        return _keyed(payload, before)

    def learn(self, redis_time: float) -> None:
        """Redis's clock (a 'clock' answer, a script's time), for the keys chosen by time from now on."""
        self.offset = redis_time - time.time()

    def admit(self, build: Callable[[float], dict[str, Any]]) -> Admission:
        """Run every limit, breaker and budget for one send atomically, counting it if admitted
        (build: the request with its keys chosen at a given time)."""
        return admission_of(self._clocked("admit", build))

    def queued_conversions(self, most: int) -> list[str]:
        """The oldest `most` approvals whose conversion is yet to be counted (keys.CONVERSIONS)."""
        return [_text(entry) for entry in self.redis.lrange(keys.CONVERSIONS, 0, most - 1)]

    def conversion_backlog(self) -> int:
        """How many approvals' conversions wait to be counted."""
        return int(self.redis.llen(keys.CONVERSIONS))

    def fold(self, payload: dict[str, Any]) -> bool:
        """Count the queue's head (payload['entries'], as read) and take it off; False when another
        caller counted it first."""
        return _text(self._run("convert", payload)) == "ok"

    def refused(self, record: dict[str, Any], audit_retention: int) -> None:
        """Count and audit a refusal decided outside the admission (the send cap of a verification),
        at Redis's time."""
        self._run("refused", {"keys": {"audit": keys.AUDIT, "refused": keys.metrics("refused")},
                              "record": record, "audit_retention_ms": audit_retention * 1000})

    def reset_breaker(self, payload: dict[str, Any]) -> bool:
        """Close a breaker and clear its window; True when it was tripped."""
        return bool(self._run("breaker_reset", payload))

    def breakers(self, now: float) -> list[Breaker]:
        """Every tripped breaker, soonest to close first (the index is bounded by trips)."""
        members = [_text(m) for m in self.redis.zrangebyscore(keys.BREAKERS, now, "+inf")]
        if not members:
            return []
        states = self.redis.mget([keys.breaker(m) for m in members])
        found = []
        for raw in states:
            if raw:
                s = json.loads(raw)
                found.append(Breaker(s["scope"], s["id"], s["tripped_at"], s["until"], s["sends"], s["conversions"]))
        return found

    def spend(self, day: int) -> dict[str, int]:
        """Estimated spend of a UTC day (days since the epoch) in micro-units: '*' and by country."""
        return {_text(k): int(v) for k, v in self.redis.hgetall(keys.spend(day)).items()}

    def counters(self) -> dict[str, dict[str, int]]:
        """The cluster-wide abuse counters: refusals by reason, breaker trips and resets, warnings."""
        names = ("refused", "breaker_trips", "breaker_resets", "spend_warnings")
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.metrics(name))
        return {n: {_text(k): int(v) for k, v in values.items()} for n, values in zip(names, pipe.execute())}
