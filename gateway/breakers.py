"""The operators' view of abuse protection: tripped breakers, resets, and the /metrics figures."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway import keys
from gateway.abuse import MICRO
from gateway.abuse_store import Breaker
from gateway.errors import InvalidRequest

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger(__name__)
SCOPES = ("prefix", "country")


def to_json(b: Breaker) -> dict[str, object]:
    """A tripped breaker as the API shows it."""
    from gateway.models import iso

    label = f"+{b.id[:-3]} {b.id[-3:]}" if b.scope == "prefix" else b.id
    return {
        "scope": b.scope, "id": b.id, "label": label, "tripped_at": iso(b.tripped_at), "until": iso(b.until),
        "sends": b.sends, "conversions": b.conversions,
        "conversion_rate": round(b.conversions / b.sends, 4) if b.sends else None,
    }


def tripped(svc: "Services") -> list[Breaker]:
    """Every breaker tripped now."""
    return svc.abuse.breakers(svc.abuse.now())


def reset(svc: "Services", scope: str, breaker_id: str, operator: str) -> bool:
    """Close a breaker and start its window afresh (audited); False when it was not tripped."""
    if scope not in SCOPES:
        raise InvalidRequest(f"'scope' must be one of {', '.join(SCOPES)}.")
    if not (breaker_id.isdigit() if scope == "prefix" else breaker_id.isalpha() and breaker_id.isupper()):
        raise InvalidRequest("A prefix breaker is named by digits (48600), a country one by its code (PL).")
    member = f"{scope}:{breaker_id}"
    was = svc.abuse.reset_breaker({
        "keys": {"breaker": keys.breaker(member), "breakers": keys.BREAKERS, "audit": keys.AUDIT,
                 "resets": keys.metrics("breaker_resets"), "window": keys.window(scope, breaker_id)},
        "scope": scope, "id": breaker_id, "audit_retention_ms": svc.settings.audit_retention * 1000, "operator": operator,
        "server_name": svc.settings.server_name,
    })
    if was:
        log.warning("breaker %s:%s reset by %s", scope, breaker_id, operator)
    return was


class AbuseCollector(Collector):
    """Refusals, breaker trips and resets, tripped breakers and today's spend, from Redis at scrape time."""

    def __init__(self, svc: "Services") -> None:
        self.svc = svc

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        now = self.svc.abuse.now()
        try:
            counters = self.svc.abuse.counters()
            breakers = self.svc.abuse.breakers(now)
            spend = self.svc.abuse.spend(int(now // 86400))
            queued = self.svc.abuse.conversion_backlog()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("metrics without abuse counters: %s", exc)
            return
        for name, metric, doc, label in (
            ("refused", "gateway_abuse_refusals", "Sends refused for abuse, by reason", "reason"),
            ("breaker_trips", "gateway_breaker_trips", "Pumping breakers tripped", "scope"),
            ("breaker_resets", "gateway_breaker_resets", "Pumping breakers reset by operators", "scope"),
            ("spend_warnings", "gateway_spend_warnings", "Spend crossed 80% of a daily budget", "budget"),
        ):
            family = CounterMetricFamily(metric, doc, labels=[label])
            for key, value in counters.get(name, {}).items():
                family.add_metric(["global" if key == "*" else key], value)
            yield family
        open_ = GaugeMetricFamily("gateway_breaker_open", "1 for each breaker tripped now", labels=["scope", "id"])
        for b in breakers:
            open_.add_metric([b.scope, b.id], 1)
        yield open_
        yield GaugeMetricFamily("gateway_conversions_queued",
                                "Approvals whose conversion the workers' supervisor has yet to count", value=queued)
        a = self.svc.settings.abuse
        spent = GaugeMetricFamily("gateway_spend_today", "Estimated spend today (UTC)", labels=["budget"])
        ratio = GaugeMetricFamily("gateway_spend_budget_ratio", "Today's spend over its daily budget", labels=["budget"])
        for key, micro in spend.items():
            label, budget = ("global", a.daily_budget) if key == "*" else (key, a.daily_budget_per_country)
            spent.add_metric([label], micro / MICRO)
            if budget > 0:
                ratio.add_metric([label], micro / MICRO / budget)
        yield spent
        yield ratio
