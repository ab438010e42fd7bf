"""Deliverability: a population of numbers through the Procfile processes and the carrier simulator.

    python -m bench.deliverability [--population 200] [--deadline 30] [--seed 9]

Each user starts an `auto` verification (SMS to mobiles, a call to fixed lines; the default
fallback after SMS is a call). The mix (issue #9): of the mobiles' SMS, 75 % delivered and
5 % each undelivered 30003, undelivered 30006, failed 30007, refused at the REST call with
21614, and silently lost (`sent`, then nothing); 5 % of the numbers are fixed lines; a call
is answered with # 90 % of the time and rings out unanswered 10 %. A user whose SMS arrives
types the code at once (the bench reads it from the simulator and checks it through the API).

Reported: the share approved within 90 s, and the extra time to approval of the users whose
first channel failed: their time to approval minus the median time of users reached by a
call at once (the fixed lines), so it is what the failed SMS cost them. Loopback only; every
process is stopped by its PID; Redis database 14 on REDIS_URL's host, flushed before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import psutil
import redis
import requests

from bench.procs import OUT, Processes, answers, argv_of, cpu_seconds, free_port, poll, procfile
from tests.conftest import ACCOUNT_SID, API_KEY, AUTH_TOKEN, redis_base

DB = 14
WINDOW_S = 90.0
SENDER = "+15005550006"
# First-channel outcomes for mobiles (share of their SMS) and the simulator behaviour of each.
SMS_MIX: dict[str, tuple[float, dict[str, Any]]] = {
    "delivered": (0.75, {"sms": "deliver"}),
    "undelivered 30003": (0.05, {"sms": "undelivered", "sms_error_code": 30003}),
    "undelivered 30006": (0.05, {"sms": "undelivered", "sms_error_code": 30006}),
    "failed 30007": (0.05, {"sms": "failed", "sms_error_code": 30007}),
    "REST 21614": (0.05, {"sms": "reject", "sms_error_code": 21614}),
    "silently lost": (0.05, {"sms": "lost"}),
}
FIXED_SHARE, UNANSWERED_SHARE = 0.05, 0.10
CARRIER_REPORTED = ("undelivered 30003", "undelivered 30006", "failed 30007", "REST 21614")


@dataclass
class User:
    """One number of the population and what happened to it."""

    number: str
    group: str
    answers_call: bool
    started: float = 0.0
    verification: str = ""
    approved_after: float | None = None
    status: str = "pending"
    reason: str | None = None
    channels: list[str] = field(default_factory=list)
    failure_reported: float | None = None  # when the carrier said the SMS failed (callback or REST error)


def split(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Whole counts per group that add up to total (largest remainders)."""
    raw = {k: total * v / sum(shares.values()) for k, v in shares.items()}
    counts = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


def population(size: int, seed: int) -> list[User]:
    """The users, with exactly the mix's shares (unanswered calls spread over every group)."""
    fixed = round(size * FIXED_SHARE)
    counts = {**split(size - fixed, {k: v[0] for k, v in SMS_MIX.items()}), "fixed line": fixed}
    rng, users = random.Random(seed), []
    for index, (group, count) in enumerate(counts.items()):
        unanswered = set(rng.sample(range(count), round(count * UNANSWERED_SHARE)))
        prefix = "+4822" if group == "fixed line" else "+48600"
        width = 12 - len(prefix)
        users += [User(f"{prefix}{index:02d}{i:0{width - 2}d}", group, i not in unanswered) for i in range(count)]
    rng.shuffle(users)
    return users


