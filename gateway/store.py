"""Every Redis command of the gateway: key names, Lua scripts, loading records."""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from gateway.models import Attempt, AttemptStatus, Channel, Reason, Status, Verification
from gateway.oath import Algorithm, Params, StoredToken, UserMethods

AUDIT_STREAM = "gw:audit"
ACTIONS_STREAM = "gw:actions"
USER_AUDIT_STREAM = "gw:audit:users"  # changes to users' methods: activations, replacements, resets
# Published (to no one) before WAIT, so WAIT covers everything the primary holds, also a record an
# earlier, unconfirmed request wrote (WAIT counts only the writes of its own connection).
REPLICATION_MARK = "gw:replicated"
# Scripts that can end a verification: with REDIS_WAIT_REPLICAS, WAIT follows them in one pipeline.
WAITED_SCRIPTS = frozenset({"check", "finish", "advance"})
_LUA = Path(__file__).with_name("lua")


def key_for(verification_id: str) -> str:
    """The hash that holds one verification."""
    return f"gw:vf:{verification_id}"


def user_key(user_id: str) -> str:
    """The hash of a user's own methods (app secret, assigned token serials)."""
    return f"gw:user:{user_id}"


def token_key(serial: str) -> str:
    """The hash of one imported OATH token."""
    return f"gw:token:{serial}"


def reply_key(sender: str, number: str) -> str:
    """The sorted set of two-way prompts from a gateway sender (number or MG SID) to a user."""
    return f"gw:reply:{sender}:{number}"


def done_channel(verification_id: str) -> str:
    """The pub/sub channel announcing that a verification ended."""
    return f"gw:done:{verification_id}"


@dataclass(frozen=True)
class Outcome:
    """What a script did (kind, value) and the record as it stands afterwards."""

    kind: str
    value: str = ""
    verification: Verification | None = None
    replicated: bool = True  # False: fewer replicas than REDIS_WAIT_REPLICAS confirmed it in time

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


