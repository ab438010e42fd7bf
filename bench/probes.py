"""Redis-side probes: round trips per request (counted in redis-py), bytes per verification,
and keys without a TTL."""
from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis
from redis.connection import AbstractConnection

COMMAND = re.compile(rb"\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n")


@dataclass
class RoundTrips:
    """Writes to Redis sockets (one per round trip; a pipeline is one) and the commands in them."""

    trips: list[list[str]] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Round trips."""
        return len(self.trips)

    def describe(self) -> str:
        """The round trips as `A; B+C+D` (a `+` joins commands sent together)."""
        return "; ".join("+".join(trip) for trip in self.trips)


_counting = threading.local()


@contextmanager
def count_round_trips() -> Iterator[RoundTrips]:
    """Count round trips made by this thread through redis-py while the block runs."""
    original = AbstractConnection.send_packed_command
    seen = RoundTrips()

    def counted(self: AbstractConnection, command: object, check_health: bool = True) -> None:
        if getattr(_counting, "on", False):
            chunks = [command] if isinstance(command, (bytes, str)) else list(command)  # type: ignore[call-overload]
            data = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)
            seen.trips.append([m.decode().upper() for m in COMMAND.findall(data)])
        original(self, command, check_health)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    _counting.on = True
    try:
        yield seen
    finally:
        _counting.on = False
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def bytes_each(r: redis.Redis, keys: list[str]) -> list[int]:
    """MEMORY USAGE (exact: SAMPLES 0) of each key; 0 for keys that are gone."""
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return [int(v or 0) for v in pipe.execute()]


def key_sizes(r: redis.Redis) -> dict[str, int]:
    """MEMORY USAGE (SAMPLES 0: every element) of every key in the database."""
    keys = [k.decode() for k in r.scan_iter(count=1000)]
    sizes: dict[str, int] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        sizes.update(zip(chunk, bytes_each(r, chunk)))
    return sizes


def used_memory(r: redis.Redis) -> int:
    """The server's used_memory without its clients' buffers (they grow and shrink with the load)."""
    info = r.info("memory")
    return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0))


def settled_used_memory(r: redis.Redis, deadline: float = 10.0) -> int:
    """used_memory (less clients) once Redis's own cron has released what a burst of requests left
    (it does within about a second, no command needed): two readings 0.25 s apart within 4 KiB."""
    last, end = used_memory(r), time.monotonic() + deadline
    while time.monotonic() < end:
        time.sleep(0.25)
        now = used_memory(r)
        if abs(now - last) < 4096:
            return now
        last = now
    return last


def memory_stats(r: redis.Redis) -> dict[str, float]:
    """MEMORY STATS' numeric entries, the per-database ones flattened (`db.12.overhead.hashtable.main`)."""
    raw = r.execute_command("MEMORY STATS")
    pairs = dict(zip(raw[0::2], raw[1::2])) if isinstance(raw, list) else raw
    flat: dict[str, float] = {}
    for name, value in pairs.items():
        name = name.decode() if isinstance(name, bytes) else str(name)
        if isinstance(value, (list, dict)):
            inner = dict(zip(value[0::2], value[1::2])) if isinstance(value, list) else value
            for k, v in inner.items():
                flat[f"{name}.{k.decode() if isinstance(k, bytes) else k}"] = float(v)
        elif isinstance(value, (int, float)) or (isinstance(value, bytes) and value.replace(b".", b"").isdigit()):
            flat[name] = float(value)
    return flat


