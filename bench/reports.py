"""Usage report latency over a year of daily counters: `python -m bench.reports`.

A template day is made by ending real verifications through the gateway's own scripts
(approved, denied, canceled, rescued by a fallback call, with carrier errors) in 5
countries, then widened to 60 countries (BENCH_EXTRA_COUNTRIES=55) and copied to 365 days,
as a busy international deployment's counters would be. The report endpoint is then timed in-process (WSGI stack,
one Redis round trip per request) on database 12 of REDIS_URL's server, flushed before and after.
"""
from __future__ import annotations

import os
import statistics
import time
from datetime import date, timedelta

import phonenumbers
import redis

from config import load_settings
from gateway import create_app, deliveries, reports, verifications
from gateway.models import AttemptStatus, Status

DB = 12
ADMIN = "bench-admin-key-0123456789"
API = "bench-api-key"
COUNTRIES = ("PL", "US", "GB", "DE", "FR")
ROUNDS = 30
EXTRA_COUNTRIES = int(os.environ.get("BENCH_EXTRA_COUNTRIES", "55"))


def _env(base: str) -> dict[str, str]:
    return {"REDIS_URL": f"{base}/{DB}", "GATEWAY_API_KEYS": API, "GATEWAY_ADMIN_KEYS": ADMIN,
            "GATEWAY_SECRET_KEY": "b" * 40, "TWILIO_ACCOUNT_SID": "AC" + "b" * 32, "TWILIO_AUTH_TOKEN": "t",
            "TWILIO_API_BASE_URL": "http://127.0.0.1:9", "SMS_FROM": "+15005550006",
            "VOICE_CALLER_ID": "+15005550006", "RATE_LIMIT_PER_NUMBER": "100000", "LOG_LEVEL": "WARNING"}


def _template_day(app, r: redis.Redis) -> dict[str, dict[bytes, bytes]]:  # type: ignore[no-untyped-def]
    """End verifications of every kind through the real scripts; today's counter hashes by part."""
    svc, client = app.extensions["gateway"], app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API}"
    for country in COUNTRIES:
        number = phonenumbers.format_number(phonenumbers.example_number_for_type(
            country, phonenumbers.PhoneNumberType.MOBILE), phonenumbers.PhoneNumberFormat.E164)
        for i in range(8):
            v = client.post("/v1/verifications", json={"to": number, "fallback": ["call"]}).get_json()
            if i % 4 == 0:
                deliveries.record_status(svc, v["id"], 1, AttemptStatus.UNDELIVERED, error_code=30003 + i % 3)
                verifications.end(svc, v["id"], 2, Status.APPROVED, None)
            elif i % 4 == 1:
                verifications.end(svc, v["id"], 1, Status.DENIED, None)
            elif i % 4 == 2:
                client.post(f"/v1/verifications/{v['id']}/cancel")
            else:
                verifications.end(svc, v["id"], 1, Status.APPROVED, None)
    [day] = {k.decode().split(":")[2] for k in r.keys("gw:usage:*") if not k.startswith(b"gw:usage:b")}
    return {part: r.hgetall(f"gw:usage:{day}{part}") for part in ("", ":dims", ":x")}  # type: ignore[misc]


def _widen(fields: dict[bytes, bytes], countries: int) -> dict[bytes, bytes]:
    """The fields plus copies of Poland's for more (made-up) countries."""
    wide = dict(fields)
    for n in range(countries):
        cc = f"{chr(65 + n // 26)}{chr(65 + n % 26)}".encode()
        wide.update({k.replace(b"PL", cc): v for k, v in fields.items() if b"PL" in k})
    return wide


def main() -> None:
    """Fill a year of counters and time the three groupings."""
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379").rsplit("/", 1)[0] if os.environ.get(
        "REDIS_URL", "").count("/") > 2 else os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    r = redis.Redis.from_url(f"{base}/{DB}")
    r.flushdb()
    try:
        app = create_app(load_settings(_env(base)))
        template = {part: _widen(fields, EXTRA_COUNTRIES) for part, fields in _template_day(app, r).items()}
        first = date(2025, 12, 1)
        pipe = r.pipeline(transaction=False)
        days = [(first + timedelta(days=i) - date(1970, 1, 1)).days for i in range(365)]
        for day in days:
            for part, fields in template.items():
                pipe.hset(f"gw:usage:{day}{part}", mapping=fields)
        for block in {d // reports.BLOCK for d in days}:  # the block sums the script keeps too
            n = sum(1 for d in days if d // reports.BLOCK == block)
            for part in (":dims", ":x"):
                pipe.hset(f"gw:usage:b{block}{part}", mapping={k: int(v) * n for k, v in template[part].items()})
        pipe.execute()
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN}"
        since, until = first.isoformat(), (first + timedelta(days=364)).isoformat()
        sizes = ", ".join(f"gw:usage:<day>{part} {len(f)}" for part, f in template.items())
        print(f"{len(COUNTRIES) + EXTRA_COUNTRIES} countries; fields a day: {sizes}; 365 days")
        for group in ("day", "channel", "country"):
            url = f"/v1/reports/usage?since={since}&until={until}&group_by={group}"
            client.get(url)  # warm-up
            times, cpu = [], []
            for _ in range(ROUNDS):
                t0, c0 = time.perf_counter(), time.process_time()
                response = client.get(url)
                times.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
                assert response.status_code == 200, response.get_json()
            rows = len(response.get_json()["rows"])
            times.sort()
            # On a shared machine the wall time includes waiting for a CPU; the bench process's
            # own CPU time (Redis's is not in it) shows what the request costs here.
            print(f"group_by={group:8} rows={rows:4}  wall median {statistics.median(times):6.1f} ms  "
                  f"p95 {times[int(ROUNDS * 0.95) - 1]:6.1f} ms  max {times[-1]:6.1f} ms  "
                  f"| gateway CPU median {statistics.median(cpu):6.1f} ms")
    finally:
        r.flushdb()


if __name__ == "__main__":
    main()
