"""Every Redis command of the gateway: key names, Lua scripts, loading records."""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import redis

from gateway import keys
from gateway.models import AttemptStatus, Channel, Reason, Status, Verification
from gateway.records import decode
from gateway.console_store import ConsoleStore
from gateway.send_store import SendQueue
from gateway.user_store import UserStore

# Key names live in gateway/keys.py; these names stay for the modules that import them.
AUDIT_STREAM = keys.AUDIT
USER_AUDIT_STREAM = keys.USER_AUDIT
REPLICATION_MARK = keys.REPLICATION_MARK
OUTBOX = keys.OUTBOX
TIMERS = keys.TIMERS
OUTBOX_WAKE = keys.OUTBOX_WAKE
key_for = keys.verification
user_key = keys.user
reply_key = keys.reply
inbound_key = keys.inbound
done_channel = keys.done_channel
# Scripts that start or can end a verification, or record a send: with REDIS_WAIT_REPLICAS, WAIT
# follows them in one pipeline.
WAITED_SCRIPTS = frozenset({"create", "start", "check", "finish", "advance", "sent"})
# Scripts that can end a verification (prelude.lua finish(), also through expire_if_due): they
# get its ending keys (keys.ending) last in KEYS.
ENDING_SCRIPTS = frozenset({"check", "finish", "advance", "set_code", "reply_index"})
_LUA = Path(__file__).with_name("lua")


@dataclass(frozen=True)
class Chain:
    """A planned channel chain and how long its first channel's attempt stays valid (s)."""

    channels: list[str]
    ttl: int


@dataclass(frozen=True)
class Step:
    """The move from a failed (or resent) attempt to the next channel; channel None ends it."""

    channel: Channel | None
    position: int
    ttl: int
    why: str
    error_code: int | None = None
    resend_interval: int | None = None  # a resend: refused until this long after the attempt began
    deadline_due: bool = False  # a delivery deadline: refused unless it has passed
    latest: float | None = None  # the next attempt expires no later than this (Redis time)


@dataclass(frozen=True)
class Allowance:
    """A user's check allowance: the window counter a code check or confirmation is counted on
    ("" when the user is not yet known: the check script names them)."""

    key: str
    limit: int
    window: int


@dataclass(frozen=True)
class Outcome:
    """What a script did (kind, value) and the record as it stands afterwards."""

    kind: str
    value: str = ""
    verification: Verification | None = None
    replicated: bool = True  # False: fewer replicas than REDIS_WAIT_REPLICAS confirmed it in time
    now: float = 0.0  # Redis's clock when the script ran (0 for scripts that do not say)
    admission: tuple[str, ...] = ()  # a start's admission answer (admit.lua), run in the same call

    @property
    def audit(self) -> str | None:
        """The audit record (JSON) when this change ended the verification."""
        return self.value if self.kind in ENDING else None


ENDING = frozenset({"ended", "valid", "invalid_ended"})


def _server_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return ""


