"""Users' own methods in Redis (part of `Store`): authenticator apps, OATH tokens, recovery codes.

A sibling of store.py under its conventions, split off for size as send_store.py was: the scripts
(totp_*.lua, user_*.lua, tokens_import.lua, token_assign.lua, check_gate.lua) are registered
in `Store.__init__`, and these methods run them through its `_run`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis

from gateway import keys
from gateway.oath import Algorithm, Params, StoredToken, UserMethods

if TYPE_CHECKING:
    from gateway.store import Allowance, Outcome

SETTLE_TRIES = 10  # a read-then-script change retried this often while the data changes under it


@dataclass(frozen=True)
class Proof:
    """What a change to a user's methods offers as proof: an approved verification and/or the admin scope."""

    verification_id: str | None
    admin: bool
    max_age: int

    def key(self, user_id: str) -> str:
        """The proving verification's key (the user's own key stands for none)."""
        return keys.verification(self.verification_id) if self.verification_id else keys.user(user_id)

    def args(self) -> tuple[object, ...]:
        """The script arguments: max age, admin flag, verification id."""
        return self.max_age, "1" if self.admin else "0", self.verification_id or ""


class UserStore:
    """`Store`'s methods for users' authenticators and tokens (split off for size; they use its scripts)."""

    redis: redis.Redis

    # Store's own, which these methods build on.
    def _run(self, name: str, script_keys: list[str], *args: object) -> Outcome: ...

    def user_methods(self, user_id: str) -> UserMethods:
        """The user's app secret and assigned tokens (secrets still encrypted)."""
        raw = {k.decode(): v.decode() for k, v in self.redis.hgetall(keys.user(user_id)).items()}
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
            pipe.hgetall(keys.token(serial))
        return [_decode_token(serial, raw) if raw else None for serial, raw in zip(serials, pipe.execute())]

    def enrol_pending(self, user_id: str, secret_encrypted: str, ttl: int) -> float:
        """Set the user's pending authenticator (it approves nothing yet); when it expires."""
        return float(self._run("totp_enrol", [keys.user(user_id)], secret_encrypted, ttl).value)

    def confirm_app(self, user_id: str, pending_encrypted: str, step: int | None, max_fails: int,
                    proof: Proof, recovery_digests: list[str]) -> Outcome:
        """Activate the pending authenticator if the step matched and any needed proof holds."""
        return self._run(
            "totp_confirm", [keys.user(user_id), proof.key(user_id), keys.USER_AUDIT],
            user_id, pending_encrypted, "" if step is None else step, max_fails, *proof.args(), *recovery_digests,
        )

    def regenerate_recovery(self, user_id: str, proof: Proof, recovery_digests: list[str]) -> Outcome:
        """Replace the user's recovery codes, given the proof a replacement needs."""
        return self._run(
            "user_recovery", [keys.user(user_id), proof.key(user_id), keys.USER_AUDIT],
            user_id, *proof.args(), *recovery_digests,
        )

    def use_step(self, user_id: str, serial: str | None, secret_encrypted: str, step: int) -> bool:
        """Record a matched time step of the app (serial None) or a token; False if not later than the last."""
        if serial is None:
            method, args = keys.user(user_id), ("app", secret_encrypted, "", "app:last", step)
        else:
            method, args = keys.token(serial), ("secret", secret_encrypted, user_id, "last", step)
        return self._run("totp_use", [method], *args).kind == "ok"

    def _settled(self, attempt: Callable[[], Outcome]) -> Outcome:
        """Run a read-then-script change again while the script finds the read outdated ('changed'):
        the keys such a script touches are found in data, so they are read first and declared."""
        for _ in range(SETTLE_TRIES):
            outcome = attempt()
            if outcome.kind != "changed":
                return outcome
        raise redis.exceptions.RedisError("the data kept changing under a change that reads its keys from data; try again")

    def reset_user(self, user_id: str) -> int:
        """Remove the user's app secret and unassign their tokens; how many methods went."""
        def attempt() -> Outcome:
            serials = [f.decode()[len("token:"):] for f in self.redis.hkeys(keys.user(user_id)) if f.startswith(b"token:")]
            return self._run("user_reset", [keys.user(user_id), keys.USER_AUDIT, *map(keys.token, serials)],
                             user_id, *serials)
        return int(self._settled(attempt).value)

    def import_tokens(self, tokens: list[StoredToken], replace: bool) -> Outcome:
        """Write every token (and assignment) or none: kind 'ok', or 'exists' naming a serial."""
        def attempt() -> Outcome:
            pipe = self.redis.pipeline(transaction=False)
            for t in tokens:
                pipe.hget(keys.token(t.serial), "user")
            owners = [(o or b"").decode() for o in pipe.execute()]
            args: list[object] = ["1" if replace else "0", len(tokens)]
            for t, owner in zip(tokens, owners):
                p = t.params
                args += [t.serial, t.secret_encrypted, p.digits, p.period, p.algorithm.value, p.drift, t.user_id or "",
                         owner]
            users = sorted({u for u in owners if u} | {t.user_id for t in tokens if t.user_id})
            return self._run("tokens_import", [keys.token(t.serial) for t in tokens] + [keys.user(u) for u in users],
                             *args, *users)
        return self._settled(attempt)

    def assign_token(self, serial: str, user_id: str | None) -> Outcome:
        """Assign a token to a user (None: unassign); the kind says what happened (or not_found)."""
        def attempt() -> Outcome:
            token = keys.token(serial)
            owner = (self.redis.hget(token, "user") or b"").decode()
            return self._run("token_assign", [token, keys.user(owner) if owner else token,
                                              keys.user(user_id) if user_id else token], serial, user_id or "", owner)
        return self._settled(attempt)

    def count_confirmation(self, user_id: str, allowance: Allowance | None) -> Outcome:
        """Count an authenticator confirmation against the user's check allowance: kind 'ok' (value:
        Redis's time, to match the code against) or 'refused' (value: seconds to wait)."""
        user = keys.user(user_id)
        return self._run(
            "check_gate", [user, allowance.key if allowance else user, keys.metrics("refused"), keys.AUDIT],
            allowance.limit if allowance else "", allowance.window if allowance else "", user_id,
        )


def _decode_token(serial: str, raw: Mapping[bytes, bytes]) -> StoredToken:
    h = {k.decode(): v.decode() for k, v in raw.items()}
    params = Params(int(h["digits"]), int(h["period"]), Algorithm(h["algorithm"]), int(h.get("drift") or 0))
    return StoredToken(serial, h["secret"], params, h.get("user") or None, int(h["last"]) if h.get("last") else None)
