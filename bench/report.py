"""Rows computed from phases, the machine's description, and the Markdown report of a run."""
from __future__ import annotations

import platform
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil
import redis

from bench.load import Phase

ROOT = Path(__file__).resolve().parent.parent

TARGET_RATIO = 0.6


def api_row(starts: Phase[Any], checks: Phase[Any]) -> dict[str, Any]:
    """One system's API-path figures: a timed start phase then a timed check phase."""
    seconds = starts.seconds + checks.seconds
    return {
        "starts": starts.done, "checks": checks.done, "errors": len(starts.errors) + len(checks.errors),
        "capped": starts.capped or checks.capped,
        "starts_per_s": round(starts.rate, 1), "checks_per_s": round(checks.rate, 1),
        "verifications_per_s": round(checks.done / seconds, 1) if seconds else 0.0,
        "start_p50_ms": round(starts.p("start", 50), 2), "start_p99_ms": round(starts.p("start", 99), 2),
        "check_p50_ms": round(checks.p("check", 50), 2), "check_p99_ms": round(checks.p("check", 99), 2),
    }


def e2e_row(phase: Phase[Any]) -> dict[str, Any]:
    """End-to-end figures of one phase of whole verifications."""
    row: dict[str, Any] = {"done": phase.done, "errors": len(phase.errors), "capped": phase.capped,
                           "verifications_per_s": round(phase.rate, 1)}
    for step in ("start", "deliver", "check", "e2e"):
        row[f"{step}_p50_ms"] = round(phase.p(step, 50), 2)
        row[f"{step}_p99_ms"] = round(phase.p(step, 99), 2)
    return row


def machine(r: redis.Redis) -> dict[str, Any]:
    """The machine and the versions the run used."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {
        "nproc": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": model, "kernel": platform.release(), "python": platform.python_version(),
        "redis-server": r.info("server")["redis_version"],
        **{name: version(name) for name in ("flask", "werkzeug", "gunicorn", "rq", "redis", "twilio")},
    }


def git_state() -> str:
    """The commit measured, and whether the work tree differed from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    changed = len(git("status", "--porcelain", "--untracked-files=no").splitlines())
    return git("rev-parse", "--short", "HEAD") + (f" + {changed} changed files" if changed else "")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "–"


def _table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _api(results: dict[str, Any]) -> str:
    rows = []
    for r in results["api"]:
        g, ref = r["gateway"], r["reference"]
        rows.append([
            r["concurrency"], r["count"], g["verifications_per_s"], ref["verifications_per_s"],
            f"**{_ratio(g['verifications_per_s'], ref['verifications_per_s'])}**",
            " ".join(f"{x:.2f}" for x in r.get("ratios", [])),
            f"{g['starts_per_s']} / {ref['starts_per_s']}", f"{g['checks_per_s']} / {ref['checks_per_s']}",
            f"{g['start_p50_ms']} / {g['start_p99_ms']}", f"{ref['start_p50_ms']} / {ref['start_p99_ms']}",
            f"{g['check_p50_ms']} / {g['check_p99_ms']}", f"{ref['check_p50_ms']} / {ref['check_p99_ms']}",
            g["errors"] + ref["errors"], max(v.get("others %", 0) for v in r["cpu_ms"].values()),
        ])
    return _table(["c", "n per round", "gateway verif/s", "reference verif/s", "ratio", "ratio per round", "starts/s gw / ref",
                   "checks/s gw / ref", "gw start p50/p99 ms", "ref start p50/p99 ms", "gw check p50/p99 ms",
                   "ref check p50/p99 ms", "errors", "others' CPU % (max)"], rows)


def _e2e(results: dict[str, Any]) -> str:
    rows = []
    for r in results["e2e"]["rows"]:
        c = r["cpu_ms"]
        server = c.get("web", 0) + c.get("workers", 0) + c.get("redis-server", 0)
        rows.append([
            r["concurrency"], r["done"], r["verifications_per_s"],
            f"{r['start_p50_ms']} / {r['start_p99_ms']}", f"{r['deliver_p50_ms']} / {r['deliver_p99_ms']}",
            f"{r['check_p50_ms']} / {r['check_p99_ms']}", f"{r['e2e_p50_ms']} / {r['e2e_p99_ms']}",
            r.get("callbacks", "–"), c.get("web", "–"), c.get("workers", "–"), c.get("redis-server", "–"),
            f"**{server:.2f}**", c.get("fake twilio", "–"), c.get("load generator", "–"),
            r["errors"] + r.get("callbacks_failed", 0), c.get("others %", ""),
        ])
    return _table(["c", "done", "verif/s", "start p50/p99 ms", "start→SMS read p50/p99 ms", "check p50/p99 ms",
                   "whole p50/p99 ms", "callbacks", "web CPU ms", "worker CPU ms", "redis CPU ms",
                   "server CPU ms", "fake Twilio CPU ms", "load gen CPU ms", "errors", "others' CPU %"], rows)


