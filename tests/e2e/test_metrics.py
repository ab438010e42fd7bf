"""/metrics of the Procfile's web process (2 gunicorn workers): no counter ever goes backwards."""
from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.stack import Stack, poll

DB = 13
SCRAPES = 60
MONOTONIC = {"counter", "histogram"}  # every sample of these (buckets, counts, sums) only grows


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    running = Stack(DB, FALLBACK_CHANNELS="", RATE_LIMIT_PER_NUMBER="1000")
    try:
        yield running.start()
    finally:
        running.stop()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One scrape on a new connection (so either worker may answer): every monotonic sample."""
    r = requests.get(f"{url}/metrics", timeout=20, headers={"Connection": "close"})
    assert r.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(r.text) if family.type in MONOTONIC
        for sample in family.samples if not sample.name.endswith("_created")
    }


def gunicorn_workers(stack: Stack) -> list[int]:
    """The PIDs of the web process's gunicorn workers (children of its master)."""
    master = stack.procs["web"].pid
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def test_counters_never_go_backwards_between_scrapes(stack: Stack) -> None:
    def traffic(i: int) -> None:
        if i % 10 == 0:
            stack.start_verification(f"+48600300{i:03d}", channel="sms")
        requests.get(f"{stack.url}/healthz", timeout=20, headers={"Connection": "close"})

    previous: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    backwards = []
    with ThreadPoolExecutor(4) as pool:
        for i in range(SCRAPES):
            list(pool.map(traffic, range(i * 3, i * 3 + 3)))
            if i == SCRAPES // 2:  # a worker dies; gunicorn starts another, its counts must stay
                dead = gunicorn_workers(stack)[0]
                os.kill(dead, signal.SIGKILL)
                poll(lambda: dead not in gunicorn_workers(stack) and len(gunicorn_workers(stack)) == 2, 30,
                     what="gunicorn to replace the worker")
            current = scrape(stack.url)
            for series, value in previous.items():
                if current.get(series, 0.0) < value:
                    backwards.append((i, series, value, current.get(series)))
            previous = {**previous, **current}
    assert not backwards, backwards[:5]
    started = sum(v for (name, _), v in previous.items() if name == "gateway_verifications_started_total")
    assert started >= SCRAPES * 3 // 10  # the cluster counters are there too
    healthz = [v for (name, labels), v in previous.items()
               if name == "gateway_request_seconds_count" and ("endpoint", "/healthz") in labels]
    assert sum(healthz) >= SCRAPES * 3  # every request of every worker is counted
