"""Every Redis key and pub/sub channel name of the gateway, spelled here and nowhere else.

The Lua scripts receive every key they touch in KEYS (built from these functions), never a
name to complete, so the layout can move to Redis Cluster by changing this module (see
docs/architecture.md, "towards Redis Cluster"). tests/test_keys.py holds the scripts to it.
"""
from __future__ import annotations

import re
import secrets
import zlib
from dataclasses import dataclass

# The send queue: deliveries ("<id>:<attempt>") scored by when they are due (Redis time). Written
# by the script that makes the attempt; a sender's claim leases an entry by pushing its score
# (claim.lua); the script that records the send removes it.
OUTBOX = "gw:outbox"
# Verifications' next timer (expiry, reply timeout or delivery deadline): id scored by when it is
# due; claimed like the outbox by the workers' supervisor, removed when the verification ends.
TIMERS = "gw:timers"
# A list of at most one token, pushed by the scripts that put a delivery in the outbox: an idle
# sender waits on it (BLPOP), so one worker process wakes per new delivery, at once, no polling.
OUTBOX_WAKE = "gw:outbox:wake"
AUDIT = "gw:audit"  # ended verifications, abuse refusals, breaker trips and resets
# Approvals whose conversion the workers' supervisor has yet to count (abuse.fold_conversions):
# "<second>|<number>|<country>|<user>", pushed by the script that approves (prelude.lua finish()).
CONVERSIONS = "gw:conversions"
ACTIONS = "gw:actions"  # operators' actions
USER_AUDIT = "gw:audit:users"  # changes to users' methods
BREAKERS = "gw:breakers"  # tripped breakers ("<scope>:<id>") by the time they close
GLOBAL_LIMIT = "gw:lim:global"
# Published (to no one) before WAIT, so WAIT covers everything the primary holds, also a record an
# earlier, unconfirmed request wrote (WAIT counts only the writes of its own connection).
REPLICATION_MARK = "gw:replicated"
# The channel prefix prelude.lua's finish() publishes to: a channel, not a key (see done_channel).
DONE_PREFIX = "gw:done:"

USAGE_BLOCK = 8  # days summed together in the usage block counters (gw:usage:b<n>:…; reports.py reads them)
DAY = 86400
_ID = re.compile(r"vf_([0-9a-f]{4})[0-9a-f]{28}")
# A verification ends within its lifetime plus VERIFICATION_RETENTION of its start; a day
# read from an id further from today than this is not one (an id made before ids held a day).
_ID_DAY_SPAN = 30


def verification(verification_id: str) -> str:
    """The hash that holds one verification."""
    return f"gw:vf:{verification_id}"


def new_verification_id(day: int) -> str:
    """A new verification id: 'vf_' and 32 hex digits, the first 4 the UTC day it starts
    (days since the epoch), so that any script ending it can be given its usage keys."""
    return f"vf_{day:04x}{secrets.token_hex(14)}"


def start_day(verification_id: str, today: int) -> int:
    """The UTC day a verification started, read from its id; today for an id without one."""
    match = _ID.fullmatch(verification_id)
    day = int(match.group(1), 16) if match else today
    return day if today - _ID_DAY_SPAN <= day <= today + 1 else today


def done_channel(verification_id: str) -> str:
    """The pub/sub channel announcing that a verification ended (a channel, not a key)."""
    return f"{DONE_PREFIX}{verification_id}"


def idempotency(key: str) -> str:
    """A client's Idempotency-Key: '<body hash>|<verification id>'."""
    return f"gw:idem:{key}"


def live(live_key: str) -> str:
    """The verification last started under a live key (a /v2 Service and number)."""
    return f"gw:live:{live_key}"


def v2_live(service_sid: str, number: str) -> str:
    """The live key (see live) of a /v2 Service and number: a repeat start finds the pending one."""
    return f"v2:{service_sid}:{number}"


def flag(kind: str, number: str) -> str:
    """A number's mark: 'optout' (replied STOP) or 'block' (reported fraud)."""
    return f"gw:{kind}:{number}"


def block(number: str) -> str:
    """A number blocked after a fraud report (0# on a call)."""
    return flag("block", number)


def optout(number: str) -> str:
    """A number that replied STOP."""
    return flag("optout", number)


def user(user_id: str) -> str:
    """The hash of a user's own methods (app secret, assigned token serials)."""
    return f"gw:user:{user_id}"


def token(serial: str) -> str:
    """The hash of one imported OATH token."""
    return f"gw:token:{serial}"


