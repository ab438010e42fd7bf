"""The benchmark of issue 2: the gateway as the Procfile runs it (gunicorn web + rq workers)
beside a bare Flask + Redis reference, against a local fake Twilio and a real Redis.

Entry: `python -m bench.run [--quick]`. Uses Redis databases 12 (gateway) and 13 (reference),
flushed before and after. Results: bench/results/<time>.json and .md (and printed).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psutil
import redis

from bench import probes, report, work
from bench.load import Client, Phase, expect, merge, run_phase
from bench.procs import OUT, Processes, RssSampler, answers, argv_of, cpu_seconds, free_port, poll, procfile
from bench.rtproxy import RoundTripProxy

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


class Bench:
    """One bench run: its processes, its Redis databases, and what it measured."""

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
        per["others %"] = Bench.others_share(before, after)
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

    # -- scenarios --------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load scripts and open connections in every process, untimed."""
        self.fake_call("POST", "/_bench/reset")
        started = self.fill(64)
        self.start_workers(self.sizes.workers)
        poll(lambda: self.fake_call("GET", "/_bench/stats")["count"] >= len(started), 60, "warm-up deliveries")
        codes = self.fake_call("GET", "/_bench/codes")
        self.phase([(vid, codes[n]) for vid, n in started], 8, work.gw_check)
        self.stop_workers()
        refs, _ = self.phase([(n, "123456") for n in self.take(64)], 8, work.ref_start)
        self.phase(refs.results, 8, work.ref_check)

    def round_trips(self) -> None:
        """Exact Redis round trips of one start and one check, counted in redis-py in this process."""
        from bench import inprocess

        self.results["round_trips"] = {"exact": inprocess.count_requests(self.gateway_env, self.take(3))}

    def api_and_reference(self) -> None:
        """At each concurrency, `rounds` times: the reference's start and check phases, then the
        gateway's API path; figures pool the rounds, the ratio is also given per round."""
        rows = []
        for level, count in self.sizes.api.items():
            phases: dict[str, list[Phase[Any]]] = {"ref start": [], "ref check": [], "gw start": [], "gw check": []}
            cpu: dict[str, list[dict[str, float]]] = {"gateway start": [], "gateway check": [],
                                                      "reference start": [], "reference check": []}
            ratios = []
            for round_ in range(self.sizes.rounds):
                print(f"- API path, concurrency {level}, round {round_ + 1}: {count} verifications", flush=True)
                refs, ref_start_cpu = self.phase([(n, f"{secrets.randbelow(10**6):06d}") for n in self.take(count)],
                                                 level, work.ref_start)
                ref_checks, ref_check_cpu = self.phase(refs.results, level, work.ref_check)
                self.fake_call("POST", "/_bench/reset")
                starts, start_cpu = self.phase(self.take(count), level, work.gw_start)
                drain = self.drain(starts.done, self.sizes.workers)
                codes = self.fake_call("GET", "/_bench/codes")
                checks, check_cpu = self.phase([(vid, codes[n]) for vid, n in starts.results if n in codes],
                                               level, work.gw_check)
                for key, value in (("ref start", refs), ("ref check", ref_checks), ("gw start", starts), ("gw check", checks)):
                    phases[key].append(value)
                for key, used in (("gateway start", start_cpu), ("gateway check", check_cpu),
                                  ("reference start", ref_start_cpu), ("reference check", ref_check_cpu)):
                    cpu[key].append(used)
                gw, ref = report.api_row(starts, checks), report.api_row(refs, ref_checks)
                ratios.append(round(gw["verifications_per_s"] / ref["verifications_per_s"], 3))
                print(f"  gateway {gw['verifications_per_s']:.0f}/s, reference {ref['verifications_per_s']:.0f}/s", flush=True)
            rows.append({
                "concurrency": level, "count": count, "rounds": self.sizes.rounds, "ratios": ratios,
                "gateway": report.api_row(merge(phases["gw start"]), merge(phases["gw check"])),
                "reference": report.api_row(merge(phases["ref start"]), merge(phases["ref check"])),
                "drain": asdict(drain),
                "cpu_ms": {k: {m: round(sum(d[m] for d in v) / len(v), 3) for m in v[0]} for k, v in cpu.items()},
            })
        self.results["api"] = rows

    def end_to_end(self) -> None:
        """Whole SMS verifications (start, send, `sent` and `delivered` callbacks, check) with the
        workers running; CPU per verification by process, callbacks included."""
        self.start_workers(self.sizes.workers)
        self.fake_call("POST", "/_bench/config", {"callbacks": True})
        rows = []
        try:
            with RssSampler(self.procs, {"web": "web", "worker": "worker"}) as rss:
                for level, count in self.sizes.e2e.items():
                    print(f"- end to end, concurrency {level}: {count}", flush=True)
                    self.fake_call("POST", "/_bench/reset")
                    result, cpu = self.phase(self.take(count), level, work.gw_e2e)
                    stats = self.fake_call("GET", "/_bench/stats?brief=1")
                    rows.append({"concurrency": level, "count": count, **report.e2e_row(result), "cpu_ms": cpu,
                                 "callbacks": stats["callbacks_done"], "callbacks_failed": stats["callbacks_failed"]})
                    print(f"  {rows[-1]['verifications_per_s']:.0f}/s, server CPU "
                          f"{cpu['web'] + cpu['workers'] + cpu.get('redis-server', 0):.2f} ms each", flush=True)
        finally:
            self.fake_call("POST", "/_bench/config", {"callbacks": False})
            self.stop_workers()
        self.results["e2e"] = {"rows": rows, "rss_peak": rss.peak}

    def sends(self) -> None:
        """Sends per second per worker process against a carrier taking 20 ms and 200 ms: a backlog
        queued first (workers stopped), then the workers run for a bounded time."""
        rows = []
        try:
            for delay, workers in self.sizes.sends:
                self.gw.flushdb()
                self.fake_call("POST", "/_bench/config", {"delay_ms": delay})
                self.fake_call("POST", "/_bench/reset")
                started = self.fill(workers * self.sizes.fill_per_worker)
                print(f"- sends: {delay} ms carrier, {workers} worker(s), {len(started)} queued", flush=True)
                self.fake_call("POST", "/_bench/reset")
                with RssSampler(self.procs, {"worker": "worker"}) as rss:
                    drain = self.timed_drain(workers)
                rows.append({**asdict(drain), "delay_ms": delay, "rss_peak": rss.peak})
                print(f"  {drain.rate:.1f} sends/s ({drain.rate / workers:.1f} per process), "
                      f"{drain.max_in_flight} in flight at most", flush=True)
        finally:
            self.fake_call("POST", "/_bench/config", {"delay_ms": 0})
            self.gw.flushdb()
        self.results["sends"] = rows

    def timed_drain(self, workers: int) -> Drain:
        """Start workers on a backlog; stop them sends_cap seconds after the first answer."""
        self.start_workers(workers, wait=False)
        marks: dict[str, dict[str, float]] = {}
        first: list[float] = []

        def progressed() -> bool:
            count = int(self.fake_call("GET", "/_bench/stats?brief=1")["count"])
            for i in range(workers):
                self.procs.alive(f"worker-{i}")
            if count and not first:
                first.append(time.monotonic())
                marks["low"] = self.cpu()
            return bool(first) and time.monotonic() - first[0] >= self.sizes.sends_cap

        poll(progressed, 60 + self.sizes.sends_cap, "sends", interval=0.1)
        marks["high"] = self.cpu()
        stats = self.fake_call("GET", "/_bench/stats")
        self.stop_workers()
        answered = sorted(stats["answered"])
        low, high = max(1, len(answered) // 10), max(2, len(answered) * 9 // 10)
        lo, hi = answered[low - 1], answered[high - 1]
        steady = (high - low) / (hi - lo) if hi > lo else 0.0
        overall = len(answered) / (answered[-1] - answered[0]) if len(answered) > 1 else 0.0
        cpu = self.per_item(marks["low"], marks["high"], len(answered))
        return Drain(len(answered), workers, "simple", round(steady, 2), round(overall, 2),
                     int(stats["max_in_flight"]), cpu)

    def memory(self) -> None:
        """Redis bytes per SMS verification, queued (workers stopped) and pending after its code was
        sent and both callbacks came: every key it added, every shared key it grew, and used_memory;
        started with `to` alone, then naming a user and a client address (their limit counters)."""
        reports = []
        for label, start in (("", work.gw_start), (", user_id and client_ip", work.gw_start_identified)):
            reports += self.memory_of(start, label)
        self.results["memory"] = [asdict(r) | {"total": r.total} for r in reports]

    def memory_of(self, start: Any, label: str, count: int = 0) -> list[probes.MemoryReport]:
        """The memory of `count` (else `sizes.memory`) verifications started by `start`, queued then
        pending; MEMORY STATS' growth between the states beside it."""
        count = count or self.sizes.memory
        self.gw.flushdb()
        before, used0, stats0 = probes.key_sizes(self.gw), probes.settled_used_memory(self.gw), probes.memory_stats(self.gw)
        self.fake_call("POST", "/_bench/reset")
        started, _ = self.phase(self.take(count), 32, start, cap=120)
        at_once = probes.used_memory(self.gw)
        queued, used1, stats1 = probes.key_sizes(self.gw), probes.settled_used_memory(self.gw), probes.memory_stats(self.gw)
        vf_keys = [k for k in queued if k.startswith("gw:vf:")][:200]
        report_queued = probes.memory_added("queued" + label, before, queued, (used0, at_once, used1), started.done)
        self.results["memory_fields_queued" + label] = probes.hash_fields(self.gw, vf_keys[0]) if vf_keys else {}
        self.results["memory_encodings_queued" + label] = probes.encodings(self.gw, vf_keys)
        self.fake_call("POST", "/_bench/config", {"callbacks": True})
        try:
            self.start_workers(1)
            poll(lambda: self.fake_call("GET", "/_bench/stats?brief=1")["callbacks_done"] >= 2 * started.done,
                 120, "deliveries and callbacks")
            time.sleep(0.5)  # the worker's last bookkeeping after its send
        finally:
            self.fake_call("POST", "/_bench/config", {"callbacks": False})
            self.stop_workers()
        at_once = probes.used_memory(self.gw)
        pending, used2, stats2 = probes.key_sizes(self.gw), probes.settled_used_memory(self.gw), probes.memory_stats(self.gw)
        report_pending = probes.memory_added("pending" + label, before, pending, (used0, at_once, used2), started.done)
        self.results["memory_fields_pending" + label] = probes.hash_fields(self.gw, vf_keys[0]) if vf_keys else {}
        for state, stats in (("queued", stats1), ("pending", stats2)):
            self.results["memory_stats_" + state + label] = probes.stats_growth(stats0, stats, started.done)
        self.results["memory_encodings_pending" + label] = probes.encodings(self.gw, vf_keys)
        self.gw.flushdb()
        return [report_queued, report_pending]

    def trips(self) -> None:
        """Redis round trips of whole SMS verifications (start, send, two callbacks, check), counted
        per connection by a proxy in front of Redis, for a web and a worker started on it."""
        host, port = urlsplit(redis_base()).hostname or "127.0.0.1", urlsplit(redis_base()).port or 6379
        proxy = RoundTripProxy((host, port)).start()
        web_port = free_port()
        env = {**self.gateway_env, "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/{GATEWAY_DB}",
               "PORT": str(web_port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{web_port}"}
        client, fake = Client(web_port, API_KEY), Client(self.fake_port)
        self.fake_call("POST", "/_bench/config", {"callbacks": True})
        try:
            self.procs.spawn("tripweb", argv_of(procfile()["web"], web_port), env)
            poll(lambda: self.procs.alive("tripweb") and answers(f"http://127.0.0.1:{web_port}/readyz"), 30, "web")
            self.start_workers(1, env=env, prefix="tripworker")

            def one(number: str, marks: list[tuple[str, list[int], float]] | None) -> None:
                note = (lambda step: marks.append((step, proxy.snapshot(), time.monotonic()))) if marks is not None \
                    else (lambda step: None)
                note("begin")
                vid = expect(*client.request("POST", "/v1/verifications", {"to": number}), 201)["id"]
                note("start")
                code = expect(*fake.request("GET", f"/_bench/code?to={quote(number)}&wait=30"), 200)["code"]
                note("send and callbacks")
                body = expect(*client.request("POST", f"/v1/verifications/{vid}/check", {"code": code}), 200)
                assert body["valid"], body
                note("check")

            for number in self.take(5):
                one(number, None)  # warm: connections opened, scripts loaded
            idle_from, idle_at = proxy.snapshot(), time.monotonic()
            time.sleep(3)
            idle_to, idle_s = proxy.snapshot(), time.monotonic() - idle_at
            stats0 = self.gw.info("commandstats")
            marks: list[tuple[str, list[int], float]] = []
            for number in self.take(self.sizes.trips):
                one(number, marks)
            stats1 = self.gw.info("commandstats")
            proxy.identify()
            groups = {p.pid: "web" for p in self.procs.tree("tripweb")}
            groups |= {p.pid: "worker" for p in self.procs.tree("tripworker")}
            idle = {g: n / idle_s for g, n in proxy.by_group(idle_from, idle_to, groups).items()}
            steps: dict[str, dict[str, float]] = {}
            for (_, a, at), (step, b, bt) in zip(marks, marks[1:]):
                if step == "begin":
                    continue
                for group, n in proxy.by_group(a, b, groups).items():
                    per = steps.setdefault(step, {})
                    per[group] = per.get(group, 0.0) + n - idle.get(group, 0.0) * (bt - at)
            n = self.sizes.trips
            calls = {k: (v1["calls"] - stats0.get(k, {}).get("calls", 0)) / n for k, v1 in stats1.items()}
            self.results["trips"] = {
                "verifications": n, "idle_per_s": {g: round(v, 2) for g, v in idle.items()},
                "per_step": {s: {g: round(v / n, 2) for g, v in per.items()} for s, per in steps.items()},
                "commands_per_verification": {k.removeprefix("cmdstat_"): round(v, 2) for k, v in calls.items() if v >= 0.05},
            }
        finally:
            self.fake_call("POST", "/_bench/config", {"callbacks": False})
            client.close()
            fake.close()
            self.procs.stop("tripweb", *[p for p in self.procs.procs if p.startswith("tripworker")])
            proxy.stop()

    def _session(self, scenarios: Callable[[], None], reference: bool = True) -> dict[str, Any]:
        """Start the servers, run the scenarios, then stop every process and flush the databases
        (also on errors); the results with the machine, the code and the seconds taken."""
        self.results["machine"] = report.machine(self.gw)
        self.results["git"] = report.git_state()
        self.results["load_before"] = os.getloadavg()
        began = time.monotonic()
        try:
            self.start_servers(reference=reference)
            scenarios()
        finally:
            self.procs.stop()
            self.gw.flushdb()
            self.ref.flushdb()
        self.results["seconds"] = round(time.monotonic() - began, 1)
        self.results["load_after"] = os.getloadavg()
        return self.results

    def run_api_only(self) -> dict[str, Any]:
        """Only the API path beside the reference (`--api-only`), its paired rounds as in the full run."""
        def scenarios() -> None:
            self.warm_up()
            self.api_and_reference()
        return self._session(scenarios)

    def run_bytes_only(self) -> dict[str, Any]:
        """Only the Redis bytes per verification (`--bytes-only`), as in the full run."""
        def scenarios() -> None:
            print("- warm-up", flush=True)
            for start in (work.gw_start, work.gw_start_identified):
                self.memory_of(start, "", count=64)  # every command seen once: Redis 7's latency histograms
            print("- Redis memory per verification", flush=True)
            self.memory()
        return self._session(scenarios, reference=False)

    def run_e2e_only(self) -> dict[str, Any]:
        """Only whole verifications end to end with CPU per process (`--e2e-only`), as in the full run."""
        def scenarios() -> None:
            self.warm_up()
            self.end_to_end()
        return self._session(scenarios)

    def run(self) -> dict[str, Any]:
        """Every scenario, in order; all processes stopped and databases flushed at the end."""
        def scenarios() -> None:
            print("- warm-up", flush=True)
            self.warm_up()
            print("- round trips", flush=True)
            self.round_trips()
            print("- round trips of whole verifications (proxy)", flush=True)
            self.trips()
            with RssSampler(self.procs, {"web": "web", "reference": "ref"}) as rss:
                self.api_and_reference()
            self.results["api_rss_peak"] = rss.peak
            self.end_to_end()
            self.results["ttl"] = asdict(probes.ttl_scan(self.gw))
            self.results["audit_length"] = self.gw.xlen("gw:audit")
            self.results["audit_bytes_per_record"] = round(
                (self.gw.memory_usage("gw:audit", samples=0) or 0) / max(self.results["audit_length"], 1))
            print("- Redis memory per verification", flush=True)
            self.memory()
            self.sends()
        return self._session(scenarios)


def main() -> None:
    """Entry point: `python -m bench.run [--quick]`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small run (under about two minutes)")
    parser.add_argument("--api-only", action="store_true", help="only the API path beside the reference")
    parser.add_argument("--bytes-only", action="store_true", help="only the Redis bytes per verification")
    parser.add_argument("--e2e-only", action="store_true", help="only whole verifications, CPU per process")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops what was started
    sizes = QUICK if args.quick else FULL
    bench = Bench(sizes)
    if args.bytes_only:
        results = bench.run_bytes_only()
    elif args.e2e_only:
        results = bench.run_e2e_only()
    else:
        results = bench.run_api_only() if args.api_only else bench.run()
    flags = (" --quick" if args.quick else "") + (" --api-only" if args.api_only else "") \
        + (" --bytes-only" if args.bytes_only else "") + (" --e2e-only" if args.e2e_only else "")
    results["command"] = "python -m bench.run" + flags
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S") + flags.replace(" --", "-")
    if args.api_only:
        Path(OUT / f"{stamp}.json").write_text(json.dumps(results, indent=2, default=str))
        for row in results["api"]:
            print(f"c={row['concurrency']}: ratio per round {row['ratios']}; gateway "
                  f"{row['gateway']['verifications_per_s']}/s, reference {row['reference']['verifications_per_s']}/s; "
                  f"cpu ms {row['cpu_ms']}")
        print(f"written: bench/results/{stamp}.json")
        return
    if args.e2e_only:
        Path(OUT / f"{stamp}.json").write_text(json.dumps(results, indent=2, default=str))
        for row in results["e2e"]["rows"]:
            print(f"c={row['concurrency']}: {row['verifications_per_s']}/s; cpu ms per verification {row['cpu_ms']}")
        print(f"written: bench/results/{stamp}.json")
        return
    if args.bytes_only:
        Path(OUT / f"{stamp}.json").write_text(json.dumps(results, indent=2, default=str))
        print(report.memory_section(results))
        print(f"written: bench/results/{stamp}.json")
        return
    Path(OUT / f"{stamp}.json").write_text(json.dumps(results, indent=2, default=str))
    markdown = report.render(results)
    Path(OUT / f"{stamp}.md").write_text(markdown)
    print(markdown)
    print(f"written: bench/results/{stamp}.json and .md")


if __name__ == "__main__":
    main()
