"""Fixtures: a real Redis (REDIS_URL or 127.0.0.1:6379), apps built per test."""
from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis

from config import Settings, load_settings
from gateway import create_app

TEST_DB = int(os.environ.get("TEST_REDIS_DB", "9"))  # in-process tests; Stacks use others
API_KEY = "test-api-key-0123456789"
ADMIN_KEY = "test-admin-key-0123456789"
ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "simulator-auth-token"


def redis_base() -> str:
    """The Redis server the tests use (REDIS_URL's host), without a database number."""
    parts = urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379")
    return f"{parts.scheme}://{parts.netloc}"


def gateway_env(db: int, **overrides: str) -> dict[str, str]:
    """Environment variables for a gateway under test."""
    env = {
        "REDIS_URL": f"{redis_base()}/{db}",
        "GATEWAY_API_KEYS": API_KEY,
        "GATEWAY_ADMIN_KEYS": ADMIN_KEY,
        "GATEWAY_SECRET_KEY": "s" * 40,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE_URL": "http://127.0.0.1:9",
        "SMS_FROM": "+15005550006",
        "VOICE_CALLER_ID": "+15005550006",
        "LOG_LEVEL": "WARNING",
    }
    env.update(overrides)
    return env


def redis_dump(r: redis.Redis) -> bytes:
    """Every key and value in a database, read with its type's command (DUMP would show a numeric
    string as an integer), plus compressed values inflated (rq keeps job data zlib-compressed)."""
    parts = []
    for key in r.scan_iter():
        kind = r.type(key)
        parts.append(key)
        if kind == b"string":
            parts.append(r.get(key) or b"")
        elif kind == b"hash":
            parts += [item for kv in r.hgetall(key).items() for item in kv]
        elif kind == b"list":
            parts += r.lrange(key, 0, -1)
        elif kind == b"set":
            parts += list(r.smembers(key))
        elif kind == b"zset":
            parts += [m for m, _ in r.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":
            parts += [item for _, fields in r.xrange(key) for kv in fields.items() for item in kv]
    for part in list(parts):
        try:
            parts.append(zlib.decompress(part))
        except zlib.error:
            pass
    return b"\n".join(parts)


def holds_code(dump: bytes, code: str) -> bool:
    """Whether a code appears in a dump on its own, not as digits inside a longer number (a time)."""
    return re.search(rb"(?<![0-9])" + code.encode() + rb"(?![0-9])", dump) is not None


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    """A clean test database on the real Redis."""
    connection = redis.Redis.from_url(f"{redis_base()}/{TEST_DB}")
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


@pytest.fixture
def settings(redis_db: redis.Redis) -> Settings:
    """Settings of an app under test (no worker runs: jobs wait in the queue)."""
    return load_settings(gateway_env(TEST_DB)).replace(testing=True)


@pytest.fixture
def app(settings: Settings):  # type: ignore[no-untyped-def]
    """A fresh app per test."""
    return create_app(settings)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    """A test client that sends the API key."""
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    return test_client


@pytest.fixture
def admin(app):  # type: ignore[no-untyped-def]
    """A test client that sends the admin key."""
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN_KEY}"
    return test_client
