"""A measured SMS-pumping attack against the gateway as production runs it.

    python -m bench.abuse            # 500 real users, 10,000 attacker starts (several minutes)
    python -m bench.abuse --quick    # 100 users, 2,000 attacker starts

Runs the Procfile's web and worker lines and the carrier simulator as real processes
(tests/stack.py) on the Redis at REDIS_URL's host (databases 14 and 15, flushed), with the
gateway's documented defaults. Two runs: real users alone, then real users while an
attacker starts SMS verifications to a few number ranges, rotating client_ip and user_id,
never typing a code; the attacker's handsets send no delivery report (as pumped numbers
rarely do), so every SMS would fall back to a call. Figures go to stdout and
bench/results/abuse-<time>.json; docs/abuse.md records a run.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers
import requests

from tests.stack import Stack

OUT = Path(__file__).resolve().parent / "results"
# Real users' countries and the national prefixes their mobiles are drawn from.
USER_RANGES = {"PL": ("+4850", "+4851", "+4853", "+4860", "+4866", "+4869", "+4872", "+4878", "+4879", "+4888"),
               "DE": ("+49151", "+49152", "+49157", "+49160", "+49170", "+49176"),
               "GB": ("+4474", "+4475", "+4477", "+4478", "+4479"),
               "US": ("+1201", "+1212", "+1305", "+1415", "+1617", "+1702")}
# The attacker's ranges (country calling code + 3 digits): two in a country with real
# users, three in a dear destination with none.
ATTACK_RANGES = ("+48691", "+48692", "+62812", "+62813", "+62852")
MOBILE = {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}


def random_number(rng: random.Random, prefix: str, avoid: tuple[str, ...] = ()) -> str:
    """A valid mobile number under the prefix (and outside the avoided ranges)."""
    while True:
        number = prefix + "".join(rng.choice("0123456789") for _ in range(12))
        for length in range(9, 14):
            candidate = number[: length + 1]
            parsed = phonenumbers.parse(candidate)
            if (phonenumbers.is_valid_number(parsed) and phonenumbers.number_type(parsed) in MOBILE
                    and not candidate.startswith(avoid)):
                return candidate


@dataclass
class Tally:
    """What one side of the traffic saw."""

    started: int = 0
    approved: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def figures(self) -> dict[str, object]:
        """The counts, without the lock."""
        return {"started": self.started, "approved": self.approved, "refused": dict(self.refused), "errors": self.errors}

    def add(self, what: str, reason: str | None = None) -> None:
        with self.lock:
            if what == "refused":
                self.refused[reason or "?"] = self.refused.get(reason or "?", 0) + 1
            else:
                setattr(self, what, getattr(self, what) + 1)


def real_user(stack: Stack, session: requests.Session, number: str, types_code: bool, n: int, tally: Tally) -> None:
    """One real user: start, and (90 %) read the SMS and type the code."""
    body = {"to": number, "channel": "sms", "user_id": f"user{n}", "client_ip": f"10.{n // 250}.{n % 250}.1"}
    r = session.post(f"{stack.url}/v1/verifications", json=body, timeout=60)
    if r.status_code != 201:
        tally.add("refused", r.json().get("error", {}).get("reason") or r.json()["error"]["code"])
        return
    tally.add("started")
    if not types_code:
        return
    deadline = time.monotonic() + 120
    while not (inbox := stack.inbox(number)) and time.monotonic() < deadline:
        time.sleep(0.5)  # a person reading their phone; gentle on the simulator
    found = re.search(r"\b(\d{4,10})\b", inbox[0]["body"]) if inbox else None
    if not found:
        tally.add("errors")
        return
    code = found.group(1)
    result = session.post(f"{stack.url}/v1/verifications/{r.json()['id']}/check", json={"code": code}, timeout=60)
    if result.status_code == 200 and result.json().get("valid"):
        tally.add("approved")
    else:
        tally.add("errors")


def attacker(stack: Stack, session: requests.Session, number: str, n: int, tally: Tally) -> None:
    """One pumping start: a fresh client address and user id each time."""
    body = {"to": number, "channel": "sms", "user_id": f"bot{n}",
            "client_ip": f"{1 + n % 223}.{(n // 223) % 256}.{n % 256}.{n % 250 + 1}"}
    r = session.post(f"{stack.url}/v1/verifications", json=body, timeout=60)
    if r.status_code == 201:
        tally.add("started")
    else:
        tally.add("refused", r.json().get("error", {}).get("reason") or r.json()["error"]["code"])


def metrics(stack: Stack) -> dict[str, float]:
    """The gateway's abuse and spend figures from /metrics."""
    text = requests.get(f"{stack.url}/metrics", timeout=30).text
    wanted = ("gateway_abuse_refusals_total", "gateway_breaker_trips_total", "gateway_spend_today",
              "gateway_spend_budget_ratio", "gateway_breaker_open", "gateway_spend_warnings_total")
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith(wanted)}


