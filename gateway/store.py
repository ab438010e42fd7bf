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
from gateway.models import Attempt, AttemptStatus, Channel, Reason, Status, Verification
from gateway.oath import Algorithm, Params, StoredToken, UserMethods
from gateway.send_store import SendQueue

# Key names live in gateway/keys.py; these names stay for the modules that import them.
AUDIT_STREAM = keys.AUDIT
ACTIONS_STREAM = keys.ACTIONS
USER_AUDIT_STREAM = keys.USER_AUDIT
REPLICATION_MARK = keys.REPLICATION_MARK
OUTBOX = keys.OUTBOX
TIMERS = keys.TIMERS
OUTBOX_KICK = keys.OUTBOX_KICK
key_for = keys.verification
user_key = keys.user
token_key = keys.token
reply_key = keys.reply
inbound_key = keys.inbound
done_channel = keys.done_channel
# Scripts that start or can end a verification, or record a send: with REDIS_WAIT_REPLICAS, WAIT
# follows them in one pipeline.
WAITED_SCRIPTS = frozenset({"create", "start", "check", "finish", "advance", "sent"})
# Scripts that can end a verification (prelude.lua finish(), also through expire_if_due): they
# get its ending keys (keys.ending) last in KEYS.
ENDING_SCRIPTS = frozenset({"check", "finish", "advance", "set_code", "reply_index"})
SETTLE_TRIES = 10  # a read-then-script change retried this often while the data changes under it
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
    """A user's check allowance: the window counter a code check or confirmation is counted on."""

    key: str
    limit: int
    window: int


@dataclass(frozen=True)
class Conversion:
    """What an approving check counts in its own script (abuse.md): its keys (the number's
    converted mark, the current pumping buckets, chosen at `bucket` of `size` seconds) and how."""

    converted: str
    prefix_bucket: str
    country_bucket: str
    bucket: int
    size: int
    window: int
    buckets: int
    memory: int
    user: str


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


@dataclass(frozen=True)
class Proof:
    """What a change to a user's methods offers as proof: an approved verification and/or the admin scope."""

    verification_id: str | None
    admin: bool
    max_age: int

    def key(self, user_id: str) -> str:
        """The proving verification's key (the user's own key stands for none)."""
        return key_for(self.verification_id) if self.verification_id else user_key(user_id)

    def args(self) -> tuple[object, ...]:
        """The script arguments: max age, admin flag, verification id."""
        return self.max_age, "1" if self.admin else "0", self.verification_id or ""


def _server_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return ""