def _sends(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        per = r["rate"] / r["workers"]
        first = next((x for x in rows if x["delay_ms"] == r["delay_ms"]), r)
        base = first["rate"] / first["workers"]
        out.append([r["delay_ms"], r["workers"], r["jobs"], r["rate"], f"**{per:.1f}**",
                    f"{per / base:.2f}" if base else "–", r["max_in_flight"],
                    r["cpu_ms_per_job"].get("workers", "–"), r["cpu_ms_per_job"].get("redis-server", "–"),
                    round(r["rss_peak"].get("worker", 0) / 2**20, 1), r["cpu_ms_per_job"].get("others %", "")])
    return _table(["carrier ms", "worker processes", "sends", "sends/s (steady)", "per process",
                   "per process vs 1", "max in flight at Twilio", "worker CPU ms/send", "redis CPU ms/send",
                   "peak RSS MiB/process", "others' CPU %"], out)


def _trips(results: dict[str, Any]) -> str:
    t = results["trips"]
    groups = sorted({g for per in t["per_step"].values() for g in per})
    rows = [[step, *[per.get(g, 0) for g in groups], f"{sum(per.values()):.1f}"] for step, per in t["per_step"].items()]
    total = sum(sum(per.values()) for per in t["per_step"].values())
    rows.append(["**whole verification**", *[round(sum(p.get(g, 0) for p in t["per_step"].values()), 1) for g in groups],
                 f"**{total:.1f}**"])
    commands = sum(v for k, v in t["commands_per_verification"].items() if k not in ("info",))
    return (_table(["step (per verification)", *groups, "all"], rows) +
            f"\n\nOver {t['verifications']} verifications one after another; background round trips per second when "
            f"idle, subtracted: {t['idle_per_s']}. Redis commands per verification (INFO commandstats, Lua's "
            f"inner calls included): **{commands:.1f}** — " +
            ", ".join(f"{k} {v}" for k, v in sorted(t["commands_per_verification"].items(), key=lambda kv: -kv[1])))


def _cpu(results: dict[str, Any]) -> str:
    top = results["api"][-1]
    rows = [[f"API path c={top['concurrency']}: {name}", *[values.get(k, "–") for k in CPU_COLUMNS]]
            for name, values in top["cpu_ms"].items()]
    for r in results["e2e"]["rows"]:
        rows.append([f"end to end c={r['concurrency']} (with 2 callbacks)", *[r["cpu_ms"].get(k, "–") for k in CPU_COLUMNS]])
    return _table(["phase (ms per item)", *CPU_COLUMNS[:-1], "other processes' share of the CPUs"], rows)


CPU_COLUMNS = ["web", "reference", "workers", "redis-server", "fake twilio", "load generator", "others %"]


def _memory(results: dict[str, Any]) -> str:
    reports = results.get("memory", [])
    kinds = sorted({k for r in reports for k in r["per_kind"]})
    rows = []
    for kind in kinds:
        cells = []
        for r in reports:
            v = r["per_kind"].get(kind)
            cells += [f"{int(v['keys_added'])} / {int(v['keys_grown'])}" if v else "", v["bytes_each"] if v else ""]
        rows.append([f"`{kind}`", *cells])
    rows.append(["**MEMORY USAGE sum per verification**", *[c for r in reports for c in ("", f"**{r['total']:.0f}**")]])
    rows.append(["used_memory delta per verification (cross-check, settled)",
                 *[c for r in reports for c in ("", f"{r['used_memory_per_verification']:.0f}")]])
    rows.append(["used_memory delta read right after the requests",
                 *[c for r in reports for c in ("", f"{r.get('used_memory_at_once_per_verification', 0):.0f}")]])
    head = ["key kind"] + [h for r in reports for h in (f"{r['state']}: keys added / grown", f"{r['state']}: bytes each")]
    encodings = "; ".join(f"{k.removeprefix('memory_encodings_')}: {v}" for k, v in results.items()
                          if k.startswith("memory_encodings_"))
    return (_table(head, rows) + f"\n\nOver {reports[0]['verifications'] if reports else 0} verifications. "
            f"`gw:vf` encodings (OBJECT ENCODING of 200): {encodings}.")


def memory_section(results: dict[str, Any]) -> str:
    """The Redis bytes table alone (`python -m bench.run --bytes-only`)."""
    return "### Redis bytes per SMS verification (every key it adds or grows)\n\n" + _memory(results)


WHY_NO_TTL = {
    "gw:audit": "stream trimmed on every XADD by MINID (AUDIT_RETENTION): bounded by retention × end rate",
    "gw:conversions": "approvals whose conversion the workers' supervisor has yet to count: emptied every second "
                      "while a worker runs (here: what the last second's approvals left when the workers stopped)",
    "gw:metrics:ended": "counters; fields = channel × status × reason, a fixed set",
    "gw:metrics:started": "counters; fields = channels, a fixed set",
    "gw:metrics:carrier_errors": "counters; fields = Twilio error codes, a bounded set",
    "gw:metrics:fallbacks": "counters; fields = channel pairs × reasons, a fixed set",
    "rq:job:<uuid>": "rq jobs waiting: the timer job scheduled per pending verification (deleted when it runs, "
                     "result_ttl=0), or a delivery job still queued",
    "rq:scheduled:gateway": "rq's scheduled registry: one entry per timer job above",
    "rq:queues": "rq's set of queue names (one)",
    "rq:queue:gateway": "rq's queue: delivery jobs not yet taken",
    "rq:workers": "rq's set of live workers",
    "rq:workers:gateway": "rq's set of live workers of the queue",
}


def _ttl(results: dict[str, Any]) -> str:
    rows = [[f"`{k}`", v["type"], v["keys"], v["no_ttl"], v["size"] or "", WHY_NO_TTL.get(k, "") if v["no_ttl"] else ""]
            for k, v in sorted(results["ttl"]["kinds"].items())]
    return _table(["key kind", "type", "keys", "without TTL", "entries (single keys)", "why no TTL, and its bound"], rows)


def _rss(results: dict[str, Any]) -> str:
    rows = []
    for name, peaks in [("API path", results.get("api_rss_peak", {})), ("end to end", results["e2e"]["rss_peak"])]:
        for group in sorted(k for k in peaks if not k.endswith(":total")):
            rows.append([name, group, round(peaks[group] / 2**20, 1), round(peaks[group + ":total"] / 2**20, 1)])
    return _table(["phase", "process group", "peak RSS of one process MiB", "peak RSS of the group MiB"], rows)


def _contention(results: dict[str, Any]) -> str:
    worst = max(v.get("others %", 0) for r in results["api"] for v in r["cpu_ms"].values())
    if worst < 10:
        return f"Other processes used at most {worst:.0f}% of the CPUs during these phases."
    return (f"**Other processes on this shared machine used up to {worst:.0f}% of the CPUs during these phases**; "
            "the reference and the gateway alternate within each round, so the ratio per round is the fairer figure.")


def render(results: dict[str, Any]) -> str:
    """The run as Markdown tables."""
    m = results["machine"]
    trips = results["round_trips"]["exact"]
    parts = [
        f"Command: `{results['command']}` — {results['seconds']} s; load average before "
        f"{results['load_before'][0]:.2f}, after {results['load_after'][0]:.2f}; code at {results['git']}.",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}. Versions: Python "
        f"{m['python']}, redis-server {m['redis-server']}, Flask {m['flask']}, Werkzeug {m['werkzeug']}, gunicorn "
        f"{m['gunicorn']}, rq {m['rq']}, redis-py {m['redis']}, twilio {m['twilio']}.",
        "### API path (timed starts; deliveries drained untimed; timed checks)", _api(results),
        f"Target: gateway ≥ {TARGET_RATIO}× the reference. " + _contention(results),
        "### End to end: start → send → `sent` and `delivered` callbacks (signed) → check; CPU per verification",
        _e2e(results),
        "### Sends per second per worker process (backlog queued first; callbacks off)", _sends(results["sends"]),
        "### Redis round trips of a whole SMS verification (per connection, through a counting proxy)",
        _trips(results),
        "In-process (redis-py socket writes; a pipeline is one):",
        _table(["request", "round trips", "commands (`+` = sent together)"], [
            ["start", trips["start"]["round_trips"], f"`{trips['start']['commands']}`"],
            ["check", trips["check"]["round_trips"], f"`{trips['check']['commands']}`"],
        ]),
        "### CPU per item by component (ms)", _cpu(results),
        "### Redis bytes per SMS verification (every key it adds or grows)", _memory(results),
        "### Keys after the API path and end-to-end runs (SCAN + TTL over DB 12)", _ttl(results),
        f"`gw:audit` then: {results['audit_length']} records, "
        f"{results.get('audit_bytes_per_record', '?')} bytes each in Redis.",
        "### Resident memory under load", _rss(results),
    ]
    return "\n\n".join(parts) + "\n"
