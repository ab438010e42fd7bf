"""The services an app uses (Redis, queue, store, carrier), built once and kept on it."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import current_app
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection
from rq import Queue

from config import ConfigError, Settings, redis_target
from gateway import codes
from gateway.abuse_store import AbuseStore
from gateway.carrier import Carrier
from gateway.store import Store

log = logging.getLogger(__name__)


SOCKET_CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 5.0
SENTINEL_TIMEOUT = 1.0  # each Sentinel asked in turn: a dead one must not hold a request long


class _ReadOnlyMeansFailover:
    """A demoted primary answers writes with READONLY: drop the connection so the retry reconnects.

    redis-py does this only inside its Sentinel connection, and only for a READONLY reply to a
    plain command; behind a managed failover endpoint (plain redis://, DNS moved to the new
    primary) the plain client would fail for good (StackExchange.Redis #2264, ElastiCache docs),
    and Redis 6 wraps READONLY inside a script's "ERR Error running script" reply.
    """

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except redis.exceptions.ResponseError as exc:
            if not isinstance(exc, redis.exceptions.ReadOnlyError) and "-READONLY " not in str(exc):
                raise
            self.disconnect()  # type: ignore[attr-defined]
            raise redis.exceptions.ConnectionError(f"the primary was demoted ({exc}); reconnecting") from None


class FailoverConnection(_ReadOnlyMeansFailover, redis.connection.Connection):
    """A TCP connection that reconnects after READONLY."""


class FailoverSSLConnection(_ReadOnlyMeansFailover, redis.connection.SSLConnection):
    """A TLS connection that reconnects after READONLY."""


class SentinelFailoverConnection(_ReadOnlyMeansFailover, SentinelManagedConnection):
    """A Sentinel-managed connection that also reconnects after a READONLY inside a script."""


class SentinelFailoverSSLConnection(_ReadOnlyMeansFailover, SentinelManagedSSLConnection):
    """The same over TLS."""


def connect_redis(url: str, variable: str = "REDIS_URL") -> redis.Redis:
    """A Redis client that fails fast (a few seconds) when the server, or every Sentinel, is gone."""
    fail_fast: dict[str, Any] = dict(
        socket_connect_timeout=SOCKET_CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
    )
    target = redis_target(variable, url)
    if target is None:
        scheme = urlsplit(url).scheme
        if scheme != "unix":
            fail_fast["connection_class"] = FailoverSSLConnection if scheme == "rediss" else FailoverConnection
        return redis.Redis.from_url(url, health_check_interval=15, **fail_fast)
    sentinel = Sentinel(
        list(target.sentinels),
        sentinel_kwargs=dict(
            socket_connect_timeout=SENTINEL_TIMEOUT, socket_timeout=SENTINEL_TIMEOUT, retry=Retry(NoBackoff(), 0),
            password=target.sentinel_password, ssl=target.ssl,
        ),
    )
    # health_check_interval must be 0: redis-py's pub/sub health check PINGs the old master's
    # address directly and never follows a failover (../shared/reference/redis-scale-out.md §2).
    return sentinel.master_for(
        target.master, db=target.db, username=target.username, password=target.password,
        connection_class=SentinelFailoverSSLConnection if target.ssl else SentinelFailoverConnection,
        health_check_interval=0, **fail_fast,
    )


@dataclass
class Services:
    """What the gateway talks to; tests swap any of them here, in one place."""

    settings: Settings
    redis: redis.Redis
    queue: Queue
    store: Store
    carrier: Carrier | None
    abuse: AbuseStore
    _keys: dict[str, tuple[bytes, ...]] = field(default_factory=dict)

    def key(self, purpose: str) -> bytes:
        """The current sub-key of the server secret ('code-hmac', 'code-cipher', 'totp-cipher')."""
        return self.keys(purpose)[0]

    def keys(self, purpose: str) -> tuple[bytes, ...]:
        """The sub-keys of the current secret and then of GATEWAY_SECRET_KEY_PREVIOUS, to verify
        and decrypt what was made before a rotation (new material uses only the first)."""
        if purpose not in self._keys:
            secrets = (self.settings.secret_key or "", *self.settings.previous_secret_keys)
            self._keys[purpose] = tuple(codes.derive_key(secret, purpose) for secret in secrets)
        return self._keys[purpose]


def build_services(settings: Settings) -> Services:
    """Build the services for one app; nothing connects until first used."""
    if not settings.secret_key:
        # A key generated per process would differ between processes and nodes, and one kept in
        # Redis would sit beside the digests it keys; only the operator can hold it safely.
        raise ConfigError(
            "GATEWAY_SECRET_KEY",
            "is required: set a random key of at least 32 characters, the same on every instance "
            "(`python -m gateway` generates one for development)",
        )
    connection = connect_redis(settings.redis_url or "redis://localhost:6379/0")
    rq_url = settings.rq_redis_url
    # The queue may live on a Redis of its own: rq's bookkeeping is most of Redis's work per verification.
    rq_connection = connect_redis(rq_url, "RQ_REDIS_URL") if rq_url and rq_url != settings.redis_url else connection
    carrier = None
    if settings.twilio_enabled:
        carrier = Carrier(
            settings.twilio_account_sid or "",
            settings.twilio_auth_token or "",
            settings.twilio_api_base_url,
            settings.twilio_timeout,
        )
    return Services(
        settings=settings,
        redis=connection,
        queue=Queue(settings.queue_name, connection=rq_connection),
        store=Store(connection, settings.server_name, settings.audit_retention, settings.retention,
                    (settings.redis_wait_replicas, settings.redis_wait_ms), settings.previous_release_records),
        carrier=carrier,
        abuse=AbuseStore(connection),
    )


def services() -> Services:
    """The current app's services."""
    return current_app.extensions["gateway"]  # type: ignore[no-any-return]
