"""The fault suite: a steady load of verifications through the Procfile's processes and the
carrier simulator, with faults injected in turn; figures for docs/reliability.md.

    python -m bench.faults            # about 4 minutes
    python -m bench.faults --quick    # about 2 minutes

Everything runs on loopback: a private redis-server with AOF (appendonly yes, everysec), the
web and worker lines of the Procfile (two workers), the simulator, and a fault proxy between
the gateway and the simulator (tests/faultproxy.py). Every process is stopped by its PID at
the end, also on errors. Each phase has a fixed length and every loop a deadline.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import requests

from tests.conftest import API_KEY
from tests.faultproxy import FaultProxy
from tests.stack import PrivateRedis, Stack, poll

OUT = Path(__file__).resolve().parent / "results"
CODE_TTL = 15  # seconds: every probe's expiry is a timer that must fire
TWILIO_TIMEOUT = 3
PROBE_EVERY = 4  # one verification in four is never checked: it must expire on time
# The load comes from one address to one country: lift the abuse limits (docs/abuse.md) out of the way.
UNLIMITED = {"RATE_LIMIT_PER_NUMBER": "1000", "RATE_LIMIT_PER_IP": "1000000", "RATE_LIMIT_PER_COUNTRY": "10000000",
             "GLOBAL_SENDS_PER_MINUTE": "10000000", "PUMPING_MIN_CONVERSION": "0", "DAILY_BUDGET": "1000000000",
             "DAILY_BUDGET_PER_COUNTRY": "1000000000"}


@dataclass
class Verification:
    """One verification the load started, and what became of it."""

    number: str
    phase: str
    probe: bool
    id: str = ""
    acked_at: float = 0.0
    expires_at: float = 0.0
    start_errors: int = 0
    approved: bool = False


@dataclass
class Phase:
    """A stretch of load with one fault injected at its start."""

    name: str
    started: float = 0.0
    ended: float = 0.0
    notes: list[str] = field(default_factory=list)


class Load:
    """Client threads: start (retrying with the same Idempotency-Key), wait for the SMS, check."""

    def __init__(self, stack: Stack, threads: int) -> None:
        self.stack = stack
        self.threads = threads
        self.phase = "warm-up"
        self.items: list[Verification] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._count = 0
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> None:
        for thread in self._workers:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(60)

    def _next(self) -> Verification:
        with self._lock:
            self._count += 1
            item = Verification(f"+48601{self._count:06d}", self.phase, self._count % PROBE_EVERY == 0)
            self.items.append(item)
            return item

    def _run(self) -> None:
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {API_KEY}"
        while not self._stop.is_set():
            item = self._next()
            if not self._start(http, item):
                continue
            if not item.probe:
                self._check(http, item)

    def _start(self, http: requests.Session, item: Verification) -> bool:
        key = uuid.uuid4().hex
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            try:
                r = http.post(self.stack.url + "/v1/verifications", json={"to": item.number, "channel": "sms"},
                              headers={"Idempotency-Key": key}, timeout=10)
                if r.status_code in (200, 201):
                    body = r.json()
                    item.id, item.acked_at = body["id"], time.time()
                    item.expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp()
                    return True
                if r.status_code < 500:
                    item.start_errors += 1
                    return False
            except requests.RequestException:
                pass
            item.start_errors += 1
            time.sleep(0.3)
        return False

    def _check(self, http: requests.Session, item: Verification) -> None:
        deadline = time.monotonic() + CODE_TTL
        while time.monotonic() < deadline and not self._stop.is_set():
            try:
                inbox = self.stack.inbox(item.number)
                if inbox:
                    code = re.search(r"\b(\d{4,10})\b", inbox[0]["body"]).group(1)  # type: ignore[union-attr]
                    r = http.post(f"{self.stack.url}/v1/verifications/{item.id}/check", json={"code": code}, timeout=10)
                    if r.status_code == 200:
                        item.approved = r.json().get("status") == "approved"
                        return
            except requests.RequestException:
                pass
            time.sleep(0.2)


def _busy_worker(stack: Stack, client_port: int) -> str | None:
    """The stack's name of the worker process whose connection sent a request (by its local port)."""
    for name, proc in stack.procs.items():
        if name.startswith("worker") and any(
                c.laddr and c.laddr.port == client_port for c in psutil.Process(proc.pid).net_connections("tcp")):
            return name
    return None