class Store:
    """The gateway's storage: one Redis, atomic changes through registered Lua scripts."""

    def __init__(
        self, connection: redis.Redis, server_name: str, audit_retention: int, wait: tuple[int, int] = (0, 0)
    ) -> None:
        self.redis = connection
        self.wait_replicas, self.wait_ms = wait
        self.server_name = server_name
        self.server_ip = _server_ip()
        self.audit_retention_ms = audit_retention * 1000
        prelude = (_LUA / "prelude.lua").read_text()
        self._scripts = {
            name: connection.register_script(prelude + (_LUA / f"{name}.lua").read_text())
            for name in ("create", "check", "finish", "attempt_status", "advance", "set_code", "reply_index")
        }
        self._scripts.update(
            (name, connection.register_script(prelude + (_LUA / f"{name}.lua").read_text()))
            for name in ("totp_use", "tokens_import", "token_assign")
        )
        user_lib = prelude + (_LUA / "user_lib.lua").read_text()
        self._scripts.update(
            (name, connection.register_script(user_lib + (_LUA / f"{name}.lua").read_text()))
            for name in ("totp_enrol", "totp_confirm", "user_recovery", "user_reset")
        )

    def _run(self, name: str, keys: list[str], *args: object) -> Outcome:
        now = time.time()
        context = [f"{now:.6f}", self.server_name, self.server_ip, int(now * 1000 - self.audit_retention_ms)]
        reply, replicated = self._call(name, keys, context + [str(a) for a in args])
        kind, value = (v.decode() if isinstance(v, bytes) else str(v) for v in reply[:2])
        raw = dict(zip(reply[2::2], reply[3::2]))
        return Outcome(kind, value, _decode(raw) if raw else None, replicated)

    def _call(self, name: str, keys: list[str], args: list[object]) -> tuple[list[object], bool]:
        """Run a script; with REDIS_WAIT_REPLICAS, WAIT for replicas on the same connection (a pipeline)."""
        if not self.wait_replicas or name not in WAITED_SCRIPTS:
            return self._scripts[name](keys=keys, args=args), True
        with self.redis.pipeline(transaction=False) as pipe:
            self._scripts[name](keys=keys, args=args, client=pipe)
            reply, confirmed = self._wait(pipe)
        return reply, confirmed

    def _wait(self, pipe: redis.client.Pipeline) -> tuple[object, bool]:
        pipe.publish(REPLICATION_MARK, "")
        pipe.wait(self.wait_replicas, self.wait_ms)
        *replies, acknowledged = pipe.execute()
        return (replies[0] if len(replies) > 1 else None), int(acknowledged) >= self.wait_replicas

    def replicated(self) -> bool:
        """Whether REDIS_WAIT_REPLICAS replicas hold everything the primary holds now (True when 0)."""
        if not self.wait_replicas:
            return True
        with self.redis.pipeline(transaction=False) as pipe:
            return self._wait(pipe)[1]

    def create(
        self,
        verification_id: str,
        fields: Mapping[str, object],
        chains: tuple[list[str], list[str]],
        to: str,
        idempotency: tuple[str, str] | None,
        key_ttl: int,
        live_key: str | None = None,
    ) -> Outcome:
        """Create a verification unless idempotency, a live one or a block says otherwise (limits: gateway/abuse.py)."""
        vf = key_for(verification_id)
        idem_key, body_hash = (f"gw:idem:{idempotency[0]}", idempotency[1]) if idempotency else (vf, "")
        pairs = [str(item) for kv in fields.items() for item in kv]
        return self._run(
            "create",
            [vf, idem_key, f"gw:block:{to}", f"gw:optout:{to}", f"gw:live:{live_key}" if live_key else vf],
            body_hash, 86400, key_ttl, verification_id,
            json.dumps(chains[0]), json.dumps(chains[1]), *pairs,
        )

    def load(self, verification_id: str) -> Verification | None:
        """The verification with its attempts, or None when unknown or expired away."""
        raw = self.redis.hgetall(key_for(verification_id))
        return _decode(raw) if raw else None

    def live(self, live_key: str) -> str | None:
        """The id last started under a live key (see create), if the key is still kept."""
        found = self.redis.get(f"gw:live:{live_key}")
        return found.decode() if found else None

    def check(self, verification_id: str, mode: str, *values: str, user_id: str | None = None) -> Outcome:
        """Atomically compare a code's digests (one per key), apply a verdict, or use one of a user's
        recovery codes; count failures."""
        keys = [key_for(verification_id), AUDIT_STREAM] + ([user_key(user_id)] if user_id else [])
        return self._run("check", keys, mode, *values)

    def finish(
        self, verification_id: str, status: Status, reason: Reason | None, attempt: int = 0, only_if_due: bool = False
    ) -> Outcome:
        """End a pending verification, optionally only for a given attempt or once due."""
        return self._run(
            "finish", [key_for(verification_id), AUDIT_STREAM],
            status.value, reason.value if reason else "", attempt, "1" if only_if_due else "0",
        )

    def attempt_status(
        self, verification_id: str, attempt: int, status: AttemptStatus, rank: int, error_code: int | None, sid: str | None
    ) -> Outcome:
        """Move an attempt's status forward (never backward); value = the status now."""
        return self._run(
            "attempt_status", [key_for(verification_id)],
            attempt, status.value, rank, "" if error_code is None else error_code, sid or "",
        )

    def advance(
        self, verification_id: str, failed_attempt: int, channel: Channel | None, position: int,
        expires_at: float, key_ttl: int, why: str, error_code: int | None,
    ) -> Outcome:
        """Start the next attempt (or fail the verification) once per failed attempt."""
        return self._run(
            "advance", [key_for(verification_id), AUDIT_STREAM],
            failed_attempt, channel.value if channel else "", position, f"{expires_at:.6f}", key_ttl, why,
            "" if error_code is None else error_code,
        )

    def set_code(
        self, verification_id: str, attempt: int, digest: str, encrypted: str,
        expires_at: float, deadline: float | None, key_ttl: int,
    ) -> Outcome:
        """Store the current attempt's code digest and its expiry."""
        return self._run(
            "set_code", [key_for(verification_id)], attempt, digest, encrypted,
            f"{expires_at:.6f}", f"{deadline:.6f}" if deadline else "", key_ttl,
        )

    def set_flag(self, kind: str, number: str, ttl: int | None = None) -> None:
        """Mark a number (kind: 'block' for fraud reports, 'optout' for SMS STOP)."""
        self.redis.set(f"gw:{kind}:{number}", "1", ex=ttl or None)

    def clear_flag(self, kind: str, number: str) -> None:
        """Lift a mark set with set_flag."""
        self.redis.delete(f"gw:{kind}:{number}")

    def has_flag(self, kind: str, number: str) -> bool:
        """Whether a number carries a mark."""
        return bool(self.redis.exists(f"gw:{kind}:{number}"))

    # -- two-way SMS: which verification a reply belongs to, and inbound message dedupe ------
    def index_reply(
        self, verification_id: str, attempt: int, sender: str, number: str, ttl: int, keep: int = 10
    ) -> Outcome:
        """Note a two-way prompt from sender to number (kind 'ok', or 'stale'/'finished'/'not_found')."""
        return self._run("reply_index", [key_for(verification_id), reply_key(sender, number)], attempt, ttl, keep)

    def reply_candidates(self, senders: list[str], number: str, limit: int = 10) -> list[str]:
        """Ids of the verifications prompted from any of the senders to number, newest prompt first."""
        pipe = self.redis.pipeline(transaction=False)
        for sender in senders:
            pipe.zrevrange(reply_key(sender, number), 0, limit - 1, withscores=True)
        scored = {member.decode(): score for entries in pipe.execute() for member, score in entries}
        return sorted(scored, key=lambda vid: scored[vid], reverse=True)[:limit]

    def claim_message(self, message_sid: str, ttl: int) -> bool:
        """True for the first claim of an inbound message SID within ttl seconds (SET NX)."""
        return bool(self.redis.set(f"gw:inbound:{message_sid}", "1", nx=True, ex=ttl))

    def release_message(self, message_sid: str) -> None:
        """Forget a claim, so that Twilio's retry of a message that failed here is handled."""
        self.redis.delete(f"gw:inbound:{message_sid}")

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
            pipe.hgetall(f"gw:metrics:{name}")
        return {
            name: {k.decode(): int(v) for k, v in values.items()}
            for name, values in zip(names, pipe.execute())
        }

    def count(self, name: str, label: str) -> None:
        """Add one to a cluster-wide counter."""
        self.redis.hincrby(f"gw:metrics:{name}", label, 1)

    def audit_entries(self, newest: str, oldest: str, count: int) -> list[tuple[str, dict[str, str]]]:
        """Audit stream entries between two stream ids (XREVRANGE bounds), newest first."""
        return [
            (entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()})
            for entry_id, fields in self.redis.xrevrange(AUDIT_STREAM, newest, oldest, count=count)
        ]

    def record_action(self, fields: Mapping[str, str]) -> None:
        """Append an operator's action to its stream, trimmed by age like the audit stream."""
        minid = int(time.time() * 1000 - self.audit_retention_ms)
        self.redis.xadd(ACTIONS_STREAM, dict(fields), minid=minid, approximate=True)

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
            keys, args = [user_key(user_id)], ("app", secret_encrypted, "", "app:last", step)
        else:
            keys, args = [token_key(serial)], ("secret", secret_encrypted, user_id, "last", step)
        return self._run("totp_use", keys, *args).kind == "ok"

    def reset_user(self, user_id: str) -> int:
        """Remove the user's app secret and unassign their tokens; how many methods went."""
        return int(self._run("user_reset", [user_key(user_id), USER_AUDIT_STREAM], user_id).value)

    def import_tokens(self, tokens: list[StoredToken], replace: bool) -> Outcome:
        """Write every token (and assignment) or none: kind 'ok', or 'exists' naming a serial."""
        args: list[object] = ["1" if replace else "0"]
        for t in tokens:
            p = t.params
            args += [t.serial, t.secret_encrypted, p.digits, p.period, p.algorithm.value, p.drift, t.user_id or ""]
        return self._run("tokens_import", [token_key(t.serial) for t in tokens], *args)

    def assign_token(self, serial: str, user_id: str | None) -> Outcome:
        """Assign a token to a user (None: unassign); the kind says what happened (or not_found)."""
        return self._run("token_assign", [token_key(serial)], serial, user_id or "")


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