def epoch(stamp: str) -> float:
    """Seconds since the epoch of the simulator's ISO 8601 UTC time stamps."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


class Run:
    """The processes, the population and the measurements of one run."""

    def __init__(self, size: int, deadline: int, seed: int, workers: int, rate: float) -> None:
        self.users = population(size, seed)
        self.deadline, self.workers, self.rate = deadline, workers, rate
        self.sim_port, self.web_port = free_port(), free_port()
        self.sim_url, self.url = f"http://127.0.0.1:{self.sim_port}", f"http://127.0.0.1:{self.web_port}"
        self.redis = redis.Redis.from_url(f"{redis_base()}/{DB}")
        env = {k: v for k, v in os.environ.items()
               if k not in ("TWILIO_REGION", "TWILIO_EDGE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
        env.update(PYTHONUNBUFFERED="1", NO_PROXY="127.0.0.1,localhost", LOG_LEVEL="WARNING")
        self.procs = Processes(env)
        self.gateway_env = {
            "REDIS_URL": f"{redis_base()}/{DB}", "GATEWAY_API_KEYS": API_KEY, "GATEWAY_SECRET_KEY": "d" * 40,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_API_BASE_URL": self.sim_url,
            "SMS_FROM": SENDER, "VOICE_CALLER_ID": SENDER, "PUBLIC_BASE_URL": self.url, "PORT": str(self.web_port),
            "DELIVERY_DEADLINE": str(deadline), "RATE_LIMIT_PER_NUMBER": "1000",
        }
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {API_KEY}"

    def start(self) -> None:
        """Flush the database; start the simulator, the web line and the worker lines; wait for each."""
        self.redis.flushdb()
        self.procs.spawn("sim", [sys.executable, "-m", "simulator"], {
            "SIM_PORT": str(self.sim_port), "SIM_ACCOUNT_SID": ACCOUNT_SID, "SIM_AUTH_TOKEN": AUTH_TOKEN,
            "SIM_NUMBERS": SENDER, "SIM_SMS_URL": f"{self.url}/webhooks/twilio/sms/inbound"})
        lines = procfile()
        self.procs.spawn("web", argv_of(lines["web"], self.web_port), self.gateway_env)
        for i in range(self.workers):
            self.procs.spawn(f"worker-{i}", argv_of(lines["worker"]), self.gateway_env)
        poll(lambda: self.procs.alive("sim") and answers(f"{self.sim_url}/_sim/config"), 30, "simulator")
        poll(lambda: self.procs.alive("web") and answers(f"{self.url}/readyz"), 30, "web")
        poll(lambda: self.redis.scard("rq:workers") >= self.workers, 60, "workers")

    def stop(self) -> None:
        """Stop every process by its PID and flush the database."""
        self.procs.stop()
        self.redis.flushdb()

    def sim(self, method: str, path: str, body: Any = None) -> Any:
        """A call to the simulator's control API."""
        r = requests.request(method, f"{self.sim_url}/_sim/{path}", json=body, timeout=10)
        r.raise_for_status()
        return r.json()

    def configure(self, user: User) -> None:
        """The handset's behaviour: its SMS outcome, and # or no answer on a call."""
        sms = SMS_MIX.get(user.group, (0, {}))[1]
        call = {"call": "answer", "keys": ["#"]} if user.answers_call else {"call": "no-answer"}
        self.sim("PUT", f"handsets/{user.number}/behaviour", {**sms, **call})

    def arrive(self) -> None:
        """The users sign in at the arrival rate (each start in its own thread, so none waits for another)."""
        first = time.monotonic()
        with ThreadPoolExecutor(32) as pool:
            for index, user in enumerate(self.users):
                if self.rate > 0:  # 0: everyone at once (a burst)
                    time.sleep(max(0.0, first + index / self.rate - time.monotonic()))
                pool.submit(self.begin, user)

    def begin(self, user: User) -> None:
        """Start the user's verification (auto: SMS to a mobile, a call to a fixed line)."""
        user.started = time.time()
        r = self.http.post(f"{self.url}/v1/verifications", json={"to": user.number, "channel": "auto"}, timeout=30)
        r.raise_for_status()
        user.verification = r.json()["id"]

    def type_codes(self, until: float) -> None:
        """Users whose SMS arrived type its code at once (the simulator's messages, polled)."""
        waiting = {u.number: u for u in self.users if u.group == "delivered"}
        with ThreadPoolExecutor(8) as pool:
            while waiting and time.time() < until:
                for message in self.sim("GET", "messages")["messages"]:
                    user = waiting.get(message["to"])
                    if user and user.verification and message["status"] == "delivered":
                        code = re.search(r"\b(\d{4,10})\b", message["body"])
                        if code:
                            del waiting[user.number]
                            pool.submit(self.http.post, f"{self.url}/v1/verifications/{user.verification}/check",
                                        json={"code": code.group(1)}, timeout=30)
                time.sleep(0.1)

    def failure_reports(self) -> dict[str, float]:
        """When the simulator reported each number's SMS failure: the status callback, or the refused REST call."""
        when: dict[str, float] = {}
        for hook in self.sim("GET", "webhooks?kind=sms-status")["webhooks"]:
            params = dict(hook["params"])
            if params.get("MessageStatus") in ("failed", "undelivered"):
                when.setdefault(params["To"], epoch(hook["time"]))
        for record in self.sim("GET", "requests")["requests"]:
            if record["path"].endswith("/Messages.json") and record["status"] >= 400:
                when.setdefault(dict(record["form"]).get("To", ""), epoch(record["time"]))
        return when

    def collect(self) -> None:
        """Outcomes from the audit stream; the stream ID is when Redis ended the verification (ms)."""
        by_id = {u.verification: u for u in self.users}
        reports = self.failure_reports()
        for entry_id, fields in self.redis.xrange("gw:audit"):
            record = {k.decode(): v.decode() for k, v in fields.items()}
            user = by_id.get(record["verification_id"])
            if user is None:
                continue
            user.status, user.reason = record["status"], record["reason"] or None
            user.failure_reported = reports.get(user.number)
            user.channels = [a.get("channel", "") for a in json.loads(record.get("attempts") or "[]")]
            if user.status == "approved":
                user.approved_after = int(entry_id.decode().split("-")[0]) / 1000 - user.started


