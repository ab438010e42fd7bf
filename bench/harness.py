"""The bench's harness: the Procfile's processes, the Redis databases, the fake Twilio, CPU readings,
timed phases, and the sizes of a full and a quick run (the scenarios are in bench/run.py)."""
from __future__ import annotations

import itertools
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psutil
import redis

from bench import work
from bench.load import Client, Phase, expect, run_phase
from bench.procs import Processes, answers, argv_of, cpu_seconds, free_port, poll, procfile

GATEWAY_DB, REFERENCE_DB = 12, 13
API_KEY = "bench-api-key-" + "0123456789abcdef"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2


@dataclass(frozen=True)
class Sizes:
    """How much work each part of the bench does."""

    api: dict[int, int]
    e2e: dict[int, int]
    sends: tuple[tuple[int, int], ...]  # (carrier delay ms, worker processes) per sends/s run
    fill_per_worker: int  # deliveries queued per worker before a sends/s run
    sends_cap: float  # seconds a sends/s run lasts at most after the first answer
    trips: int  # whole verifications counted through the round-trip proxy
    memory: int  # verifications in the Redis memory measurement
    cap: float
    rounds: int = 3
    workers: int = 2


FULL = Sizes(api={1: 300, 8: 1000, 32: 2000}, e2e={1: 200, 8: 600, 32: 1000},
             sends=((20, 1), (20, 2), (200, 1), (200, 2), (200, 4)), fill_per_worker=1500, sends_cap=10,
             trips=100, memory=1000, cap=60)
QUICK = Sizes(api={1: 40, 8: 150, 32: 300}, e2e={1: 30, 8: 100, 32: 200},
              sends=((20, 1), (200, 1), (200, 2)), fill_per_worker=300, sends_cap=4,
              trips=20, memory=200, cap=15, rounds=1)


def redis_base() -> str:
    """The Redis server (REDIS_URL's host, else 127.0.0.1:6379), without a database."""
    parts = urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379")
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Drain:
    """Jobs a set of workers ran, as timed by the fake Twilio's answers."""

    jobs: int
    workers: int
    worker_class: str
    rate: float          # jobs/s between the 10th and 90th percentile answers (steady state)
    rate_overall: float  # jobs/s from the first request to the last answer
    max_in_flight: int
    cpu_ms_per_job: dict[str, float] = field(default_factory=dict)


