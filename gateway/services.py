"""The services an app uses (Redis, queue, store, carrier), built once and kept on it."""
from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass, field

import redis
from flask import current_app
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from rq import Queue

from config import Settings
from gateway import codes
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
    _keys: dict[str, bytes] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def key(self, purpose: str) -> bytes:
        """A sub-key of the server secret ('code-hmac', 'code-cipher', 'totp-cipher')."""
        if purpose not in self._keys:
            with self._lock:
                self._keys[purpose] = codes.derive_key(self._secret(), purpose)
        return self._keys[purpose]

    def _secret(self) -> str:
        if self.settings.secret_key:
            return self.settings.secret_key
        # Without GATEWAY_SECRET_KEY every instance must still share one key, and Redis is
        # the only thing they share; keeping it beside the digests is weaker, so say so.
        self.redis.set("gw:secret", secrets.token_urlsafe(48), nx=True)
        log.warning("GATEWAY_SECRET_KEY is not set; using a generated key kept in Redis")
        return self.redis.get("gw:secret").decode()  # type: ignore[union-attr]


def build_services(settings: Settings) -> Services:
    """Build the services for one app; nothing connects until first used."""
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
    )


def services() -> Services:
    """The current app's services."""
    return current_app.extensions["gateway"]  # type: ignore[no-any-return]
