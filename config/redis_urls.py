"""Redis addresses: plain URLs (redis-py's own) and the Sentinel URL that redis-py lacks.

redis-py 8.1 has no Sentinel URL scheme (its from_url refuses one; redis-py #3084 closed as stale),
so the grammar below follows the one Prefect and redis-vl use:
`redis+sentinel://[user:pass@]host1:26379,host2:26379/<master-name>[/db]?sentinel_password=…`,
and `rediss+sentinel://` for TLS to the Sentinels and to the master.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

PLAIN_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_PORT = 26379


class UrlProblem(ValueError):
    """What is wrong with a Redis URL (config turns it into a ConfigError naming the variable)."""


@dataclass(frozen=True)
class SentinelTarget:
    """A master found through Sentinels, and how to log in to each."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    ssl: bool = False


def whole(text: str) -> bool:
    """Whether text is a whole number in ASCII digits (str.isdigit alone also takes "²", which int() refuses)."""
    return text.isascii() and text.isdigit()


def _host_port(item: str) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise UrlProblem(f"empty Sentinel host in {item!r}")
    if not port_text:
        return host, SENTINEL_PORT
    if not whole(port_text) or not 0 < int(port_text) < 65536:
        raise UrlProblem(f"bad Sentinel port {port_text!r} in {item!r} (expected 1-65535)")
    return host, int(port_text)


def parse_sentinel(url: str) -> SentinelTarget:
    """Parse a redis+sentinel:// or rediss+sentinel:// URL; raise UrlProblem naming what is wrong."""
    parts = urlsplit(url)
    credentials, at, hosts = parts.netloc.rpartition("@")
    if not at:
        credentials = ""
    items = [item.strip() for item in hosts.split(",")]
    if not hosts.strip():
        raise UrlProblem("no Sentinel hosts (expected host1:26379,host2:26379 after the scheme)")
    if not all(items):
        raise UrlProblem(f"an empty entry in the Sentinel host list {hosts!r}")
    sentinels = tuple(_host_port(item) for item in items)
    path = [segment for segment in parts.path.split("/") if segment]
    if not path:
        raise UrlProblem("no master name (expected …/<master-name>[/db] after the hosts)")
    if len(path) > 2 or (len(path) == 2 and not whole(path[1])):
        raise UrlProblem(f"bad path {parts.path!r} (expected /<master-name>[/db] with a whole-number db)")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"sentinel_password"})
    if unknown:
        raise UrlProblem(f"unknown query parameter {unknown[0]!r} (only sentinel_password is accepted)")
    username, colon, password = credentials.partition(":")
    return SentinelTarget(
        sentinels=sentinels,
        master=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(username) or None,
        password=(unquote(password) or None) if colon else None,
        sentinel_password=query.get("sentinel_password", [""])[-1] or None,
        ssl=parts.scheme == "rediss+sentinel",
    )


def parse_redis_url(url: str) -> SentinelTarget | None:
    """Check a Redis URL's scheme; the Sentinel target for a Sentinel URL, None for a plain one."""
    scheme = urlsplit(url).scheme
    if scheme in SENTINEL_SCHEMES:
        return parse_sentinel(url)
    if scheme not in PLAIN_SCHEMES:
        raise UrlProblem("must start with redis://, rediss://, unix://, redis+sentinel:// or rediss+sentinel://")
    if scheme != "unix":
        _check_plain(url)
    return None


def _check_plain(url: str) -> None:
    """Refuse a plain URL's port or db that redis-py would only fail on at the first connection."""
    parts = urlsplit(url)
    port_text = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
    if port_text and (not whole(port_text) or not 0 < int(port_text) < 65536):
        raise UrlProblem(f"bad port {port_text!r} (expected 1-65535)")
    db = parts.path.strip("/")
    if db and not whole(db):
        raise UrlProblem(f"bad database {db!r} in the path (expected a whole number, like /0)")