class Store(SendQueue, UserStore, ConsoleStore):
    """The gateway's storage: one Redis, atomic changes through registered Lua scripts."""

    def __init__(
        self, connection: redis.Redis, server_name: str, audit_retention: int, retention: int,
        wait: tuple[int, int] = (0, 0), previous_release_records: bool = False,
    ) -> None:
        self.redis = connection
        # Records a release before the compact record can read (`id`, `a1:at`; create.lua).
        self.previous_release_records = previous_release_records
        self.wait_replicas, self.wait_ms = wait
        self.server_name = server_name
        self.server_ip = _server_ip()
        self.audit_retention_ms = audit_retention * 1000
        self.retention = retention
        prelude = (_LUA / "prelude.lua").read_text()
        self._scripts = {
            name: connection.register_script(prelude + (_LUA / f"{name}.lua").read_text())
            for name in ("finish", "attempt_status", "advance", "set_code", "reply_index",
                         "claim", "reschedule", "sent", "send_later")
        }
        live_lib = (_LUA / "live_lib.lua").read_text()
        self._scripts["create"] = connection.register_script(prelude + live_lib + (_LUA / "create.lua").read_text())
        self._scripts["check"] = connection.register_script(prelude + (_LUA / "check.lua").read_text())
        self._scripts.update(
            (name, connection.register_script(prelude + (_LUA / f"{name}.lua").read_text()))
            for name in ("totp_use", "tokens_import", "token_assign", "record_action", "check_gate")
        )
        # A start is one call: admit.lua (on abuse_lib.lua and conversion_lib.lua, its request the
        # last argument, its keys after create's) and, only when it admits, create.lua. Answers
        # {admission} or {admission, create's reply}.
        self._scripts["start"] = connection.register_script(
            prelude + live_lib + "local function admit(ARGV)\n" + (_LUA / "abuse_lib.lua").read_text()
            + (_LUA / "conversion_lib.lua").read_text() + (_LUA / "admit.lua").read_text() + "\nend\n"
            + "local function create()\n" + (_LUA / "create.lua").read_text() + "\nend\n"
            + "if live_moved() then return {{'changed', ''}} end\n"  # before anything is counted
            + "local admitted = admit({table.remove(ARGV)})\n"
            + "if admitted[1] ~= 'ok' then return {admitted} end\n"
            + "return {admitted, create()}\n")
        user_lib = prelude + (_LUA / "user_lib.lua").read_text()
        self._scripts.update(
            (name, connection.register_script(user_lib + (_LUA / f"{name}.lua").read_text()))
            for name in ("totp_enrol", "totp_confirm", "user_recovery", "user_reset")
        )

    def _context(self) -> list[object]:
        # No clock here: the scripts read Redis's TIME (prelude.lua).
        return [self.server_name, self.server_ip, self.audit_retention_ms, self.retention]

    @staticmethod
    def _declared(name: str, script_keys: list[str]) -> list[str]:
        """A script's KEYS: with the ending keys last for one that can end the verification in KEYS[1]."""
        if name not in ENDING_SCRIPTS:
            return script_keys
        return script_keys + keys.ending(script_keys[0][len(key_for("")):], time.time())

    def _run(self, name: str, script_keys: list[str], *args: object) -> Outcome:
        values = [a if isinstance(a, bytes) else str(a) for a in args]  # bytes: a packed request, as it is
        reply, replicated = self._call(name, self._declared(name, script_keys), self._context() + values)
        if name == "start":  # {admission} when it did not admit, else {admission, create's reply}
            admission = tuple(v.decode() if isinstance(v, bytes) else str(v) for v in reply[0])  # type: ignore[union-attr]
            if len(reply) == 1:  # 'refused' or 'clock' (then the value is Redis's time)
                return Outcome(admission[0], admission[1], replicated=replicated, admission=admission)
            return replace(self.outcome(reply[1], replicated), admission=admission)  # type: ignore[arg-type]
        return self.outcome(reply, replicated)

    @staticmethod
    def outcome(reply: list[object], replicated: bool = True) -> Outcome:
        """A script's reply (kind, value, then Redis's time, the record's id and its fields, as far
        as the script answers them: prelude.lua reply()) as an Outcome."""
        kind, value = (v.decode() if isinstance(v, bytes) else str(v) for v in reply[:2])  # type: ignore[union-attr]
        now = float(reply[2]) if len(reply) > 2 else 0.0  # type: ignore[arg-type]
        fields = reply[4] if len(reply) > 4 else None
        if not fields:  # no record answered, or none in Redis
            return Outcome(kind, value, None, replicated, now)
        raw = dict(zip(fields[0::2], fields[1::2]))  # type: ignore[index]
        return Outcome(kind, value, decode(raw, reply[3].decode()), replicated, now)  # type: ignore[union-attr]

    def _call(self, name: str, script_keys: list[str], args: list[object]) -> tuple[list[object], bool]:
        """Run a script; with REDIS_WAIT_REPLICAS, WAIT for replicas on the same connection (a pipeline)."""
        if not self.wait_replicas or name not in WAITED_SCRIPTS:
            return self._scripts[name](keys=script_keys, args=args), True
        replies, confirmed = self._pipelined([(name, script_keys, args)])
        return replies[0], confirmed  # type: ignore[return-value]

    def _pipelined(self, calls: list[tuple[str, list[str], list[object]]]) -> tuple[list[object], bool]:
        """Run scripts in one round trip, then (with REDIS_WAIT_REPLICAS) PUBLISH + WAIT on the same
        connection: whether the replicas hold them and everything the primary held before."""
        for _ in range(2):
            # EVALSHA by hand: redis-py's pipelined Script asks SCRIPT EXISTS first, a round trip each time.
            pipe = self.redis.pipeline(transaction=False)
            for name, script_keys, args in calls:
                pipe.evalsha(self._scripts[name].sha, len(script_keys), *script_keys, *args)
            if self.wait_replicas:
                pipe.publish(REPLICATION_MARK, "")
                pipe.wait(self.wait_replicas, self.wait_ms)
            try:
                replies = pipe.execute()
            except redis.exceptions.NoScriptError:
                for name in {name for name, _, _ in calls}:  # a restarted or promoted Redis: load them, again
                    self.redis.script_load(self._scripts[name].script)
                continue
            if not self.wait_replicas:
                return replies, True
            return replies[:len(calls)], int(replies[-1]) >= self.wait_replicas
        raise redis.exceptions.NoScriptError("the scripts could not be loaded")

    def create(
        self,
        verification_id: str,
        fields: Mapping[str, object],
        chains: tuple[Chain, Chain],
        to: str,
        idempotency: tuple[str, str] | None,
        live_key: str | None = None,
        admission: Callable[[int], tuple[list[str], bytes]] | None = None,
    ) -> Outcome:
        """Create a verification with its first delivery due now, unless idempotency, a live one or a
        block says otherwise. chains: the plan for a number that may get SMS, and for one that
        replied STOP. admission: the send's admission (gateway/abuse.py: its keys and request, given
        how many keys come before them), run first in the same call; kind 'refused' or 'clock' when
        it did not admit (nothing created); its answer in .admission."""
        vf = key_for(verification_id)
        idem_key, body_hash = (keys.idempotency(idempotency[0]), idempotency[1]) if idempotency else (vf, "")
        pairs = [str(item) for kv in fields.items() for item in kv]
        if self.previous_release_records:
            pairs += ["id", verification_id]

        def attempt() -> Outcome:
            # A live key names a verification found in data: read it first and declare its record
            # (one more round trip, for /v2 starts only); the script answers 'changed' if it moved.
            current = self.live(live_key) if live_key else None
            script_keys = [vf, idem_key, keys.block(to), keys.optout(to), keys.live(live_key) if live_key else vf,
                           OUTBOX, TIMERS, keys.metrics("started"), OUTBOX_WAKE, key_for(current) if current else vf]
            admit_keys, request = admission(len(script_keys)) if admission else ([], None)
            return self._run(
                "create" if request is None else "start", script_keys + admit_keys,
                body_hash, 86400, verification_id,
                json.dumps(chains[0].channels), chains[0].ttl, json.dumps(chains[1].channels), chains[1].ttl,
                *pairs, *([request] if request is not None else []),
            )
        return self._settled(attempt)

    def load(self, verification_id: str) -> Verification | None:
        """The verification with its attempts, or None when unknown or expired away."""
        raw = self.redis.hgetall(key_for(verification_id))
        return decode(raw, verification_id) if raw else None

    def live(self, live_key: str) -> str | None:
        """The id last started under a live key (see create), if the key is still kept."""
        found = self.redis.get(keys.live(live_key))
        return found.decode() if found else None

    def check(
        self, verification_id: str, mode: str, *values: str, user_id: str | None = None,
        message: tuple[str, int] | None = None, allowance: Allowance | None = None,
    ) -> Outcome:
        """Atomically compare a code's digests (one per key), apply a verdict, or use one of a user's
        recovery codes; count failures; an approval queues its conversion (prelude.lua finish()).
        message: (MessageSid, ttl) of an inbound SMS carrying the code: kind 'repeat' when it was
        checked before. allowance: count the check against it first; kind 'refused' (value: seconds
        to wait) when it is used up, and kind 'subject' (value: the user), nothing changed, when
        the verification names a user and the allowance's key (the caller did not know the user)
        is empty."""
        vf = key_for(verification_id)
        script_keys = [vf, AUDIT_STREAM, TIMERS, user_key(user_id) if user_id else vf,
                       inbound_key(message[0]) if message else vf, (allowance.key if allowance else "") or vf,
                       keys.metrics("refused")]
        limit = (allowance.limit, allowance.window) if allowance else ("", "")
        return self._run("check", script_keys, mode, message[1] if message else "", *limit, *values)

    def finish(
        self, verification_id: str, status: Status, reason: Reason | None, attempt: int = 0,
        only_if_due: bool = False, block: tuple[str, int] | None = None,
    ) -> Outcome:
        """End a pending verification, optionally only for a given attempt or once due.

        block: (its number, seconds): also block the number from new verifications, in the same step.
        """
        vf = key_for(verification_id)
        return self._run(
            "finish", [vf, AUDIT_STREAM, TIMERS, keys.block(block[0]) if block else vf],
            status.value, reason.value if reason else "", attempt, "1" if only_if_due else "0",
            block[1] if block else "", block[0] if block else "",
        )

    def attempt_status(
        self, verification_id: str, attempt: int, status: AttemptStatus, rank: int, error_code: int | None,
        sid: str | None, with_record: bool = True,
    ) -> Outcome:
        """Move an attempt's status forward (never backward); value = the status now. Without
        with_record the outcome carries no record (a status callback needs none)."""
        return self._run(
            "attempt_status", [key_for(verification_id)],
            attempt, status.value, rank, "" if error_code is None else error_code, sid or "", "1" if with_record else "",
        )

    def advance(self, verification_id: str, failed_attempt: int, step: Step) -> Outcome:
        """Start the next attempt (or fail the verification) once per failed attempt.

        Kinds: advanced (value: the new attempt), ended, stale, finished, not_found, and for
        a resend too_soon (value: seconds to wait), for a deadline not_due.
        """
        return self._run(
            "advance", [key_for(verification_id), AUDIT_STREAM, OUTBOX, TIMERS, OUTBOX_WAKE],
            failed_attempt, step.channel.value if step.channel else "", step.position, step.ttl, step.why,
            "" if step.error_code is None else step.error_code,
            "" if step.resend_interval is None else step.resend_interval, "1" if step.deadline_due else "0",
            "" if step.latest is None else f"{step.latest:.6f}",
        )

    # -- two-way SMS: which verification a reply belongs to, and inbound message dedupe ------
    def index_reply(
        self, verification_id: str, attempt: int, sender: str, number: str, ttl: int, keep: int = 10
    ) -> Outcome:
        """Note a two-way prompt from sender to number (kind 'ok', or 'stale'/'finished'/'not_found')."""
        return self._run(
            "reply_index", [key_for(verification_id), reply_key(sender, number), AUDIT_STREAM, TIMERS],
            attempt, ttl, keep,
        )

    def reply_candidates(self, senders: list[str], number: str, limit: int = 10) -> list[str]:
        """Ids of the verifications prompted from any of the senders to number, newest prompt first."""
        pipe = self.redis.pipeline(transaction=False)
        for sender in senders:
            pipe.zrevrange(reply_key(sender, number), 0, limit - 1, withscores=True)
        scored = {member.decode(): score for entries in pipe.execute() for member, score in entries}
        return sorted(scored, key=lambda vid: scored[vid], reverse=True)[:limit]

    def message_handled(self, message_sid: str) -> bool:
        """Whether an inbound message SID was handled already."""
        return bool(self.redis.exists(inbound_key(message_sid)))

    def mark_message(self, message_sid: str, ttl: int) -> None:
        """Note an inbound message SID as handled, for ttl seconds (one command: atomic by itself)."""
        self.redis.set(inbound_key(message_sid), "1", ex=ttl)

    @contextmanager
    def subscribe_done(self, verification_id: str) -> Iterator[redis.client.PubSub]:
        """A subscription that hears when the verification ends (for ?wait=)."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(done_channel(verification_id))
            yield pubsub
        finally:
            pubsub.close()
