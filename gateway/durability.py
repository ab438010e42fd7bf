"""Start-up check that Redis keeps what the gateway cannot lose (see docs/deployment.md)."""
from __future__ import annotations

import logging

import redis

from config import ConfigError

log = logging.getLogger(__name__)

# Keys without a TTL that nothing can rebuild: STOP opt-outs, app enrolments, the token inventory.
MUST_SURVIVE = "opt-outs (STOP), authenticator enrolments and the OATH token inventory"


def check_redis(connection: redis.Redis, variable: str = "REDIS_URL") -> None:
    """Refuse an evicting Redis (allkeys-*); warn when it cannot be checked or keeps no AOF."""
    try:
        config = connection.config_get("maxmemory-policy")
        config.update(connection.config_get("appendonly"))
    except redis.exceptions.ResponseError as exc:
        # Managed services often disable or rename CONFIG; the operator must then check by hand.
        log.warning("cannot read Redis's configuration (%s); make sure its maxmemory-policy is noeviction "
                    "or volatile-* and AOF is on (docs/deployment.md)", exc)
        return
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.warning("Redis unreachable at start (%s); its eviction policy was not checked", exc)
        return
    policy = config.get("maxmemory-policy", "")
    if policy.startswith("allkeys-"):
        raise ConfigError(
            variable,
            f"the Redis server's maxmemory-policy is {policy}: when memory runs short it evicts any key, "
            f"including {MUST_SURVIVE}, which have no TTL and cannot be rebuilt. Set maxmemory-policy "
            "to noeviction (or a volatile-* policy); see docs/deployment.md",
        )
    if config.get("appendonly") == "no":
        log.warning("Redis runs without AOF (appendonly no): a restart loses %s and pending deliveries "
                    "(docs/deployment.md)", MUST_SURVIVE)
