"""The gateway built inside the bench process, so that its Redis round trips can be counted
exactly (a pipeline is one round trip) around a single request or job."""
from __future__ import annotations

from functools import cache
from typing import Any

from flask import Flask
from rq import SimpleWorker

from bench.load import Client, expect
from bench.probes import count_round_trips


@cache
def _app(env_items: tuple[tuple[str, str], ...]) -> Flask:
    from config import load_settings
    from gateway import create_app

    return create_app(load_settings(dict(env_items)))


def app_for(env: dict[str, str]) -> Flask:
    """One gateway app per environment, built once."""
    return _app(tuple(sorted(env.items())))


def run_jobs(env: dict[str, str]) -> dict[str, Any]:
    """Run what waits in the queue with a burst SimpleWorker here; its round trips, counted."""
    app = app_for({**env, "BENCH_ROLE": "worker"})  # its own connections: rq closes them on the way out
    svc = app.extensions["gateway"]
    jobs = svc.queue.count
    with app.app_context(), count_round_trips() as trips:
        SimpleWorker([svc.queue], connection=svc.redis).work(burst=True, logging_level="WARNING")
    return {"jobs": jobs, "round_trips": trips.count, "commands": trips.describe()}


def count_requests(env: dict[str, str], numbers: list[str], fake_port: int) -> dict[str, Any]:
    """Exact round trips of one start, one check, and of a delivery job in a running worker."""
    app = app_for(env)
    http = app.test_client()
    headers = {"Authorization": f"Bearer {env['GATEWAY_API_KEYS']}"}

    def start(number: str) -> str:
        response = http.post("/v1/verifications", json={"to": number}, headers=headers)
        assert response.status_code == 201, response.get_data(as_text=True)
        return str(response.get_json()["id"])

    start(numbers[0])  # warm: connections opened, scripts loaded, keys derived
    run_jobs(env)
    http.get(f"/v1/verifications/{start(numbers[1])}", headers=headers)
    with count_round_trips() as start_trips:
        vid = start(numbers[2])
    one = run_jobs(env)
    for number in numbers[3:]:
        start(number)
    many = run_jobs(env)
    fake = Client(fake_port)
    code = expect(*fake.request("GET", "/_bench/codes"), 200)[numbers[2]]
    fake.close()
    http.get(f"/v1/verifications/{vid}", headers=headers)  # the connection stays warm, as under load
    with count_round_trips() as check_trips:
        response = http.post(f"/v1/verifications/{vid}/check", json={"code": code}, headers=headers)
    assert response.get_json()["valid"], response.get_json()
    extra_jobs = many["jobs"] - one["jobs"]
    return {
        "start": {"round_trips": start_trips.count, "commands": start_trips.describe()},
        "check": {"round_trips": check_trips.count, "commands": check_trips.describe()},
        f"burst_worker_{one['jobs']}_jobs": one,
        f"burst_worker_{many['jobs']}_jobs": {k: v for k, v in many.items() if k != "commands"},
        "per_job_in_running_worker": round((many["round_trips"] - one["round_trips"]) / extra_jobs, 1)
        if extra_jobs else None,
    }
