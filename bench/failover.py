"""Failover drill on loopback: a Redis primary, a replica and 3 Sentinels under the Procfile's
processes (2 web, 2 workers) and the carrier simulator; steady load with Idempotency-Key retries;
the replica stopped under write load, then the primary killed (kill -9) while it lags.

Run: `python -m bench.failover [--seconds 30] [--wait-replicas 0 1]`. Prints one JSON report per
setting and writes bench/results/failover.json. Every process it starts is stopped by PID.

Deliveries are the senders' (gateway/sender.py: the gw:outbox ZSET, claimed with a lease), so what
the carrier got is read from the simulator's messages, each tied to its verification and attempt by
its status callback URL; timers are the gw:timers entries, watched on the primary of the moment.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import requests

from bench.procs import OUT, answers
from gateway.store import OUTBOX, TIMERS
from tests.sentinels import SentinelGroup
from tests.stack import LOGS, Stack, code_of, free_port, poll, procfile

REPLY_TIMEOUT = 10  # seconds: sms_reply probes end by their gw:timers entry only (nobody replies)
PROBE_EVERY = 10  # one start in ten is a timer probe
CLIENTS = 4
LAG = 1.5  # seconds the replica is stopped before the primary is killed
PACE = 0.25  # seconds between one client's starts: steady load, not saturation
# The last client's numbers get a slow carrier: it accepts a send at once and answers this late,
# so sends are in flight when the replicas stop (the case a lost claim or sid record would double).
SLOW_MS = 800
# The drill never checks codes, which the abuse guards would read as SMS pumping; 0 = off.
NO_ABUSE_LIMITS = {name: "0" for name in (
    "RATE_LIMIT_PER_IP", "RATE_LIMIT_PER_COUNTRY", "GLOBAL_SENDS_PER_MINUTE", "PUMPING_MIN_SENDS",
    "PUMPING_COUNTRY_MIN_SENDS", "DAILY_BUDGET", "DAILY_BUDGET_PER_COUNTRY")}


@dataclass
class Ack:
    """A start acknowledged (201) to a client."""

    id: str
    to: str
    channel: str
    at: float


@dataclass
class Load:
    """What the clients saw."""

    acks: list[Ack] = field(default_factory=list)
    ok_times: list[float] = field(default_factory=list)
    refused: int = 0  # 503 answers
    refused_numbers: set[str] = field(default_factory=set)  # numbers whose start got a 503 at least once
    errors: dict[str, int] = field(default_factory=dict)  # other answers or connection errors
    lock: threading.Lock = field(default_factory=threading.Lock)


def _client(urls: list[str], api_key: str, load: Load, stop: threading.Event, seed: int) -> None:
    """Start verifications one after another; retry each with its Idempotency-Key until acknowledged."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {api_key}"
    n = 0
    while not stop.is_set():
        n += 1
        to = f"+4860{seed}{n:06d}"
        channel = "sms_reply" if n % PROBE_EVERY == 0 else "sms"
        key = uuid.uuid4().hex
        give_up = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < give_up:
            url = urls[(n + seed) % len(urls)]
            try:
                r = http.post(f"{url}/v1/verifications", json={"to": to, "channel": channel},
                              headers={"Idempotency-Key": key}, timeout=15)
                status = r.status_code
            except requests.RequestException as exc:
                status, r = type(exc).__name__, None  # type: ignore[assignment]
            now = time.time()
            with load.lock:
                if status == 201 and r is not None:
                    load.acks.append(Ack(r.json()["id"], to, channel, now))
                    load.ok_times.append(now)
                elif status == 503:
                    load.refused += 1
                    load.refused_numbers.add(to)
                else:
                    load.errors[str(status)] = load.errors.get(str(status), 0) + 1
            if status == 201:
                break
            time.sleep(0.2)
        stop.wait(PACE)


def _writer(group: SentinelGroup, stop: threading.Event) -> None:
    """Extra write load (100 KB values in db 1) so that a stopped replica falls well behind."""
    blob = os.urandom(100_000)
    client = None
    while not stop.is_set():
        try:
            client = client or group.client(group.primary_port() or 0, db=1)
            client.set(f"blob:{time.monotonic_ns() % 200}", blob)
        except Exception:  # noqa: BLE001 - the primary is gone mid-drill; find the new one
            client = None
            time.sleep(0.1)


