"""The gateway built inside the bench process: exact round trips of a start and a check (a
pipeline is one round trip), and a CPU profile of either.

CPU: `python -m bench.inprocess --cpu [--requests 2000]` prints CPU ms per start and per check
(this process and redis-server), a figure other processes' load moves less than a rate.
Profile: `python -m bench.inprocess [--requests 2000] [--top 30]` (REDIS_URL's server,
database 12, flushed before and after) prints cProfile's costliest functions of the starts and
of the checks, run through the WSGI stack with Flask's test client.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from functools import cache
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from bench.probes import count_round_trips


@cache
def _app(env_items: tuple[tuple[str, str], ...]) -> Flask:
    from config import load_settings
    from gateway import create_app

    return create_app(load_settings(dict(env_items)))


def app_for(env: dict[str, str]) -> Flask:
    """One gateway app per environment, built once."""
    return _app(tuple(sorted(env.items())))


def start(http: FlaskClient, headers: dict[str, str], number: str) -> str:
    """Start a verification through the API; its id."""
    response = http.post("/v1/verifications", json={"to": number}, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return str(response.get_json()["id"])


def give_code(app: Flask, verification_id: str, code: str) -> None:
    """Store a known code for the verification's attempt, as its delivery does."""
    from gateway import deliveries

    svc = app.extensions["gateway"]
    with app.app_context():
        v = svc.store.load(verification_id)
        assert deliveries.code_for(svc, v, v.attempt.number, code) == code


def check(http: FlaskClient, headers: dict[str, str], verification_id: str, code: str) -> None:
    """Check a code through the API; it must approve."""
    response = http.post(f"/v1/verifications/{verification_id}/check", json={"code": code}, headers=headers)
    assert response.get_json()["valid"], response.get_json()


def count_requests(env: dict[str, str], numbers: list[str]) -> dict[str, Any]:
    """Exact round trips of one start and one check on warm connections."""
    app = app_for(env)
    http = app.test_client()
    headers = {"Authorization": f"Bearer {env['GATEWAY_API_KEYS']}"}
    warm = start(http, headers, numbers[0])  # connections opened, scripts loaded, keys derived
    give_code(app, warm, "246810")
    check(http, headers, warm, "246810")
    with count_round_trips() as start_trips:
        vid = start(http, headers, numbers[1])
    give_code(app, vid, "135790")
    with count_round_trips() as check_trips:
        check(http, headers, vid, "135790")
    return {
        "start": {"round_trips": start_trips.count, "commands": start_trips.describe()},
        "check": {"round_trips": check_trips.count, "commands": check_trips.describe()},
    }


def profile(env: dict[str, str], count: int, top: int) -> str:
    """cProfile of `count` starts, then of as many checks, through the WSGI stack."""
    app = app_for(env)
    http = app.test_client()
    headers = {"Authorization": f"Bearer {env['GATEWAY_API_KEYS']}"}
    numbers = [f"+4860{i:07d}" for i in range(1, 2 * count + 41)]
    for number in numbers[:20]:  # warm
        vid = start(http, headers, number)
        give_code(app, vid, "123456")
        check(http, headers, vid, "123456")
    out = io.StringIO()
    started: list[str] = []
    for title, run in (("starts", lambda: started.extend(start(http, headers, n) for n in numbers[40:40 + count])),
                       ("checks", lambda: [check(http, headers, vid, "123456") for vid in started])):
        if title == "checks":
            for vid in started:
                give_code(app, vid, "123456")
        profiler = cProfile.Profile()
        profiler.runcall(run)
        out.write(f"## {count} {title}\n")
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def cpu(env: dict[str, str], count: int, redis_cpu: Any) -> dict[str, float]:
    """CPU milliseconds per request of `count` starts, then as many checks, through the WSGI stack:
    this process's (time.process_time: less moved by other processes than a rate) and Redis's
    (redis_cpu(): the server's used CPU seconds)."""
    app = app_for(env)
    http = app.test_client()
    headers = {"Authorization": f"Bearer {env['GATEWAY_API_KEYS']}"}
    numbers = [f"+4860{i:07d}" for i in range(1, count + 41)]
    for number in numbers[:20]:  # warm
        vid = start(http, headers, number)
        give_code(app, vid, "123456")
        check(http, headers, vid, "123456")
    started: list[str] = []
    out: dict[str, float] = {}
    for title, run in (("start", lambda: started.extend(start(http, headers, n) for n in numbers[40:40 + count])),
                       ("check", lambda: [check(http, headers, vid, "123456") for vid in started])):
        if title == "check":
            for vid in started:
                give_code(app, vid, "123456")
        began, began_redis = time.process_time(), redis_cpu()
        run()
        out[f"{title} web"] = round((time.process_time() - began) * 1000 / count, 3)
        out[f"{title} redis"] = round((redis_cpu() - began_redis) * 1000 / count, 3)
    return out


def main() -> None:
    """Entry point: `python -m bench.inprocess`."""
    from bench.harness import QUICK, Harness

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--cpu", action="store_true", help="CPU ms per start and per check instead of a profile")
    args = parser.parse_args()
    bench = Harness(QUICK)
    bench.gw.flushdb()

    def redis_cpu() -> float:
        info = bench.gw.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    try:
        print(cpu(bench.gateway_env, args.requests, redis_cpu) if args.cpu else profile(bench.gateway_env, args.requests, args.top))
    finally:
        bench.gw.flushdb()


if __name__ == "__main__":
    main()
