"""Redis access for /v2 (the Twilio-Verify-compatible API): Services and the Attempts index.

A sibling of store.py under its conventions (key names from gateway/keys.py, every command in a typed
method, multi-key writes in one transaction), kept apart only because store.py is past the
modules' ~400-line limit. These keys hold settings and an index, no verification state, so they
need none of store.py's scripts; what a value means (JSON of a Service) is verify_v2's business.
"""
from __future__ import annotations

from collections.abc import Callable

import redis

from gateway import keys


service_key = keys.v2_service  # the JSON value of one Service
account_key = keys.v2_services  # an account's Services, by creation time
attempts_key = keys.v2_verifications  # an account's /v2 verifications, by start time (Attempts API)


class V2Store:
    """Every Redis command of /v2: Services, their per-account listing, the Attempts index."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def now(self, client: redis.Redis | redis.client.Pipeline | None = None) -> float:
        """Redis's clock (TIME): it dates Services and orders their listing, as it dates verifications."""
        seconds, micros = (client or self.redis).time()
        return float(seconds) + micros / 1_000_000

    def add_service(self, account_sid: str, sid: str, record: str, created: float) -> None:
        """Write a new Service and index it under its account, in one transaction."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(service_key(sid), record)
            pipe.zadd(account_key(account_sid), {sid: created})
            pipe.execute()

    def service(self, sid: str) -> bytes | None:
        """A Service's stored JSON, if there is one."""
        return self.redis.get(service_key(sid))  # type: ignore[return-value]

    def change_service(self, sid: str, change: Callable[[bytes | None, float], str]) -> str:
        """Replace a Service's JSON with change(current, Redis's time) atomically (WATCH; retried on
        a race); change raises to leave it as it is."""

        def apply(pipe: redis.client.Pipeline) -> str:
            # Both answered at once: commands before MULTI run as they are sent.
            record = change(pipe.get(service_key(sid)), self.now(pipe))  # type: ignore[arg-type]
            pipe.multi()
            pipe.set(service_key(sid), record)
            return record

        return self.redis.transaction(apply, service_key(sid), value_from_callable=True)  # type: ignore[no-any-return]

    def remove_service(self, account_sid: str, sid: str) -> None:
        """Remove a Service and its entry in the account's listing, in one transaction."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(service_key(sid))
            pipe.zrem(account_key(account_sid), sid)
            pipe.execute()

    def service_page(self, account_sid: str, start: int, size: int) -> tuple[list[bytes], bool]:
        """Up to size Services' JSON of the account from position start, oldest first; and whether more follow."""
        sids = [s.decode() for s in self.redis.zrange(account_key(account_sid), start, start + size)]
        raws = self.redis.mget([service_key(s) for s in sids[:size]]) if sids else []
        return [r for r in raws if r], len(sids) > size

    def remember(self, account_sid: str, verification_id: str, created_at: float, keep: float) -> None:
        """Index a /v2 verification under its account, dropping entries older than keep seconds."""
        key = attempts_key(account_sid)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {verification_id: created_at})
            pipe.zremrangebyscore(key, "-inf", created_at - keep)
            pipe.execute()

    def verification_ids(self, account_sid: str, since: float, until: float) -> list[str]:
        """The account's /v2 verifications started in [since, until], newest first."""
        return [m.decode() for m in self.redis.zrevrangebyscore(attempts_key(account_sid), until, since)]