class Store(SendQueue):
    """The gateway's storage: one Redis, atomic changes through registered Lua scripts."""

    def __init__(
        self, connection: redis.Redis, server_name: str, audit_retention: int, retention: int,
        wait: tuple[int, int] = (0, 0),
    ) -> None:
        self.redis = connection
        self.wait_replicas, self.wait_ms = wait
        self.server_name = server_name
        self.server_ip = _server_ip()
        self.audit_retention_ms = audit_retention * 1000
        self.retention = retention
        prelude = (_LUA / "prelude.lua").read_text()
        self._scripts = {
            name: connection.register_script(prelude + (_LUA / f"{name}.lua").read_text())
            for name in ("create", "finish", "attempt_status", "advance", "set_code", "reply_index",
                         "claim", "sent", "send_later")
        }
        # An approving check counts its conversion itself (conversion_lib.lua, shared with convert.lua).
        self._scripts["check"] = connection.register_script(
            prelude + (_LUA / "conversion_lib.lua").read_text() + (_LUA / "check.lua").read_text())
        self._scripts.update(
            (name, connection.register_script(prelude + (_LUA / f"{name}.lua").read_text()))
            for name in ("totp_use", "tokens_import", "token_assign", "record_action", "check_gate")
        )
        # A start is one call: admit.lua (on abuse_lib.lua, its request the last argument, its keys
        # after create's) and, only when it admits, create.lua. Answers {admission} or
        # {admission, create's reply}.
        self._scripts["start"] = connection.register_script(
            prelude + "local function admit(ARGV)\n" + (_LUA / "abuse_lib.lua").read_text()
            + (_LUA / "admit.lua").read_text() + "\nend\n"
            + "local function create()\n" + (_LUA / "create.lua").read_text() + "\nend\n"
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
        reply, replicated = self._call(name, self._declared(name, script_keys), self._context() + [str(a) for a in args])
        if name == "start":  # {admission} when it did not admit, else {admission, create's reply}
            admission = tuple(v.decode() if isinstance(v, bytes) else str(v) for v in reply[0])  # type: ignore[union-attr]
            if len(reply) == 1:  # 'refused' or 'clock' (then the value is Redis's time)
                return Outcome(admission[0], admission[1], replicated=replicated, admission=admission)
            return replace(self.outcome(reply[1], replicated), admission=admission)  # type: ignore[arg-type]
        return self.outcome(reply, replicated)

    @staticmethod
    def outcome(reply: list[object], replicated: bool = True) -> Outcome:
        """A script's reply (kind, value, '_now', time, then the record's fields) as an Outcome."""
        kind, value = (v.decode() if isinstance(v, bytes) else str(v) for v in reply[:2])  # type: ignore[union-attr]
        raw = dict(zip(reply[2::2], reply[3::2]))
        now = float(raw.pop(b"_now", 0))
        return Outcome(kind, value, _decode(raw) if raw else None, replicated, now)

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
        admission: Callable[[int], tuple[list[str], str]] | None = None,
    ) -> Outcome:
        """Create a verification with its first delivery due now, unless idempotency, a live one or a
        block says otherwise. chains: the plan for a number that may get SMS, and for one that
        replied STOP. admission: the send's admission (gateway/abuse.py: its keys and request, given
        how many keys come before them), run first in the same call; kind 'refused' or 'clock' when
        it did not admit (nothing created); its answer in .admission."""
        vf = key_for(verification_id)
        idem_key, body_hash = (keys.idempotency(idempotency[0]), idempotency[1]) if idempotency else (vf, "")
        pairs = [str(item) for kv in fields.items() for item in kv]
        script_keys = [vf, idem_key, keys.block(to), keys.optout(to), keys.live(live_key) if live_key else vf,
                       OUTBOX, TIMERS, keys.metrics("started")]
        admit_keys, request = admission(len(script_keys)) if admission else ([], None)
        return self._run(
            "create" if request is None else "start", script_keys + admit_keys,
            body_hash, 86400, verification_id,
            json.dumps(chains[0].channels), chains[0].ttl, json.dumps(chains[1].channels), chains[1].ttl,
            OUTBOX_KICK, *pairs, *([request] if request is not None else []),
        )

    def load(self, verification_id: str) -> Verification | None:
        """The verification with its attempts, or None when unknown or expired away."""
        raw = self.redis.hgetall(key_for(verification_id))
        return _decode(raw) if raw else None

    def live(self, live_key: str) -> str | None:
        """The id last started under a live key (see create), if the key is still kept."""
        found = self.redis.get(keys.live(live_key))
        return found.decode() if found else None

    def check(
        self, verification_id: str, mode: str, *values: str, user_id: str | None = None,
        message: tuple[str, int] | None = None, allowance: Allowance | None = None,
        conversion: Conversion | None = None,
    ) -> Outcome:
        """Atomically compare a code's digests (one per key), apply a verdict, or use one of a user's
        recovery codes; count failures. message: (MessageSid, ttl) of an inbound SMS carrying the
        code: kind 'repeat' when it was checked before. allowance: count the check against it
        first; kind 'refused' (value: seconds to wait) when it is used up. conversion: counted by
        an approval when Redis's time (Outcome.now) is in its bucket (abuse.counted)."""
        vf = key_for(verification_id)
        script_keys = [vf, AUDIT_STREAM, TIMERS, user_key(user_id) if user_id else vf,
                       inbound_key(message[0]) if message else vf, allowance.key if allowance else vf,
                       keys.metrics("refused")]
        script_keys += ([conversion.converted, conversion.prefix_bucket, conversion.country_bucket]
                        if conversion else [vf, vf, vf])
        limit = (allowance.limit, allowance.window) if allowance else ("", "")
        counted = "" if conversion is None else json.dumps(
            {k: getattr(conversion, k) for k in ("bucket", "size", "window", "buckets", "memory", "user")})
        return self._run("check", script_keys, mode, message[1] if message else "", *limit, counted, *values)

    def count_confirmation(self, user_id: str, allowance: Allowance | None) -> Outcome:
        """Count an authenticator confirmation against the user's check allowance: kind 'ok' (value:
        Redis's time, to match the code against) or 'refused' (value: seconds to wait)."""
        user = user_key(user_id)
        return self._run(
            "check_gate", [user, allowance.key if allowance else user, keys.metrics("refused"), AUDIT_STREAM],
            allowance.limit if allowance else "", allowance.window if allowance else "", user_id,
        )

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
        self, verification_id: str, attempt: int, status: AttemptStatus, rank: int, error_code: int | None, sid: str | None
    ) -> Outcome:
        """Move an attempt's status forward (never backward); value = the status now."""
        return self._run(
            "attempt_status", [key_for(verification_id)],
            attempt, status.value, rank, "" if error_code is None else error_code, sid or "",
        )

    def advance(self, verification_id: str, failed_attempt: int, step: Step) -> Outcome:
        """Start the next attempt (or fail the verification) once per failed attempt.

        Kinds: advanced (value: the new attempt), ended, stale, finished, not_found, and for
        a resend too_soon (value: seconds to wait), for a deadline not_due.
        """
        return self._run(
            "advance", [key_for(verification_id), AUDIT_STREAM, OUTBOX, TIMERS],
            failed_attempt, step.channel.value if step.channel else "", step.position, step.ttl, step.why,
            "" if step.error_code is None else step.error_code,
            "" if step.resend_interval is None else step.resend_interval, "1" if step.deadline_due else "0",
            "" if step.latest is None else f"{step.latest:.6f}", OUTBOX_KICK,
        )

    def set_flag(self, kind: str, number: str, why: str = "1") -> None:
        """Mark a number (kind 'optout': it replied STOP), saying why; one command, atomic by itself."""
        self.redis.set(keys.flag(kind, number), why)

    def clear_flag(self, kind: str, number: str) -> None:
        """Lift a mark set with set_flag."""
        self.redis.delete(keys.flag(kind, number))

    def has_flag(self, kind: str, number: str) -> bool:
        """Whether a number carries a mark."""
        return bool(self.redis.exists(keys.flag(kind, number)))

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
        self, newest: str, oldest: str, count: int, stream: str = AUDIT_STREAM
    ) -> list[tuple[str, dict[str, str]]]:
        """Entries of an audit stream (gw:audit, or USER_AUDIT_STREAM) between two stream ids
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

    # -- the operators' console: server-side sessions, keyed by a digest of the cookie ------
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

    def flag(self, kind: str, number: str) -> tuple[str, int] | None:
        """A number's mark (its value and seconds left, -1 for none), or None when unmarked."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.flag(kind, number))
        pipe.ttl(keys.flag(kind, number))
        value, ttl = pipe.execute()
        return None if value is None else (value.decode(), int(ttl))

    def limit_counters(self, number: str) -> dict[str, tuple[int, int]]:
        """The abuse limits' start counters of a number (key: (count, seconds left)): the
        number's own, one per client (pair) and the confirm-call one."""
        found = [keys.limit("number", number), keys.limit("confirm", number)]
        # Console-only: the pair keys of one number are found by a SCAN, never on a request path.
        found += [k.decode() for k in self.redis.scan_iter(match=keys.limit_pattern("pair", number), count=1000)]
        pipe = self.redis.pipeline(transaction=False)
        for key in found:
            pipe.get(key)
            pipe.ttl(key)
        replies = pipe.execute()
        return {key: (int(replies[2 * i]), int(replies[2 * i + 1]))
                for i, key in enumerate(found) if replies[2 * i] is not None}

    def clear_keys(self, names: list[str]) -> int:
        """Delete keys; how many existed."""
        return int(self.redis.delete(*names)) if names else 0

    def record_action(self, fields: Mapping[str, str]) -> None:
        """Append an operator's action to its stream, trimmed by age like the audit stream."""
        self._run("record_action", [ACTIONS_STREAM], *(item for kv in fields.items() for item in kv))

    def actions(self, count: int) -> list[tuple[str, dict[str, str]]]:
        """The newest operator actions, newest first (id, fields)."""
        return [
            (entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()})
            for entry_id, fields in self.redis.xrevrange(ACTIONS_STREAM, count=count)
        ]

    # -- users' own methods (authenticator apps, OATH tokens) ---------------------------
    def user_methods(self, user_id: str) -> UserMethods:
        """The user's app secret and assigned tokens (secrets still encrypted)."""
        raw = {k.decode(): v.decode() for k, v in self.redis.hgetall(user_key(user_id)).items()}
        serials = sorted(f[len("token:"):] for f in raw if f.startswith("token:"))
        tokens = tuple(t for t in self.tokens(serials) if t is not None and t.user_id == user_id)
        last = raw.get("app:last")
        return UserMethods(
            user_id, raw.get("app") or None, int(last) if last else None, tokens, known=bool(raw),
            pending_secret_encrypted=raw.get("pending") or None,
            pending_expires=float(raw.get("pending:exp") or 0),
            recovery_codes=sum(1 for f in raw if f.startswith("rc:")),
        )

    def tokens(self, serials: list[str]) -> list[StoredToken | None]:
        """Token records by serial (None for an unknown serial), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for serial in serials:
            pipe.hgetall(token_key(serial))
        return [_decode_token(serial, raw) if raw else None for serial, raw in zip(serials, pipe.execute())]

    def enrol_pending(self, user_id: str, secret_encrypted: str, ttl: int) -> float:
        """Set the user's pending authenticator (it approves nothing yet); when it expires."""
        return float(self._run("totp_enrol", [user_key(user_id)], secret_encrypted, ttl).value)

    def confirm_app(self, user_id: str, pending_encrypted: str, step: int | None, max_fails: int,
                    proof: Proof, recovery_digests: list[str]) -> Outcome:
        """Activate the pending authenticator if the step matched and any needed proof holds."""
        return self._run(
            "totp_confirm", [user_key(user_id), proof.key(user_id), USER_AUDIT_STREAM],
            user_id, pending_encrypted, "" if step is None else step, max_fails, *proof.args(), *recovery_digests,
        )

    def regenerate_recovery(self, user_id: str, proof: Proof, recovery_digests: list[str]) -> Outcome:
        """Replace the user's recovery codes, given the proof a replacement needs."""
        return self._run(
            "user_recovery", [user_key(user_id), proof.key(user_id), USER_AUDIT_STREAM],
            user_id, *proof.args(), *recovery_digests,
        )

    def use_step(self, user_id: str, serial: str | None, secret_encrypted: str, step: int) -> bool:
        """Record a matched time step of the app (serial None) or a token; False if not later than the last."""
        if serial is None:
            method, args = user_key(user_id), ("app", secret_encrypted, "", "app:last", step)
        else:
            method, args = token_key(serial), ("secret", secret_encrypted, user_id, "last", step)
        return self._run("totp_use", [method], *args).kind == "ok"

    def _settled(self, attempt: Callable[[], Outcome]) -> Outcome:
        """Run a read-then-script change again while the script finds the read outdated ('changed'):
        the keys such a script touches are found in data, so they are read first and declared."""
        for _ in range(SETTLE_TRIES):
            outcome = attempt()
            if outcome.kind != "changed":
                return outcome
        raise redis.exceptions.RedisError("the data kept changing under an OATH inventory change; try again")

    def reset_user(self, user_id: str) -> int:
        """Remove the user's app secret and unassign their tokens; how many methods went."""
        def attempt() -> Outcome:
            serials = [f.decode()[len("token:"):] for f in self.redis.hkeys(user_key(user_id)) if f.startswith(b"token:")]
            return self._run("user_reset", [user_key(user_id), USER_AUDIT_STREAM, *map(token_key, serials)],
                             user_id, *serials)
        return int(self._settled(attempt).value)

    def import_tokens(self, tokens: list[StoredToken], replace: bool) -> Outcome:
        """Write every token (and assignment) or none: kind 'ok', or 'exists' naming a serial."""
        def attempt() -> Outcome:
            pipe = self.redis.pipeline(transaction=False)
            for t in tokens:
                pipe.hget(token_key(t.serial), "user")
            owners = [(o or b"").decode() for o in pipe.execute()]
            args: list[object] = ["1" if replace else "0", len(tokens)]
            for t, owner in zip(tokens, owners):
                p = t.params
                args += [t.serial, t.secret_encrypted, p.digits, p.period, p.algorithm.value, p.drift, t.user_id or "",
                         owner]
            users = sorted({u for u in owners if u} | {t.user_id for t in tokens if t.user_id})
            return self._run("tokens_import", [token_key(t.serial) for t in tokens] + [user_key(u) for u in users],
                             *args, *users)
        return self._settled(attempt)

    def assign_token(self, serial: str, user_id: str | None) -> Outcome:
        """Assign a token to a user (None: unassign); the kind says what happened (or not_found)."""
        def attempt() -> Outcome:
            token = token_key(serial)
            owner = (self.redis.hget(token, "user") or b"").decode()
            return self._run("token_assign", [token, user_key(owner) if owner else token,
                                              user_key(user_id) if user_id else token], serial, user_id or "", owner)
        return self._settled(attempt)


