"""Redis access for /v2 (the Twilio-Verify-compatible API): Services and the Attempts index.

A sibling of store.py under its conventions (key names spelled here, every command in a typed
method, multi-key writes in one transaction), kept apart only because store.py is past the
modules' ~400-line limit. These keys hold settings and an index, no verification state, so they
need none of store.py's scripts; what a value means (JSON of a Service) is verify_v2's business.
"""
from __future__ import annotations

from collections.abc import Callable

import redis


def service_key(sid: str) -> str:
    """The JSON value of one Service."""
    return f"gw:v2:svc:{sid}"


def account_key(account_sid: str) -> str:
    """The sorted set of an account's Services, by creation time."""
    return f"gw:v2:svcs:{account_sid}"


def attempts_key(account_sid: str) -> str:
    """The sorted set of an account's /v2 verifications, by start time (Attempts API)."""
    return f"gw:v2:vfs:{account_sid}"


class V2Store:
    """Every Redis command of /v2: Services, their per-account listing, the Attempts index."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def add_service(self, account_sid: str, sid: str, record: str, created: float) -> None:
        """Write a new Service and index it under its account, in one transaction."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(service_key(sid), record)
            pipe.zadd(account_key(account_sid), {sid: created})
            pipe.execute()

    def service(self, sid: str) -> bytes | None:
        """A Service's stored JSON, if there is one."""
        return self.redis.get(service_key(sid))  # type: ignore[return-value]

    def change_service(self, sid: str, change: Callable[[bytes | None], str]) -> str:
        """Replace a Service's JSON with change(current) atomically (WATCH; retried on a race);
        change raises to leave it as it is."""

        def apply(pipe: redis.client.Pipeline) -> str:
            record = change(pipe.get(service_key(sid)))  # type: ignore[arg-type]
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