class Harness:
    """A bench run's processes, Redis databases, fake Twilio and measuring tools (the scenarios: bench/run.py)."""

    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes
        base = redis_base()
        self.gw = redis.Redis.from_url(f"{base}/{GATEWAY_DB}")
        self.ref = redis.Redis.from_url(f"{base}/{REFERENCE_DB}")
        self.fake_port, self.web_port, self.ref_port = free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items()
               if k not in ("TWILIO_REGION", "TWILIO_EDGE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
        env.update(PYTHONUNBUFFERED="1", NO_PROXY="127.0.0.1,localhost")
        self.procs = Processes(env)
        self.gateway_env = {
            "REDIS_URL": f"{base}/{GATEWAY_DB}", "GATEWAY_API_KEYS": API_KEY, "GATEWAY_SECRET_KEY": "b" * 40,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": "bench-auth-token",
            "TWILIO_API_BASE_URL": f"http://127.0.0.1:{self.fake_port}", "SMS_FROM": "+15005550006",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{self.web_port}", "PORT": str(self.web_port),
            # Distinct numbers per verification anyway; these keep timers out of the measured phases.
            "RATE_LIMIT_PER_NUMBER": "100000", "DELIVERY_DEADLINE": "3600", "SMS_CODE_TTL": "3600",
            "LOG_LEVEL": "WARNING", "WORKER_CLASS": "simple",
            # The abuse checks still run on every start (admit.lua), with limits no bench reaches:
            # the bench's numbers share one range and its fills never convert.
            "GLOBAL_SENDS_PER_MINUTE": "10000000", "RATE_LIMIT_PER_COUNTRY": "10000000",
            "PUMPING_MIN_SENDS": "1000000", "PUMPING_COUNTRY_MIN_SENDS": "10000000",
            "DAILY_BUDGET": "1000000000", "DAILY_BUDGET_PER_COUNTRY": "1000000000",
            # The sends/s runs queue a backlog on purpose (ignored by versions without the bound).
            "SEND_BACKLOG_MAX": "10000000",
        }
        self.reference_env = {**self.gateway_env, "REDIS_URL": f"{base}/{REFERENCE_DB}", "PORT": str(self.ref_port)}
        self.numbers = (f"+4860{i:07d}" for i in itertools.count(1))
        self.fake = Client(self.fake_port)
        self.cpu_groups = {"web": "web", "reference": "ref", "workers": "worker", "fake twilio": "fake"}
        try:
            self.redis_proc: psutil.Process | None = psutil.Process(int(self.gw.info("server")["process_id"]))
        except (psutil.Error, KeyError):
            self.redis_proc = None
        self.results: dict[str, Any] = {"sizes": asdict(sizes)}

    # -- processes --------------------------------------------------------------------
    def start_servers(self, reference: bool = True) -> None:
        """Flush the databases; start the fake Twilio, the gateway's web and (unless told not to)
        the reference's web."""
        self.gw.flushdb()
        web = procfile()["web"]
        self.procs.spawn("fake", [sys.executable, "-m", "bench.fake_twilio", "--port", str(self.fake_port),
                                  "--auth-token", self.gateway_env["TWILIO_AUTH_TOKEN"]])
        self.procs.spawn("web", argv_of(web, self.web_port), self.gateway_env)
        waits = [("fake", f"http://127.0.0.1:{self.fake_port}/_bench/stats"),
                 ("web", f"http://127.0.0.1:{self.web_port}/readyz")]
        if reference:
            self.ref.flushdb()
            ref_line = web.replace('"gateway:create_app()"', '"bench.reference_app:create_app()"')
            assert ref_line != web, "the Procfile's web line no longer names gateway:create_app()"
            self.procs.spawn("ref", argv_of(ref_line, self.ref_port), self.reference_env)
            waits.append(("ref", f"http://127.0.0.1:{self.ref_port}/healthz"))
        for name, url in waits:
            poll(lambda: self.procs.alive(name) and answers(url), 30, name)

    def start_workers(self, count: int, wait: bool = True, env: dict[str, str] | None = None,
                      prefix: str = "worker") -> None:
        """Start worker processes (the Procfile's worker line) and optionally wait until they work."""
        line = procfile()["worker"]
        for i in range(count):
            self.procs.spawn(f"{prefix}-{i}", argv_of(line), env or self.gateway_env)
        if wait:
            poll(lambda: [self.procs.alive(f"{prefix}-{i}") for i in range(count)]
                 and self.workers_ready() >= count, 60, f"{count} workers")

    def workers_ready(self) -> int:
        """Worker processes that have started working (their supervisor marked them alive)."""
        return sum(1 for _ in self.gw.scan_iter(match="gw:worker:*:alive", count=1000))

    def stop_workers(self) -> None:
        """Stop every worker process (rq unregisters them on the way out)."""
        self.procs.stop(*[name for name in self.procs.procs if name.startswith("worker")])

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each component."""
        used = {group: cpu_seconds(self.procs.tree(prefix)) for group, prefix in self.cpu_groups.items()}
        used["load generator"] = cpu_seconds([psutil.Process()])
        if self.redis_proc is not None:
            used["redis-server"] = cpu_seconds([self.redis_proc])
        t = psutil.cpu_times()
        used["machine"] = t.user + t.nice + t.system + t.irq + t.softirq + t.steal
        used["clock"] = time.monotonic()
        return used

    @staticmethod
    def others_share(before: dict[str, float], after: dict[str, float]) -> float:
        """The share (%) of the machine's CPUs that processes outside this bench used in between."""
        ours = sum(after[k] - before[k] for k in after if k not in ("machine", "clock"))
        elapsed = (after["clock"] - before["clock"]) * (psutil.cpu_count() or 1)
        return round(100 * max(after["machine"] - before["machine"] - ours, 0.0) / elapsed, 1) if elapsed else 0.0

    @staticmethod
    def per_item(before: dict[str, float], after: dict[str, float], items: int) -> dict[str, float]:
        """CPU milliseconds per item of each component between two cpu() readings (+ others' share)."""
        per = {k: round((after[k] - before.get(k, 0.0)) * 1000 / max(items, 1), 3)
               for k in after if k not in ("machine", "clock")}
        per["others %"] = Harness.others_share(before, after)
        return per

    # -- the fake Twilio ----------------------------------------------------------------
    def fake_call(self, method: str, path: str, body: Any = None) -> Any:
        """A control call to the fake Twilio."""
        return expect(*self.fake.request(method, path, body), 200)

    def phase(self, items: list[Any], concurrency: int, work: Any, cap: float | None = None) -> tuple[Phase[Any], dict[str, float]]:
        """Run one timed phase and the CPU each component spent per item in it."""
        ports = {"gw": (self.web_port, API_KEY), "ref": (self.ref_port, API_KEY), "fake": (self.fake_port, None)}
        before = self.cpu()
        result = run_phase(items, concurrency, work, ports, cap or self.sizes.cap)
        cpu = self.per_item(before, self.cpu(), result.done)
        if result.errors:
            print(f"  ! {len(result.errors)} errors, first: {result.errors[0]}", flush=True)
        return result, cpu

    def take(self, count: int) -> list[str]:
        """Fresh destination numbers (valid Polish mobiles), one per verification."""
        return list(itertools.islice(self.numbers, count))

    def fill(self, count: int) -> list[tuple[str, str]]:
        """Start verifications (untimed) so that their delivery jobs wait in the queue."""
        started, _ = self.phase(self.take(count), 32, work.gw_start, cap=120)
        return started.results

    def drain(self, expected: int, workers: int, worker_class: str = "simple", start: bool = True) -> Drain:
        """Run workers until the fake Twilio has answered `expected` messages; time the steady part."""
        if start:
            self.start_workers(workers, wait=False)
        marks: dict[str, dict[str, float]] = {}
        low, high = max(1, expected // 10), max(2, expected * 9 // 10)

        def progressed() -> bool:
            count = int(self.fake_call("GET", "/_bench/stats")["count"])
            for name, at in (("low", low), ("high", high)):
                if count >= at and name not in marks:
                    marks[name] = {**self.cpu(), "count": float(count)}
            for i in range(workers):
                self.procs.alive(f"worker-{i}")
            return count >= expected

        poll(progressed, 60 + expected / 2, f"{expected} messages", interval=0.05)
        stats = self.fake_call("GET", "/_bench/stats")
        self.stop_workers()
        answered = sorted(stats["answered"])
        lo, hi = answered[low - 1], answered[high - 1]
        steady = (high - low) / (hi - lo) if hi > lo else 0.0
        overall = len(answered) / (answered[-1] - min(stats["arrived"])) if answered else 0.0
        jobs = marks["high"]["count"] - marks["low"]["count"]
        cpu = self.per_item({k: v for k, v in marks["low"].items() if k != "count"},
                            {k: v for k, v in marks["high"].items() if k != "count"}, int(jobs))
        return Drain(len(answered), workers, worker_class, round(steady, 2), round(overall, 2),
                     int(stats["max_in_flight"]), cpu)
