"""Redis-side probes: round trips per request, commands seen by MONITOR, bytes per
verification, and keys without a TTL."""
from __future__ import annotations

import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis
from redis.connection import AbstractConnection

COMMAND = re.compile(rb"\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n")
MONITOR_LINE = re.compile(r'^\+?[\d.]+ \[(\d+) ([^\]]+)\] "([^"]+)"')


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


@dataclass
class MonitorCapture:
    """The commands MONITOR showed for one action: from clients, and from inside Lua scripts."""

    client: list[str]
    lua: list[str]


class Monitor:
    """Redis MONITOR on a raw socket; mark() cuts the stream after a marker command."""

    def __init__(self, url: str, db: int) -> None:
        self.db = str(db)
        self.marker = redis.Redis.from_url(url, db=db)
        host, port = self.marker.connection_pool.connection_kwargs["host"], self.marker.connection_pool.connection_kwargs["port"]
        self.sock = socket.create_connection((host, port))
        self.sock.sendall(b"MONITOR\r\n")
        self.file = self.sock.makefile("rb")
        self.lines: list[str] = []
        self.cursor = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        self.marker.echo("bench-start")
        self._wait_for("bench-start")

    def _read(self) -> None:
        for raw in self.file:
            with self.lock:
                self.lines.append(raw.decode(errors="replace").rstrip("\r\n"))

    def _wait_for(self, text: str) -> list[str]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with self.lock:
                for i in range(self.cursor, len(self.lines)):
                    if f'"ECHO" "{text}"' in self.lines[i]:
                        chunk, self.cursor = self.lines[self.cursor:i], i + 1
                        return chunk
            time.sleep(0.01)
        raise TimeoutError(f"MONITOR never showed {text}")

    def capture(self, action: Callable[[], object], label: str) -> MonitorCapture:
        """Run an action and return the database's commands up to a marker sent after it."""
        self.marker.echo(f"bench-before-{label}")
        self._wait_for(f"bench-before-{label}")
        action()
        self.marker.echo(f"bench-after-{label}")
        client, lua = [], []
        for line in self._wait_for(f"bench-after-{label}"):
            m = MONITOR_LINE.match(line)
            if m and m.group(1) == self.db:
                (lua if m.group(2) == "lua" else client).append(m.group(3).upper())
        return MonitorCapture(client, lua)

    def close(self) -> None:
        """Stop monitoring."""
        self.sock.close()
        self.marker.close()


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


@dataclass
class MemoryReport:
    """What N verifications in one state added to Redis, by kind of key, per verification."""

    state: str
    verifications: int
    per_kind: dict[str, dict[str, float]]  # shape -> keys added, keys grown, bytes per verification
    used_memory_per_verification: float

    @property
    def total(self) -> float:
        """Bytes per verification over every key it added or grew (MEMORY USAGE)."""
        return sum(v["bytes_each"] for v in self.per_kind.values())


def memory_added(state: str, before: dict[str, int], after: dict[str, int], used: tuple[int, int],
                 count: int) -> MemoryReport:
    """Per verification: keys that appeared (whole size) and keys that grew (the growth), by kind."""
    kinds: dict[str, dict[str, float]] = {}
    for key, size in after.items():
        grown = size - before.get(key, 0)
        if grown <= 0:
            continue
        entry = kinds.setdefault(shape(key), {"keys_added": 0, "keys_grown": 0, "bytes": 0.0})
        entry["keys_added" if key not in before else "keys_grown"] += 1
        entry["bytes"] += grown
    per_kind = {k: {**v, "bytes_each": round(v["bytes"] / count, 1)} for k, v in sorted(kinds.items())}
    return MemoryReport(state, count, per_kind, round((used[1] - used[0]) / count, 1))


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


def command_mix(commands: list[str]) -> str:
    """A compact `CMD×n` listing of commands in order of frequency."""
    return ", ".join(f"{c}×{n}" if n > 1 else c for c, n in Counter(commands).most_common())
