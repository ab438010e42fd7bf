"""The operators' side of Redis (part of `Store`): console sessions, operator actions, numbers'
marks (opt-out, block) and limit counters, and what metrics and reports read (counters, audit streams).

A sibling of store.py under its conventions, split off for size as send_store.py was; its one
script (record_action.lua) is registered in `Store.__init__` and run through its `_run`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway import keys

if TYPE_CHECKING:
    import redis

    from gateway.store import Outcome


@dataclass(frozen=True)
class LimitCounter:
    """One of a number's start counters while its window runs."""

    kind: str  # 'number' (all clients), 'pair' (one client) or 'confirm' (confirm calls)
    client: str  # a pair's client ('' for the others, and for a start that named none)
    count: int
    seconds_left: int


@dataclass(frozen=True)
class _Found:
    """A number's counters as read: the live ones, every field of the number in each limits hash,
    and its counters that are keys of their own."""

    counters: list[LimitCounter]
    fields: dict[str, list[str]]
    own: list[str]


class ConsoleStore:
    """`Store`'s methods for the operators' console, metrics and reports (split off for size)."""

    redis: redis.Redis

    # Store's own, which these methods build on.
    def _run(self, name: str, script_keys: list[str], *args: object) -> Outcome: ...

    # Console sessions are server-side, keyed by a digest of the cookie.
    def session_save(self, digest: str, fields: Mapping[str, str], ttl: int) -> None:
        """Create (or refresh) a console session."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(keys.console_session(digest), mapping=dict(fields))
        pipe.expire(keys.console_session(digest), ttl)
        pipe.execute()

    def session_load(self, digest: str, ttl: int) -> dict[str, str] | None:
        """A console session's fields (sliding expiry), or None."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(keys.console_session(digest))
        pipe.expire(keys.console_session(digest), ttl)
        raw = pipe.execute()[0]
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    def session_drop(self, digest: str) -> None:
        """End a console session."""
        self.redis.delete(keys.console_session(digest))

    def set_flag(self, kind: str, number: str, why: str = "1") -> None:
        """Mark a number (kind 'optout': it replied STOP), saying why; one command, atomic by itself."""
        self.redis.set(keys.flag(kind, number), why)

    def clear_flag(self, kind: str, number: str) -> None:
        """Lift a mark set with set_flag."""
        self.redis.delete(keys.flag(kind, number))

    def has_flag(self, kind: str, number: str) -> bool:
        """Whether a number carries a mark."""
        return bool(self.redis.exists(keys.flag(kind, number)))

    def flag(self, kind: str, number: str) -> tuple[str, int] | None:
        """A number's mark (its value and seconds left, -1 for none), or None when unmarked."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.flag(kind, number))
        pipe.ttl(keys.flag(kind, number))
        value, ttl = pipe.execute()
        return None if value is None else (value.decode(), int(ttl))

    def _limit_fields(self, number: str, window: int) -> _Found:
        # Console-only: a number's pairs are found by scanning its shard of the limits hashes
        # (this window generation's and the last's: admit.lua), never on a request path.
        seconds = int(self.redis.time()[0])
        number_field = keys.limit_field("number", number)
        pair_prefix = keys.limit_field("pair", number, "")
        values: dict[str, str] = {}
        fields: dict[str, list[str]] = {}
        for generation in (seconds // window - 1, seconds // window):  # this generation's last: it wins
            key = keys.limits(generation, number_field)
            found = {f.decode(): v.decode() for f, v in self.redis.hscan_iter(key, match=f"{pair_prefix}*", count=1000)}
            mine = self.redis.hget(key, number_field)
            if mine is not None:
                found[number_field] = mine.decode()
            fields[key] = list(found)
            values |= found
        counters = []
        for field, value in sorted(values.items()):
            count, ends = (int(part) for part in value.split(":"))
            if ends > seconds:
                kind, client = ("number", "") if field == number_field else ("pair", field[len(pair_prefix):])
                counters.append(LimitCounter(kind, client, count, ends - seconds))
        confirm = keys.limit("confirm", number)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(confirm)
        pipe.ttl(confirm)
        count, ttl = pipe.execute()
        if count is not None:
            counters.append(LimitCounter("confirm", "", int(count), int(ttl)))
        return _Found(counters, fields, [confirm])

    def limit_counters(self, number: str, window: int) -> list[LimitCounter]:
        """The abuse limits' start counters of a number whose window runs: the number's own, one
        per client (pair) and the confirm-call one (window: RATE_LIMIT_WINDOW)."""
        return self._limit_fields(number, window).counters

    def clear_limit_counters(self, number: str, window: int) -> list[LimitCounter]:
        """Reset a number's start counters; those whose window ran."""
        found = self._limit_fields(number, window)
        pipe = self.redis.pipeline(transaction=True)
        for key, fields in found.fields.items():
            if fields:
                pipe.hdel(key, *fields)
        pipe.delete(*found.own)
        pipe.execute()
        return found.counters

    def record_action(self, fields: Mapping[str, str]) -> None:
        """Append an operator's action to its stream, trimmed by age like the audit stream."""
        self._run("record_action", [keys.ACTIONS], *(item for kv in fields.items() for item in kv))

    def actions(self, count: int) -> list[tuple[str, dict[str, str]]]:
        """The newest operator actions, newest first (id, fields)."""
        return [
            (entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()})
            for entry_id, fields in self.redis.xrevrange(keys.ACTIONS, count=count)
        ]


    def counters(self) -> dict[str, dict[str, int]]:
        """Cluster-wide counters kept in Redis by the scripts and jobs."""
        pipe = self.redis.pipeline(transaction=False)
        names = ("started", "ended", "carrier_errors", "fallbacks")
        for name in names:
            pipe.hgetall(keys.metrics(name))
        return {
            name: {k.decode(): int(v) for k, v in values.items()}
            for name, values in zip(names, pipe.execute())
        }

    def count(self, name: str, label: str) -> None:
        """Add one to a cluster-wide counter."""
        self.redis.hincrby(keys.metrics(name), label, 1)

    def audit_entries(
        self, newest: str, oldest: str, count: int, stream: str = keys.AUDIT
    ) -> list[tuple[str, dict[str, str]]]:
        """Entries of an audit stream (gw:audit, or keys.USER_AUDIT) between two stream ids
        (XREVRANGE bounds), newest first."""
        return [
            (entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()})
            for entry_id, fields in self.redis.xrevrange(stream, newest, oldest, count=count)
        ]

    def usage_counters(self, names: list[str]) -> list[dict[str, int]]:
        """Usage counter hashes (names after 'gw:usage:'), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.usage(name))
        return [{k.decode(): int(v) for k, v in raw.items()} for raw in pipe.execute()]