def stats_growth(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    """Bytes per verification by which each MEMORY STATS entry grew (entries that moved by ≥ 1 B each)."""
    grown = {k: (after[k] - before.get(k, 0.0)) / max(count, 1) for k in after
             if not k.endswith((".ratio", ".percentage", "bytes-per-key")) and k != "keys.count"}
    return {k: round(v, 1) for k, v in sorted(grown.items()) if abs(v) >= 1}


@dataclass
class MemoryReport:
    """What N verifications in one state added to Redis, by kind of key, per verification."""

    state: str
    verifications: int
    per_kind: dict[str, dict[str, float]]  # shape -> keys added, keys grown, bytes per verification
    used_memory_per_verification: float  # settled (settled_used_memory)
    used_memory_at_once_per_verification: float  # read right after the requests

    @property
    def total(self) -> float:
        """Bytes per verification over every key it added or grew (MEMORY USAGE)."""
        return sum(v["bytes_each"] for v in self.per_kind.values())


def memory_added(state: str, before: dict[str, int], after: dict[str, int], used: tuple[int, int, int],
                 count: int) -> MemoryReport:
    """Per verification: keys that appeared (whole size) and keys that grew (the growth), by kind;
    `used`: used_memory before, right after, and settled."""
    kinds: dict[str, dict[str, float]] = {}
    for key, size in after.items():
        grown = size - before.get(key, 0)
        if grown <= 0:
            continue
        entry = kinds.setdefault(shape(key), {"keys_added": 0, "keys_grown": 0, "bytes": 0.0})
        entry["keys_added" if key not in before else "keys_grown"] += 1
        entry["bytes"] += grown
    per_kind = {k: {**v, "bytes_each": round(v["bytes"] / count, 1)} for k, v in sorted(kinds.items())}
    return MemoryReport(state, count, per_kind, round((used[2] - used[0]) / count, 1),
                        round((used[1] - used[0]) / count, 1))


def hash_fields(r: redis.Redis, key: str) -> dict[str, str]:
    """One hash's fields and values (decoded), to see where a record's bytes go."""
    return {k.decode(): v.decode(errors="replace") for k, v in r.hgetall(key).items()}


def encodings(r: redis.Redis, keys: list[str]) -> dict[str, int]:
    """OBJECT ENCODING of the keys, counted."""
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.object("encoding", key)
    return dict(Counter(v.decode() if isinstance(v, bytes) else str(v) for v in pipe.execute()))


PATTERNS = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"vf_[0-9a-f]{32}"), "vf_<id>"),
    (re.compile(r"[0-9a-f]{32}"), "<hex>"),
    (re.compile(r"\+\d{8,15}"), "<e164>"),
    (re.compile(r"(rq:worker:)[^:]+"), r"\1<name>"),
    (re.compile(r"(gw:worker:)[^:]+"), r"\1<name>"),
    (re.compile(r"^(gw:lim:checks:).+"), r"\1<client>"),
    (re.compile(r"^(gw:limits:)\d+:\d+$"), r"\1<generation>:<shard>"),
    (re.compile(r":\d{4,}$"), ":<n>"),
]


def shape(key: str) -> str:
    """A key with its ids replaced by placeholders, to group keys by kind."""
    for pattern, placeholder in PATTERNS:
        key = pattern.sub(placeholder, key)
    return key


@dataclass
class TtlReport:
    """Every key of a database by kind: how many, how many have no TTL, their type."""

    kinds: dict[str, dict[str, object]]


def ttl_scan(r: redis.Redis) -> TtlReport:
    """SCAN the whole database and look at each key's TTL and type."""
    kinds: dict[str, dict[str, object]] = {}
    keys = [k.decode() for k in r.scan_iter(count=1000)]
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        pipe = r.pipeline(transaction=False)
        for key in chunk:
            pipe.ttl(key)
            pipe.type(key)
        replies = pipe.execute()
        for key, ttl, kind in zip(chunk, replies[0::2], replies[1::2]):
            entry = kinds.setdefault(shape(key), {"keys": 0, "no_ttl": 0, "type": kind.decode(), "size": 0})
            entry["keys"] = int(entry["keys"]) + 1  # type: ignore[call-overload]
            if ttl == -1:
                entry["no_ttl"] = int(entry["no_ttl"]) + 1  # type: ignore[call-overload]
    for name, entry in kinds.items():
        if entry["keys"] == 1 and entry["type"] in ("zset", "list", "stream", "hash", "set"):
            size = {"zset": r.zcard, "list": r.llen, "stream": r.xlen, "hash": r.hlen, "set": r.scard}
            entry["size"] = size[str(entry["type"])](name)
    return TtlReport(kinds)