def kill_worker_mid_send(stack: Stack, proxy: FaultProxy, load: Load, phase: Phase) -> None:
    """Hold the next send at the carrier, kill -9 the worker running it, restart that worker
    (as a platform would), then let the held send through: Twilio did send it."""
    held_before = len(proxy.held())
    proxy.let_go.clear()
    proxy.plan.next = ["stall"]
    record = poll(lambda: proxy.held()[held_before:], 20, what="a send in flight")[0]
    item = next(i for i in load.items if i.number == record.to)
    poll(lambda: item.id, 10, what="the start's answer")
    name = poll(lambda: _busy_worker(stack, record.client_port), 10, what="the worker running the send")
    stack.kill(name)
    phase.notes.append(f"killed {name} while it sent to {record.to}")
    stack.spawn_worker(name)
    time.sleep(1)  # the stalled request reaches the carrier after its sender died
    proxy.let_go.set()


def kill_web_mid_request(stack: Stack, proxy: FaultProxy, load: Load, phase: Phase) -> None:
    """kill -9 one of gunicorn's worker processes while the load's requests are in flight."""
    children = psutil.Process(stack.procs["web"].pid).children()
    victim = children[0]
    victim.send_signal(signal.SIGKILL)
    phase.notes.append(f"killed gunicorn worker {victim.pid} ({len(children)} running)")


def redis_outage(server: PrivateRedis, crash: bool) -> Any:
    def inject(stack: Stack, proxy: FaultProxy, load: Load, phase: Phase) -> None:
        """Stop Redis (SIGTERM: AOF flushed; or kill -9: up to 1 s of writes lost with
        everysec), keep it down 3 s, start it again on the same files."""
        server.kill() if crash else server.stop()
        time.sleep(3)  # the outage itself
        server.start()
        phase.notes.append(f"redis {'killed' if crash else 'stopped'}, down 3 s")

    return inject


def carrier_faults(stack: Stack, proxy: FaultProxy, load: Load, phase: Phase) -> None:
    """From now to the phase's end, every 10th send answers 500 or times out (sent, answered late)."""
    proxy.plan.every, proxy.plan.cycle, proxy.plan.late_seconds = 10, ("error", "late"), TWILIO_TIMEOUT + 2


def _audit(stack: Stack) -> dict[str, dict[str, str]]:
    records = {}
    for _, fields in stack.redis.xrange("gw:audit"):
        record = {k.decode(): v.decode() for k, v in fields.items()}
        records[record["verification_id"]] = record
    return records


def _seconds(value: str) -> float:
    number = float(value)
    return number / 1000 if number > 1e11 else number


