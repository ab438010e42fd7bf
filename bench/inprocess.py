"""The gateway built inside the bench process: exact round trips of a start and a check (a
pipeline is one round trip), and a CPU profile of either.

Profile: `python -m bench.inprocess [--requests 2000] [--top 30]` (REDIS_URL's server,
database 12, flushed before and after) prints cProfile's costliest functions of the starts and
of the checks, run through the WSGI stack with Flask's test client.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
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
    from gateway import verifications

    svc = app.extensions["gateway"]
    with app.app_context():
        v = svc.store.load(verification_id)
        assert verifications.code_for(svc, v, v.attempt.number, code) == code


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


def main() -> None:
    """Entry point: `python -m bench.inprocess`."""
    from bench.run import QUICK, Bench

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    bench = Bench(QUICK)
    bench.gw.flushdb()
    try:
        print(profile(bench.gateway_env, args.requests, args.top))
    finally:
        bench.gw.flushdb()


if __name__ == "__main__":
    main()
