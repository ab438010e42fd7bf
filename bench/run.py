"""The benchmark of issue 2: the gateway as the Procfile runs it (gunicorn web + rq workers)
beside a bare Flask + Redis reference, against a local fake Twilio and a real Redis.

Entry: `python -m bench.run [--quick]`. Uses Redis databases 12 (gateway) and 13 (reference),
flushed before and after. Results: bench/results/<time>.json and .md (and printed).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from bench import probes, report, work
from bench.harness import API_KEY, FULL, GATEWAY_DB, QUICK, Drain, Harness, redis_base
from bench.load import Client, Phase, expect, merge
from bench.procs import OUT, RssSampler, answers, argv_of, free_port, poll, procfile
from bench.rtproxy import RoundTripProxy


class Bench(Harness):
    """One bench run: the scenarios, in order, and what they measured."""

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
        started, _ = self.phase(self.take(count), 32, start, cap=120 + count / 100)
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
                 120 + count / 100, "deliveries and callbacks")
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
    parser.add_argument("--memory", type=int, default=0,
                        help="verifications in the Redis bytes measurement (default 1000, --quick 200)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops what was started
    sizes = QUICK if args.quick else FULL
    if args.memory:
        sizes = replace(sizes, memory=args.memory)
    bench = Bench(sizes)
    if args.bytes_only:
        results = bench.run_bytes_only()
    elif args.e2e_only:
        results = bench.run_e2e_only()
    else:
        results = bench.run_api_only() if args.api_only else bench.run()
    flags = (" --quick" if args.quick else "") + (" --api-only" if args.api_only else "") \
        + (" --bytes-only" if args.bytes_only else "") + (" --e2e-only" if args.e2e_only else "") \
        + (f" --memory {args.memory}" if args.memory else "")
    results["command"] = "python -m bench.run" + flags
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S") + flags.replace(" --", "-").replace(" ", "-")
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