def measure(stack: Stack, load: Load, phases: list[Phase]) -> list[dict[str, Any]]:
    """The figures per phase, once everything has settled."""
    audit = _audit(stack)
    fired: dict[str, float] = {}  # probe id -> seconds its expiry timer fired after it was due
    rows = []
    for phase in phases:
        items = [i for i in load.items if i.phase == phase.name and i.id]
        lost = undelivered = duplicates = dup_differ = late_approvals = 0
        stranded: list[str] = []
        for item in items:
            if stack.api("GET", f"/v1/verifications/{item.id}").status_code == 404:
                lost += 1
                continue
            inbox = stack.inbox(item.number)
            codes = [re.search(r"\b(\d{4,10})\b", m["body"]).group(1) for m in inbox]  # type: ignore[union-attr]
            undelivered += not codes
            if not codes:
                v = stack.read(item.id)
                stranded.append(f"{item.id} {v.get('status')}/{[a['status'] for a in v.get('attempts', [])]}")
            duplicates += max(0, len(codes) - 1)
            dup_differ += len(set(codes)) > 1
            record = audit.get(item.id)
            if record and record["status"] == "approved" and _seconds(record["ended_at"]) > item.expires_at:
                late_approvals += 1
            if item.probe:
                if record and record["status"] == "expired":
                    fired[item.id] = _seconds(record["ended_at"]) - item.expires_at
                for code in codes:  # every code the probe got, tried after its expiry
                    if stack.check(item.id, code).get("status") == "approved":
                        late_approvals += 1
        rows.append({
            "phase": phase.name, "notes": "; ".join(phase.notes), "acknowledged": len(items),
            "not_acknowledged": sum(1 for i in load.items if i.phase == phase.name and not i.id),
            "start_retries": sum(i.start_errors for i in load.items if i.phase == phase.name),
            "lost": lost, "never_delivered": undelivered, "duplicate_sms": duplicates,
            "duplicates_with_another_code": dup_differ, "approved_after_expiry": late_approvals,
            "never_delivered_detail": stranded,
        })
    # Timers belong to the phase in which they fell due: that is where a fault delays them.
    bounds = [p.started for p in phases[1:]] + [float("inf")]
    for row, phase, end in zip(rows, phases, bounds):
        due = [i for i in load.items if i.probe and i.id and phase.started <= i.expires_at < end]
        lateness = sorted(fired[i.id] for i in due if i.id in fired)
        row.update({
            "timers_due": len(due), "timers_fired": len(lateness),
            "max_timer_lateness_s": round(lateness[-1], 1) if lateness else None,
            "median_timer_lateness_s": round(lateness[len(lateness) // 2], 1) if lateness else None,
        })
    return rows


def run(quick: bool, only: str = "") -> dict[str, Any]:
    """Start everything, run the phases, settle, measure, stop everything."""
    length = 20 if quick else 35
    server = PrivateRedis(aof=True)
    server.start()
    stack = Stack(0, redis_server=server.url, FALLBACK_CHANNELS="", SMS_CODE_TTL=str(CODE_TTL),
                  TWILIO_TIMEOUT=str(TWILIO_TIMEOUT), LOG_LEVEL="WARNING", **UNLIMITED)
    proxy = FaultProxy(stack.sim_url).start()
    stack.env["TWILIO_API_BASE_URL"] = proxy.url
    load = Load(stack, threads=3)
    faults = [("baseline", None), ("kill -9 worker mid-send", kill_worker_mid_send),
              ("kill -9 web process mid-request", kill_web_mid_request),
              ("Redis restart (AOF)", redis_outage(server, crash=False)),
              ("Redis crash, kill -9 (AOF everysec)", redis_outage(server, crash=True)),
              ("Twilio 500 / timeout on 10 %", carrier_faults)]
    faults = [f for f in faults if f[1] is None or not only or any(w in f[0].lower() for w in only.split(","))]
    phases: list[Phase] = []
    try:
        stack.start()
        stack.spawn_worker("worker-2")
        load.start()
        for name, inject in faults:
            phase = Phase(name, started=time.time())
            load.phase = name
            phases.append(phase)
            print(f"{time.strftime('%H:%M:%S')} {name}", flush=True)
            if inject:
                inject(stack, proxy, load, phase)
            time.sleep(max(0.0, phase.started + length - time.time()))  # the phase's fixed length
            proxy.plan.every = 0
            phase.ended = time.time()
        load.phase = "drain"
        load.stop()
        time.sleep(CODE_TTL + 10)  # the last probes expire and every retry (2, 5, 15 s) has run
        return {"when": datetime.now().isoformat(timespec="seconds"), "quick": quick, "phase_seconds": length,
                "client_threads": load.threads, "code_ttl": CODE_TTL, "rows": measure(stack, load, phases),
                "phases": [asdict(p) for p in phases]}
    finally:
        load.stop()
        for name, proc in list(stack.procs.items()):
            if name.startswith("worker") and os.environ.get("FAULTS_DUMP"):
                os.kill(proc.pid, signal.SIGUSR1)  # stacks into the worker's log (faulthandler)
        time.sleep(1 if os.environ.get("FAULTS_DUMP") else 0)
        stack.stop()
        proxy.stop()
        server.cleanup()


def table(result: dict[str, Any]) -> str:
    """The figures as a Markdown table."""
    head = ("| fault | acked | lost | never delivered | duplicate SMS (other code) | approved after expiry "
            "| expiry timers fired / due | timer lateness, median / max (s) |\n|---|---|---|---|---|---|---|---|\n")
    lines = [
        f"| {r['phase']} | {r['acknowledged']} | {r['lost']} | {r['never_delivered']} | "
        f"{r['duplicate_sms']} ({r['duplicates_with_another_code']}) | {r['approved_after_expiry']} | "
        f"{r['timers_fired']}/{r['timers_due']} | {r['median_timer_lateness_s']} / {r['max_timer_lateness_s']} |"
        for r in result["rows"]
    ]
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter phases")
    parser.add_argument("--only", default="", help="comma-separated words picking faults (e.g. redis,twilio)")
    args = parser.parse_args(argv)
    result = run(args.quick, args.only)
    OUT.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    (OUT / f"faults-{stamp}.json").write_text(json.dumps(result, indent=2))
    print(table(result))
    for row in result["rows"]:
        if row["notes"]:
            print(f"- {row['phase']}: {row['notes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