def _decode_token(serial: str, raw: Mapping[bytes, bytes]) -> StoredToken:
    h = {k.decode(): v.decode() for k, v in raw.items()}
    params = Params(int(h["digits"]), int(h["period"]), Algorithm(h["algorithm"]), int(h.get("drift") or 0))
    return StoredToken(serial, h["secret"], params, h.get("user") or None, int(h["last"]) if h.get("last") else None)


def _decode(raw: Mapping[bytes, bytes]) -> Verification:
    h = {k.decode(): v.decode() for k, v in raw.items()}
    attempts = []
    for i in range(1, int(h.get("n", "0")) + 1):
        p = f"a{i}:"
        attempts.append(
            Attempt(
                number=i,
                channel=Channel(h[p + "ch"]),
                status=AttemptStatus(h[p + "st"]),
                error_code=int(h[p + "err"]) if h.get(p + "err") else None,
                started_at=float(h[p + "at"]),
                sid=h.get(p + "sid") or None,
                ended_because=h.get(p + "why") or None,
            )
        )
    return Verification(
        id=h["id"],
        status=Status(h["status"]),
        reason=Reason(h["reason"]) if h.get("reason") else None,
        to=h["to"],
        country=h.get("country", ""),
        number_type=h.get("ntype", "unknown"),
        channel=Channel(h["channel"]),
        channels=[Channel(c) for c in json.loads(h["chain"])],
        position=int(h.get("pos", "0")),
        created_at=float(h["created"]),
        expires_at=float(h["expires"]),
        max_attempts=int(h["max"]),
        failures=int(h.get("fails", "0")),
        attempts=attempts,
        user_id=h.get("user_id") or None,
        locale=h.get("locale", "en"),
        ivr_mode=h.get("ivr_mode", "confirm"),
        client_ip=h.get("client_ip") or None,
        code_encrypted=h.get("enc", ""),
        deadline=float(h["deadline"]) if h.get("deadline") else None,
        code_length=int(h["o_len"]) if h.get("o_len") else None,
        code_ttl=int(h["o_ttl"]) if h.get("o_ttl") else None,
        code_kept=h.get("keep", ""),
        org_name=h.get("o_org") or None,
        share_warning={"1": True, "0": False}.get(h.get("o_warn", "")),
        delivery_deadline=int(h["o_dd"]) if h.get("o_dd") else None,
        voice=h.get("o_voice") or None,
        tags={k[2:]: v for k, v in h.items() if k.startswith("x_")},
    )