def reply(sender: str, number: str) -> str:
    """The sorted set of two-way prompts from a gateway sender (number or MG SID) to a user."""
    return f"gw:reply:{sender}:{number}"


def inbound(message_sid: str) -> str:
    """The marker of an inbound SMS already handled (Twilio repeats webhooks)."""
    return f"gw:inbound:{message_sid}"


def metrics(name: str) -> str:
    """A cluster-wide counter hash for /metrics (started, ended, refused, …)."""
    return f"gw:metrics:{name}"


def usage(name: str) -> str:
    """A usage counter hash by its name after 'gw:usage:' ('<day>', 'b<n>:dims', …)."""
    return f"gw:usage:{name}"


def limit(axis: str, *parts: str) -> str:
    """A limit's fixed-window counter of its own (country, confirm, checks)."""
    return ":".join([f"gw:lim:{axis}", *parts])


# The start counters of a number, a (number, client) pair, a client address and a user are
# fields of shared hashes, not keys of their own: a key with a TTL costs ~130 B of Redis (its
# object, and entries in the key and expiry tables), a field in a shared hash ~35 B
# (docs/performance.md). This is Redis's documented pattern for many small counters ("Use hashes
# when possible", https://redis.io/docs/latest/operate/oss_and_stack/management/optimization/memory-optimization/).
# A counter's hash is chosen by the window generation its first send fell in (admit.lua says why
# this one and the last are read) and by its identity's shard (crc32 among LIMIT_SHARDS), so that
# each hash stays a listpack (hash-max-listpack-entries, 128) up to ~100,000 counters a generation.
LIMIT_SHARDS = 1024


def limits(generation: int, identity: str) -> str:
    """The hash holding the start counters begun in one generation (Redis's seconds //
    RATE_LIMIT_WINDOW) of the identity's shard (its number, client address or user)."""
    return f"gw:limits:{generation}:{zlib.crc32(identity.encode()) % LIMIT_SHARDS}"


def limit_field(axis: str, *parts: str) -> str:
    """A start counter's field in its limits hash: 'n<e164>', 'p<e164>|<client>', 'i<ip>', 'u<user>'."""
    return {"number": "n", "pair": "p", "ip": "i", "user": "u"}[axis] + "|".join(parts)


def window(scope: str, scope_id: str) -> str:
    """A range's or country's pumping window: sends and conversions by bucket, in one hash
    (fields 's<bucket>' and 'c<bucket>', chosen and pruned by the scripts at Redis's time)."""
    return f"gw:window:{scope}:{scope_id}"


def breaker(member: str) -> str:
    """A tripped breaker's state, by its member in BREAKERS ('<scope>:<id>')."""
    return f"gw:breaker:{member}"


def converted(number: str) -> str:
    """A number verified before (and by which users)."""
    return f"gw:conv:{number}"


def spend(day: int) -> str:
    """Estimated spend of a UTC day (days since the epoch)."""
    return f"gw:spend:{day}"


def console_session(digest: str) -> str:
    """An operator's console session, by the digest of its cookie."""
    return f"gw:console:{digest}"


def worker_alive(worker_name: str) -> str:
    """The key that says a worker (by rq name) is alive; it expires when its process dies."""
    return f"gw:worker:{worker_name}:alive"


def v2_service(sid: str) -> str:
    """The hash of one /v2 Service."""
    return f"gw:v2:svc:{sid}"


def v2_services(account_sid: str) -> str:
    """The sorted set of an account's /v2 Services, by creation time."""
    return f"gw:v2:svcs:{account_sid}"


def v2_verifications(account_sid: str) -> str:
    """The sorted set of an account's /v2 verifications, by start time (Attempts API)."""
    return f"gw:v2:vfs:{account_sid}"


@dataclass(frozen=True)
class Ending:
    """The keys a script writes when it ends a verification, besides its record and the audit
    stream (prelude.lua finish(): the last len(keys()) entries of KEYS, in this order)."""

    day: int

    def keys(self) -> list[str]:
        """The ended counter, then the start day's usage hashes, then its block's, then the
        conversions' queue."""
        day, block_ = str(self.day), f"b{self.day // USAGE_BLOCK}"
        return [metrics("ended"), usage(day), usage(f"{day}:dims"), usage(f"{day}:x"),
                usage(f"{block_}:dims"), usage(f"{block_}:x"), CONVERSIONS]


def ending(verification_id: str, now: float) -> list[str]:
    """The ending keys of a verification (its start day from its id; now: this node's clock,
    used only for ids without a day)."""
    return Ending(start_day(verification_id, int(now // DAY))).keys()