def run(db: int, users: int, attacks: int, seed: int) -> dict[str, object]:
    """One run: real users (paced over the run), and the attacker when attacks > 0."""
    rng = random.Random(seed)
    people = [(random_number(rng, rng.choice(USER_RANGES[c]), ATTACK_RANGES), rng.random() < 0.9)
              for c in rng.choices(list(USER_RANGES), k=users)]
    targets = [random_number(rng, rng.choice(ATTACK_RANGES)) for _ in range(attacks)]
    stack = Stack(db, LOG_LEVEL="WARNING").start()
    try:
        stack.sim("PUT", "rules", {"rules": [
            {"prefix": p, "name": f"pumped {p}", "behaviour": {"sms": "no_dlr", "call": "no-answer"}}
            for p in ATTACK_RANGES
        ] + [{"name": "landline-sms", "number_type": "fixed_line",
              "behaviour": {"sms": "reject", "sms_error_code": 21614}}]})
        real, bots = Tally(), Tally()
        session = requests.Session()
        session.headers.update(stack.http.headers)
        session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64))
        pace = 0.2  # a real user every 200 ms: 300 a minute, half the global default
        t0 = time.monotonic()
        with ThreadPoolExecutor(48) as users_pool, ThreadPoolExecutor(8) as bots_pool:
            for n, target in enumerate(targets):
                bots_pool.submit(attacker, stack, session, target, n, bots)
            for n, (number, types_code) in enumerate(people):
                time.sleep(max(0.0, t0 + n * pace - time.monotonic()))
                users_pool.submit(real_user, stack, session, number, types_code, n, real)
        took = time.monotonic() - t0
        time.sleep(35)  # past DELIVERY_DEADLINE (30 s): any fallback call would have been placed
        sent = stack.sim("GET", "messages")["messages"]
        calls = stack.sim("GET", "calls")["calls"]
        per_range = {
            p: {"sms": sum(m["to"].startswith(p) for m in sent), "calls": sum(c["to"].startswith(p) for c in calls)}
            for p in ATTACK_RANGES
        }
        return {
            "users": users, "attacks": attacks, "seconds": round(took, 1),
            "real": real.figures(),
            "real_typing": sum(t for _, t in people),
            "approval_rate": round(real.approved / max(sum(t for _, t in people), 1), 4),
            "attacker": bots.figures(),
            "attack_ranges": per_range, "metrics": metrics(stack),
        }
    finally:
        stack.stop()
        stack.redis.flushdb()


def main() -> None:
    """Run the baseline and the attack, print and save the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="100 users, 2,000 attacker starts")
    parser.add_argument("--users", type=int)
    parser.add_argument("--attacks", type=int)
    args = parser.parse_args()
    users, attacks = (100, 2000) if args.quick else (500, 10000)
    users, attacks = args.users or users, args.attacks or attacks
    baseline = run(14, users, 0, seed=7)
    attacked = run(15, users, attacks, seed=7)
    result = {"baseline": baseline, "attack": attacked}
    OUT.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (OUT / f"abuse-{stamp}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    b, a = baseline["approval_rate"], attacked["approval_rate"]
    print(f"\napproval of real users typing their code: {b:.2%} alone, {a:.2%} under attack")
    for prefix, seen in attacked["attack_ranges"].items():  # type: ignore[union-attr]
        print(f"{prefix}: {seen['sms']} SMS, {seen['calls']} calls")
    print(re.sub(r"\s+", " ", f"spend: {attacked['metrics']}"))


if __name__ == "__main__":
    main()