def summarise(run: Run, load: dict[str, float], elapsed: float) -> dict[str, Any]:
    """The figures: approvals within the window, times by group, extra time after a failed first channel."""
    users = run.users
    approved = [u for u in users if u.approved_after is not None and u.approved_after <= WINDOW_S]
    reachable = [u for u in users if u.group == "delivered" or u.answers_call]
    times = {g: [u.approved_after for u in users if u.group == g and u.approved_after is not None]
             for g in [*SMS_MIX, "fixed line"]}
    baseline = statistics.median(times["fixed line"]) if times["fixed line"] else 0.0

    def extra(groups: tuple[str, ...]) -> dict[str, float | None]:
        values = [t - baseline for g in groups for t in times[g]]
        return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95)}

    after_report = [u.started + u.approved_after - u.failure_reported for u in users
                    if u.group in CARRIER_REPORTED and u.approved_after is not None and u.failure_reported]

    return {
        "population": len(users), "approved_within_90s": len(approved),
        "share_approved_within_90s": round(100 * len(approved) / len(users), 2),
        "ceiling": round(100 * len(reachable) / len(users), 2),
        "outcomes": {f"{s}/{r}": sum(1 for u in users if (u.status, u.reason) == (s, r))
                     for s, r in sorted({(u.status, u.reason) for u in users}, key=str)},
        "time_to_approval": {g: {"n": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95)}
                             for g, v in times.items()},
        "call_first_baseline_p50": baseline,
        "extra_carrier_reported": extra(CARRIER_REPORTED),
        "extra_silently_lost": extra(("silently lost",)),
        "failure_report_to_approval": {"n": len(after_report), "p50": percentile(after_report, 50),
                                       "p95": percentile(after_report, 95)},
        "arrivals_per_s": run.rate,
        "delivery_deadline": run.deadline, "workers": run.workers, "elapsed_s": round(elapsed, 1), "load": load,
    }


def main() -> None:
    """Run the population once and print (and keep) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=200)
    parser.add_argument("--deadline", type=int, default=30, help="DELIVERY_DEADLINE for the gateway")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--rate", type=float, default=5.0, help="users starting a verification per second (0: all at once)")
    args = parser.parse_args()
    run = Run(args.population, args.deadline, args.seed, args.workers, args.rate)
    try:
        run.start()
        for user in run.users:
            run.configure(user)
        ours = lambda: cpu_seconds([*run.procs.tree(""), psutil.Process()])  # noqa: E731
        machine0, ours0, clock0, load0 = psutil.cpu_times(), ours(), time.monotonic(), os.getloadavg()
        arrivals = len(run.users) / run.rate if run.rate > 0 else 0.0
        typing = threading.Thread(target=run.type_codes, args=(time.time() + arrivals + WINDOW_S,))
        typing.start()
        run.arrive()
        until = max(u.started for u in run.users) + WINDOW_S + 5
        typing.join()
        poll(lambda: run.redis.xlen("gw:audit") >= len(run.users) or time.time() > until, WINDOW_S + 30,
             "every verification to end or the window to pass", interval=0.5)
        machine1, ours1, elapsed = psutil.cpu_times(), ours(), time.monotonic() - clock0
        run.collect()
    finally:
        run.stop()
    busy = [sum(getattr(t, k) for k in ("user", "nice", "system", "irq", "softirq", "steal")) for t in (machine0, machine1)]
    cpus = psutil.cpu_count() or 1
    load = {"machine_busy_pct": round(100 * (busy[1] - busy[0]) / (elapsed * cpus), 1),
            "bench_processes_pct": round(100 * (ours1 - ours0) / (elapsed * cpus), 1),
            "loadavg_1m_before": round(load0[0], 2), "loadavg_1m_after": round(os.getloadavg()[0], 2), "cpus": cpus}
    load["others_pct"] = round(max(load["machine_busy_pct"] - load["bench_processes_pct"], 0.0), 1)
    figures = summarise(run, load, elapsed)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"deliverability-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"figures": figures, "users": [asdict(u) for u in run.users]}, indent=1))
    print(json.dumps(figures, indent=1))
    print(f"(users in {path.relative_to(OUT.parent.parent)})")


if __name__ == "__main__":
    main()
