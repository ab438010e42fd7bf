"""The services an app uses (Redis, queue, store, carrier), built once and kept on it."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import redis
from flask import current_app
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from rq import Queue

from config import ConfigError, Settings
from gateway import codes
from gateway.abuse_store import AbuseStore
from gateway.carrier import Carrier
from gateway.store import Store

log = logging.getLogger(__name__)


def connect_redis(url: str) -> redis.Redis:
    """A Redis client that fails fast (a few seconds) when the server is gone."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
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
        queue=Queue(settings.queue_name, connection=connection),
        store=Store(connection, settings.server_name, settings.audit_retention),
        carrier=carrier,
        abuse=AbuseStore(connection),
    )


def services() -> Services:
    """The current app's services."""
    return current_app.extensions["gateway"]  # type: ignore[no-any-return]