@dataclass
class Timers:
    """What gw:timers held on the primary of the moment: each member's due times, and the most
    overdue an entry was seen (now - due, by Redis's clock) from the promotion on."""

    due: dict[str, float] = field(default_factory=dict)  # member -> the earliest due time seen after promotion
    overdue_max: float = 0.0
    overdue_member: str | None = None
    samples: int = 0
    promoted_at: float | None = None  # set by the drill; watching counts only from then


def _watch_timers(group: SentinelGroup, timers: Timers, stop: threading.Event) -> None:
    """Sample gw:timers every 0.25 s on the Sentinels' primary (after the promotion: the new one)."""
    client, port = None, None
    while not stop.wait(0.25):
        if timers.promoted_at is None:
            continue
        try:
            now_port = group.primary_port()
            if client is None or now_port != port:
                client, port = group.client(now_port or 0), now_port
            seconds, micros = client.time()
            now = seconds + micros / 1e6
            entries = client.zrange(TIMERS, 0, -1, withscores=True)
        except Exception:  # noqa: BLE001 - between two primaries; look again
            client = None
            continue
        timers.samples += 1
        for raw, due in entries:
            member = raw.decode()
            timers.due[member] = min(due, timers.due.get(member, due))
            late = now - max(due, timers.promoted_at)
            if late > timers.overdue_max:
                timers.overdue_max, timers.overdue_member = late, member


