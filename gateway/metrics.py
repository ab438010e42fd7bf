"""Prometheus metrics: cluster-wide counters kept in Redis, the rest per instance.

Counts of the whole cluster (verifications, carrier errors, fallbacks) are kept in Redis by the
scripts, so any instance answers the same, ever-growing figures. Request latency and this
instance's own counts live in its processes; under gunicorn, prometheus_client's multiprocess
mode (config/gunicorn.py) sums every worker of the instance, so a scrape answered by either
worker sees the same totals. Redis counters for latency would cost a round trip per request and
vanish whenever Redis does.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.carrier import KNOWN_CODES

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
REQUEST_LATENCY = Histogram(
    "gateway_request_seconds", "HTTP request latency of this instance", ["method", "endpoint", "status"],
    registry=REGISTRY, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PROCESS_ENDED = Counter(
    "gateway_process_verifications_ended", "Verifications ended by this instance's web processes",
    ["channel", "status", "reason"], registry=REGISTRY,
)
PROCESS_STARTED = Counter(
    "gateway_process_verifications_started", "Verifications started by this instance", ["channel"], registry=REGISTRY
)


def started(channel: str) -> None:
    """Count a verification started here."""
    PROCESS_STARTED.labels(channel).inc()


def ended(channel: str, status: str, reason: str) -> None:
    """Count a verification ended here (the cluster-wide count is kept by the Lua scripts)."""
    PROCESS_ENDED.labels(channel, status, reason or "none").inc()


def carrier_error(svc: "Services", code: int) -> None:
    """Count a Twilio error code, cluster-wide; unknown codes are flagged."""
    svc.store.count("carrier_errors", f"{code}|{'known' if code in KNOWN_CODES else 'unknown'}")


def fallback(svc: "Services", from_channel: str, to_channel: str, why: str) -> None:
    """Count a move from one channel to the next, cluster-wide."""
    svc.store.count("fallbacks", f"{from_channel}|{to_channel or 'none'}|{why}")


class RedisCounters(Collector):
    """Reads the cluster-wide counters from Redis at scrape time."""

    def __init__(self, svc: "Services") -> None:
        self.svc = svc

    def collect(self) -> Iterator[CounterMetricFamily]:
        try:
            counters = self.svc.store.counters()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            # Without Redis the cluster counters are unknown; this process's figures still serve.
            log.warning("metrics without cluster counters: %s", exc)
            return
        families = {
            "started": ("gateway_verifications_started", "Verifications started", ["channel"]),
            "ended": ("gateway_verifications_ended", "Verifications ended", ["channel", "status", "reason"]),
            "carrier_errors": ("gateway_carrier_errors", "Twilio errors by code", ["code", "classified"]),
            "fallbacks": ("gateway_fallbacks", "Moves to the next channel", ["from_channel", "to_channel", "why"]),
        }
        for name, (metric, doc, labels) in families.items():
            family = CounterMetricFamily(metric, doc, labels=labels)
            for label, value in counters.get(name, {}).items():
                parts = (label.split("|") + [""] * len(labels))[: len(labels)]
                family.add_metric([p or "none" for p in parts], value)
            yield family


class SendBacklog(Collector):
    """The send queue's backlog (outbox entries due now) and its bound, read at scrape time."""

    def __init__(self, svc: "Services") -> None:
        self.svc = svc

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("gateway_send_backlog_max",
                                "SEND_BACKLOG_MAX: due deliveries above which starts are refused (0: no bound)",
                                value=self.svc.settings.send_backlog_max)
        try:
            backlog = self.svc.store.backlog()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("metrics without the send backlog: %s", exc)
            return
        yield GaugeMetricFamily("gateway_send_backlog", "Deliveries due now and not yet taken by a sender",
                                value=backlog)


def render(svc: "Services") -> bytes:
    """The Prometheus text exposition of this instance plus the cluster counters."""
    from gateway.breakers import AbuseCollector

    local = REGISTRY
    if svc.settings.metrics_dir:
        local = CollectorRegistry()
        multiprocess.MultiProcessCollector(local, path=svc.settings.metrics_dir)
    cluster = CollectorRegistry()
    cluster.register(RedisCounters(svc))
    cluster.register(SendBacklog(svc))
    cluster.register(AbuseCollector(svc))
    return generate_latest(local) + generate_latest(cluster)
