"""The send queue's Redis access (part of `Store`): the outbox and the timers, claimed with a lease."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway import keys
from gateway.models import AttemptStatus, Verification

if TYPE_CHECKING:
    import redis

    from gateway.store import Outcome


@dataclass(frozen=True)
class CodeWrite:
    """One delivery's candidate code for set_code.lua: digest, encrypted copy, and its lifetimes."""

    verification_id: str
    attempt: int
    digest: str
    encrypted: str
    ttl: int
    deadline: int | None
    latest: float | None


@dataclass(frozen=True)
class Claim:
    """Members leased from a schedule, Redis's time then, the earliest due time left (None: empty),
    and the due time the lease gave the members (what `reschedule` compares)."""

    members: list[str]
    now: float
    next_due: float | None
    held: float


class SendQueue:
    """`Store`'s methods for the senders and the timers (split off for size; they use its scripts)."""

    redis: redis.Redis
    _scripts: dict[str, Any]

    # Store's own, which these methods build on.
    def _context(self) -> list[object]: ...
    def _declared(self, name: str, script_keys: list[str]) -> list[str]: ...
    def _run(self, name: str, script_keys: list[str], *args: object) -> Outcome: ...
    def _pipelined(self, calls: list[tuple[str, list[str], list[object]]]) -> tuple[list[object], bool]: ...
    def outcome(self, reply: list[object], replicated: bool = True) -> Outcome: ...

    def set_codes(self, writes: list[CodeWrite]) -> tuple[list[Outcome], bool]:
        """Give each delivery its attempt's code (set_code.lua), in one round trip: kind 'ok' (this
        one stored, valid ttl s from now), 'again' (a later try: the stored one), or
        stale/ended/finished/not_found (send nothing; the outbox entry is dropped). With
        REDIS_WAIT_REPLICAS, WAIT follows in the same pipeline: the second value says whether the
        replicas hold the codes and everything before them (the claim)."""
        calls = []
        for w in writes:
            args = [w.attempt, w.digest, w.encrypted, w.ttl, "" if w.deadline is None else w.deadline,
                    "" if w.latest is None else f"{w.latest:.6f}", f"{w.verification_id}:{w.attempt}"]
            vf = keys.verification(w.verification_id)
            script_keys = self._declared("set_code", [vf, keys.AUDIT, keys.OUTBOX, keys.TIMERS])
            calls.append(("set_code", script_keys, self._context() + [str(a) for a in args]))
        replies, confirmed = self._pipelined(calls)
        return [self.outcome(r) for r in replies], confirmed  # type: ignore[arg-type]

    def claim(self, schedule: str, most: int, lease: float) -> Claim:
        """Lease up to `most` due members of a schedule (the outbox or the timers) for `lease` seconds."""
        reply = self._scripts["claim"](keys=[schedule], args=self._context() + [most, f"{lease:.3f}"])
        now, head, held, *members = (v.decode() for v in reply)
        return Claim(members, float(now), float(head) if head else None, float(held))

    def load_many(self, verification_ids: list[str]) -> list[Verification | None]:
        """Verifications by id (None where unknown), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for verification_id in verification_ids:
            pipe.hgetall(keys.verification(verification_id))
        from gateway.store import _decode

        return [_decode(raw, vid) if raw else None for vid, raw in zip(verification_ids, pipe.execute())]

    def sent(self, verification_id: str, attempt: int, status: AttemptStatus, rank: int, sid: str | None) -> Outcome:
        """Record a send the carrier took: sid and status, out of the outbox, next timer set."""
        return self._run("sent", [keys.verification(verification_id), keys.OUTBOX, keys.TIMERS],
                         verification_id, attempt, status.value, rank, sid or "")

    def send_later(self, verification_id: str, attempt: int, backoff: float | None, intervals: tuple[int, ...]) -> Outcome:
        """Put a failed send back in the outbox: after `backoff` s without using a try up (throttled),
        else after the next retry interval; kind 'spent' when no try is left, 'stale' when moot."""
        return self._run("send_later", [keys.verification(verification_id), keys.OUTBOX], verification_id, attempt,
                         "" if backoff is None else f"{backoff:.3f}", *intervals)

    def release(self, entries: list[str], due: float) -> None:
        """Make claimed outbox entries due again at `due` (Redis time); XX: never revive a removed one."""
        if entries:
            self.redis.zadd(keys.OUTBOX, {entry: due for entry in entries}, xx=True)

    def due_now(self, verification_id: str, attempt: int | None = None) -> None:
        """Make an attempt's delivery (or, without one, the verification's timer) due at once; a
        moot one is dropped when claimed. One command: atomic by itself."""
        if attempt is None:
            self.redis.zadd(keys.TIMERS, {verification_id: 0})
        else:
            self.redis.zadd(keys.OUTBOX, {f"{verification_id}:{attempt}": 0})

    def drop(self, entries: list[str]) -> None:
        """Remove outbox entries that have nothing left to send (their verification ended or moved on)."""
        if entries:
            self.redis.zrem(keys.OUTBOX, *entries)

    def reschedule(self, schedule: str, member: str, held: float, due: float | None) -> bool:
        """Set a claimed member's next due time (Redis time), or drop it (None), only while it still
        holds the due time its claim gave it (`held`); whether it did (reschedule.lua)."""
        args = [member, repr(held), "" if due is None else repr(due)]
        return bool(self._scripts["reschedule"](keys=[schedule], args=self._context() + args))

    def backlog(self) -> int:
        """Outbox entries due by Redis's clock now (deliveries waiting for a sender)."""
        seconds, micros = self.redis.time()
        return int(self.redis.zcount(keys.OUTBOX, "-inf", seconds + micros / 1e6))
