"""The send queue's Redis access (part of `Store`): the outbox and the timers, claimed with a lease."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from gateway import keys
from gateway.models import AttemptStatus

if TYPE_CHECKING:
    from gateway.store import Outcome


@dataclass(frozen=True)
class CodeWrite:
    """One delivery's candidate code for set_code.lua (digest and encrypted copy), and what the
    script needs to decide the attempt's lifetimes from the record it reads."""

    verification_id: str
    attempt: int
    digest: str
    encrypted: str
    length: int | None  # the code was made without reading the record: its length (else None)
    rules: str  # per channel: lifetime, own lifetime applies, deadline applies, nothing sent (JSON)
    deadline: int  # the default delivery deadline (s)
    kept: bool = False  # the verification's kept code: its digest is kept beside it


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
        """Give each delivery its attempt's code (set_code.lua), in one round trip, and answer its
        record: kind 'ok' (this one stored, valid for its channel's lifetime; value 'kept': the
        verification's kept code instead), 'again' (a later try: the stored one), 'nothing' (a
        channel that sends nothing), 'kept' or 'length' (nothing written: the caller must choose
        the code from the record and ask again), or stale/ended/finished/not_found/sent (send
        nothing; the outbox entry is dropped). With REDIS_WAIT_REPLICAS, WAIT follows in the same
        pipeline: the second value says whether the replicas hold the codes and everything before
        them (the claim)."""
        calls = []
        for w in writes:
            args = [w.attempt, w.digest, w.encrypted, "" if w.length is None else w.length, w.rules, w.deadline,
                    f"{w.verification_id}:{w.attempt}", "1" if w.kept else ""]
            vf = keys.verification(w.verification_id)
            script_keys = self._declared("set_code", [vf, keys.AUDIT, keys.OUTBOX, keys.TIMERS])
            calls.append(("set_code", script_keys, self._context() + [str(a) for a in args]))
        replies, confirmed = self._pipelined(calls)
        return [self.outcome(r) for r in replies], confirmed  # type: ignore[arg-type]

    def claim(self, schedule: str, most: int, lease: float, wake: tuple[str, float] | None = None) -> Claim:
        """Lease up to `most` due members of a schedule (the outbox or the timers) for `lease` seconds.
        wake: (a wake-up list, seconds): first wait up to that long for a token on the list (BLPOP),
        in the same round trip (a pipeline: Redis runs the claim once the wait ends)."""
        args = self._context() + [most, f"{lease:.3f}"]
        reply = None
        if wake is not None:
            pipe = self.redis.pipeline(transaction=False)
            pipe.blpop([wake[0]], timeout=wake[1])
            pipe.evalsha(self._scripts["claim"].sha, 1, schedule, *args)
            try:
                reply = pipe.execute()[1]
            except redis.exceptions.NoScriptError:
                pass  # a restarted or promoted Redis: the claim alone below loads it (no second wait)
        if reply is None:
            reply = self._scripts["claim"](keys=[schedule], args=args)
        now, head, held, *members = (v.decode() for v in reply)
        return Claim(members, float(now), float(head) if head else None, float(held))

    def sent(self, verification_id: str, attempt: int, status: AttemptStatus, rank: int, sid: str | None) -> Outcome:
        """Record a send the carrier took: sid and status, out of the outbox, next timer set (the
        outcome carries no record: the sender needs none)."""
        return self._run("sent", [keys.verification(verification_id), keys.OUTBOX, keys.TIMERS],
                         verification_id, attempt, status.value, rank, sid or "")

    def send_later(self, verification_id: str, attempt: int, backoff: float | None, intervals: tuple[int, ...]) -> Outcome:
        """Put a failed send back in the outbox: after `backoff` s without using a try up (throttled),
        else after the next retry interval; kind 'spent' when no try is left, 'stale' when moot."""
        return self._run("send_later", [keys.verification(verification_id), keys.OUTBOX], verification_id, attempt,
                         "" if backoff is None else f"{backoff:.3f}", *intervals)

    def release(self, entries: list[str], due: float, held: float) -> None:
        """Make claimed outbox entries due again at `due` (Redis time), each only while it still holds
        its claim's lease (`held`): a sender that stalled past its lease must not cut short the
        newer lease of the sender that took the entry over, nor revive a removed one. A rare path
        (replicas not confirming a claim), so one reschedule.lua call per entry."""
        for entry in entries:
            self.reschedule(keys.OUTBOX, entry, held, due)

    def due_now(self, verification_id: str, attempt: int | None = None) -> None:
        """Make an attempt's delivery (or, without one, the verification's timer) due at once; a
        moot one is dropped when claimed. One command: atomic by itself."""
        if attempt is None:
            self.redis.zadd(keys.TIMERS, {verification_id: 0})
        else:
            self.redis.zadd(keys.OUTBOX, {f"{verification_id}:{attempt}": 0})

    def reschedule(self, schedule: str, member: str, held: float, due: float | None) -> bool:
        """Set a claimed member's next due time (Redis time), or drop it (None), only while it still
        holds the due time its claim gave it (`held`); whether it did (reschedule.lua)."""
        args = [member, repr(held), "" if due is None else repr(due)]
        return bool(self._scripts["reschedule"](keys=[schedule], args=self._context() + args))

    def backlog(self) -> int:
        """Outbox entries due by Redis's clock now (deliveries waiting for a sender)."""
        seconds, micros = self.redis.time()
        return int(self.redis.zcount(keys.OUTBOX, "-inf", seconds + micros / 1e6))