def _replica_follows(group: SentinelGroup, port: int, since: float, found: dict[str, float]) -> None:
    """How long after `since` the new primary (on `port`) has a replica in sync (state=online)."""
    client = group.client(port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            info = client.info("replication")
            if any(isinstance(v, dict) and v.get("state") == "online" for k, v in info.items() if k.startswith("slave")):
                found["replica_online_after_promotion_s"] = round(time.time() - since, 2)
                return
        except Exception:  # noqa: BLE001 - a report, not a step of the drill
            pass
        time.sleep(0.1)


def _outbox(client_of: Any) -> dict[str, float]:
    """The outbox's entries (member -> due), or {} when that primary does not answer."""
    try:
        return {m.decode(): d for m, d in client_of().zrange(OUTBOX, 0, -1, withscores=True)}
    except Exception:  # noqa: BLE001 - a report, not a step of the drill
        return {}


def drill(wait_replicas: int, seconds: float) -> dict[str, Any]:
    """One run; the report of what clients saw and what Redis and the handsets hold afterwards."""
    # Two replicas, so that after the failover one is left to confirm writes (REDIS_WAIT_REPLICAS=1).
    group = SentinelGroup(down_after_ms=1000, failover_timeout_ms=5000, replicas=2)
    stack: Stack | None = None
    stop = threading.Event()
    load = Load()
    timers = Timers()
    watching = threading.Event()  # set: stop watching gw:timers (after the probes ended)
    threads: list[threading.Thread] = []
    try:
        group.start()
        stack = Stack(0, REDIS_URL=group.url(0), SMS_REPLY_TIMEOUT=str(REPLY_TIMEOUT), FALLBACK_CHANNELS="",
                      REDIS_WAIT_REPLICAS=str(wait_replicas), REDIS_WAIT_MS="100", **NO_ABUSE_LIMITS)
        stack.start()
        stack.sim("POST", "rules", {"prefix": f"+4860{CLIENTS}", "behaviour": {"rest_delay_ms": SLOW_MS}})
        web2 = free_port()
        stack.spawn("web2", procfile()["web"].strip().replace("$PORT", str(web2)))
        stack.spawn_worker("worker2")
        urls = [stack.url, f"http://127.0.0.1:{web2}"]
        poll(lambda: answers(urls[1] + "/readyz"), 40, 0.2, what="web2")
        pids = {name: proc.pid for name, proc in stack.procs.items()}
        threads = [threading.Thread(target=_client, args=(urls, "test-api-key-0123456789", load, stop, i))
                   for i in range(1, CLIENTS + 1)]
        threads.append(threading.Thread(target=_writer, args=(group, stop)))
        watcher = threading.Thread(target=_watch_timers, args=(group, timers, watching))
        for t in [*threads, watcher]:
            t.start()
        began = time.time()
        time.sleep(seconds / 3)  # steady load on the healthy pair
        old = group.primary_port() or 0
        replicas = [p for p in group.data_ports if p != old]
        for replica in replicas:
            group.signal(replica, signal.SIGSTOP)  # the replicas fall behind under write load...
        time.sleep(LAG)
        outbox_before = _outbox(lambda: group.client(old))  # what the old primary held at its death
        killed_at = time.time()
        group.signal(old, signal.SIGKILL)  # ...and the primary dies while they lag
        for replica in replicas:
            group.signal(replica, signal.SIGCONT)
        poll(lambda: group.primary_port() not in (None, old), 60, 0.1, what="promotion")
        promoted_at = time.time()
        timers.promoted_at = promoted_at
        follows: dict[str, float] = {}
        threading.Thread(target=_replica_follows, args=(group, group.primary_port() or 0, promoted_at, follows),
                         daemon=True).start()
        outbox_after = _outbox(lambda: group.client(group.primary_port() or 0))  # what the new one holds
        time.sleep(max(seconds - (promoted_at - began), REPLY_TIMEOUT + 2))  # load on the new primary
        stop.set()
        for t in threads:
            t.join(70)
        ended_at = time.time()
        # Let deliveries and timers finish, then look.
        poll(lambda: _pending_probes(stack, load.acks) == 0, REPLY_TIMEOUT + 30, 0.5, what="probes ended")
        # A lease left behind by the failover ends within delivery_lease (TWILIO_TIMEOUT + 10 s): any
        # duplicate would go out by then, and the outbox is empty once everything was sent.
        try:
            poll(lambda: stack.redis.zcard(OUTBOX) == 0, 40, 0.5, what="outbox empty")
        except TimeoutError:
            pass  # an entry left for good shows as undelivered (undelivered_details), not a lost run
        watching.set()
        watcher.join(5)
        report = _report(stack, load, wait_replicas, began, killed_at, promoted_at, ended_at, load.acks, pids, timers)
        report["replica_online_after_promotion_s"] = follows.get("replica_online_after_promotion_s")
        report["details"] = _details(stack, report.pop("_duplicates"), outbox_before, outbox_after)
        report["undelivered_details"] = [_record(stack, vid, outbox_before, outbox_after) for vid in report.pop("_never")]
        return report
    finally:
        stop.set()
        watching.set()
        for t in threads:
            t.join(5)
        if stack:
            stack.stop()
        # The Redis and Sentinel logs of the run, for what the figures cannot say (resyncs, votes).
        kept = OUT / f"failover-logs-{wait_replicas}"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(group.dir, kept, ignore=shutil.ignore_patterns("*.rdb"), dirs_exist_ok=True)
        group.stop()


def _pending_probes(stack: Stack, acks: list[Ack]) -> int:
    pipe = stack.redis.pipeline(transaction=False)
    probes = [a for a in acks if a.channel == "sms_reply"]
    for a in probes:
        pipe.hget(f"gw:vf:{a.id}", "status")
    return sum(1 for s in pipe.execute() if s == b"pending")


def _report(stack: Stack, load: Load, wait_replicas: int, began: float, killed_at: float, promoted_at: float,
            ended_at: float, acks: list[Ack], pids: dict[str, int], timers: Timers) -> dict[str, Any]:
    ok = sorted(load.ok_times)
    gaps = [b - a for a, b in zip([began, *ok], [*ok, ended_at])]
    pipe = stack.redis.pipeline(transaction=False)
    for a in acks:
        pipe.hmget(f"gw:vf:{a.id}", "status", "reason", "expires", "ended")
    records = pipe.execute()
    missing = [a for a, r in zip(acks, records) if r[0] is None]
    present = [(a, r) for a, r in zip(acks, records) if r[0] is not None]
    sent = stack.sent_by_attempt()
    by_verification: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (verification_id, _), messages in sent.items():
        by_verification[verification_id] += messages
    acknowledged = {a.id for a in acks}
    never = [a.id for a, _ in present if not by_verification.get(a.id)]
    duplicates = {key: ms for key, ms in sent.items() if len(ms) > 1}
    # The worse case: the user holds two different codes for one verification (the first stops working).
    two_codes = [vid for vid, ms in by_verification.items() if len({code_of(m["body"]) for m in ms}) > 1]
    # A start refused (503) yet delivered, lost with the primary, created again by the retry and texted again.
    per_number: dict[str, set[str]] = defaultdict(set)
    for vid, ms in by_verification.items():
        per_number[ms[0]["to"]].add(vid)
    texted_for_two = [n for n, vids in per_number.items() if len(vids) > 1]
    lateness = []
    for a, r in present:
        if a.channel == "sms_reply" and r[1] == b"reply_timeout" and r[3]:
            # Its gw:timers due time as the new primary held it, unless a lease pushed that past the
            # expiry it stands for (a timer claimed on the old primary: lateness counts from the expiry).
            due = min(timers.due.get(a.id, float(r[2])), float(r[2]))
            if due > killed_at - 1:  # timers that fell due around or after the failover
                lateness.append(float(r[3]) - max(due, promoted_at))
    return {
        "wait_replicas": wait_replicas,
        "acknowledged_starts": len(acks),
        "answers_503": load.refused,
        "other_errors": load.errors,
        "longest_gap_s": round(max(gaps), 2),
        "failover_s": round(promoted_at - killed_at, 2),
        "acknowledged_missing": len(missing),
        "acknowledged_missing_but_texted": sum(1 for a in missing if a.id in by_verification),
        "never_delivered": len(never),
        "messages_sent": sum(len(ms) for ms in sent.values()),
        "messages_not_acknowledged": sum(len(ms) for (vid, _), ms in sent.items() if vid not in acknowledged),
        "duplicate_sms": sum(len(ms) - 1 for ms in duplicates.values()),
        "attempts_texted_twice": len(duplicates),
        "verifications_with_two_codes": len(two_codes),
        "numbers_texted_for_two_verifications": len(texted_for_two),
        "timer_probes_after_failover": len(lateness),
        "timer_late_max_s": round(max(lateness), 2) if lateness else None,
        "timer_late_median_s": round(sorted(lateness)[len(lateness) // 2], 2) if lateness else None,
        "timers_overdue_max_s": round(timers.overdue_max, 2),
        "timers_samples": timers.samples,
        "processes_restarted": [n for n, pid in pids.items() if stack.procs[n].pid != pid or stack.procs[n].poll() is not None],
        "_duplicates": duplicates,
        "_never": never,
    }


def _record(stack: Stack, vid: str, outbox_before: dict[str, float], outbox_after: dict[str, float]) -> dict[str, Any]:
    """An undelivered verification: its record now (no code fields) and its outbox entry around the failover."""
    raw = stack.redis.hgetall(f"gw:vf:{vid}")
    entry = f"{vid}:{int(raw.get(b'n', b'1'))}"
    return {"entry": entry, "outbox_old_primary_at_kill": outbox_before.get(entry),
            "outbox_new_primary_at_promotion": outbox_after.get(entry),
            "outbox_now": stack.redis.zscore(OUTBOX, entry),
            "record_now": {k.decode(): v.decode() for k, v in raw.items() if not k.decode().startswith(("code", "enc"))}}


def _details(stack: Stack, duplicates: dict[tuple[str, int], list[dict[str, Any]]], outbox_before: dict[str, float],
             outbox_after: dict[str, float]) -> list[dict[str, Any]]:
    """For each attempt texted twice: its messages, which worker sent each (its log line), and the
    outbox entry and record around the failover."""
    logs = {name: (LOGS / f"stack-{stack.db}-{name}.log").read_text(errors="replace")
            for name in stack.procs if name.startswith("worker")}
    out = []
    for (vid, attempt), messages in duplicates.items():
        entry = f"{vid}:{attempt}"
        raw = stack.redis.hgetall(f"gw:vf:{vid}")
        record = {k.decode(): v.decode() for k, v in raw.items() if not k.decode().startswith(("code", "enc"))}
        out.append({
            "entry": entry,
            "messages": [{"sid": m["sid"], "time": m["time"], "code_digits": len(code_of(m["body"])),
                          "same_code": code_of(m["body"]) == code_of(messages[0]["body"]),
                          "sent_by": [n for n, text in logs.items() if f"sms {m['sid']} sent" in text]}
                         for m in messages],
            "outbox_old_primary_at_kill": outbox_before.get(entry),
            "outbox_new_primary_at_promotion": outbox_after.get(entry),
            "record_now": record,
        })
    return out


def main() -> None:
    """Run the drill once per REDIS_WAIT_REPLICAS setting."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--wait-replicas", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379")
    reports = []
    for n in args.wait_replicas:
        report = drill(n, args.seconds)
        print(json.dumps(report), flush=True)
        reports.append(report)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "failover.json").write_text(json.dumps(reports, indent=2))


if __name__ == "__main__":
    sys.exit(main())
