"""Races between gateway processes: a right code approves exactly once."""
from __future__ import annotations

import multiprocessing as mp

from config import load_settings
from gateway import create_app, deliveries, verifications
from tests.conftest import TEST_DB, gateway_env


def _checker(verification_id: str, code: str, barrier, results, **env: str) -> None:  # type: ignore[no-untyped-def]
    app = create_app(load_settings(gateway_env(TEST_DB, **env)))  # a separate gateway instance
    svc = app.extensions["gateway"]
    svc.redis.ping()
    barrier.wait(60)  # spawning 20 interpreters takes long on a loaded machine
    _, valid = verifications.check(svc, verification_id, code)
    results.put(valid)


def _race(settings, code_given: str, codes: list[str]) -> list[bool]:  # type: ignore[no-untyped-def]
    app = create_app(settings)
    svc = app.extensions["gateway"]
    from gateway.schemas import parse_start

    v, _ = verifications.start(svc, parse_start({"to": "+48600100200", "channel": "sms"}), None)
    assert deliveries.code_for(svc, v, 1, code_given) == code_given
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(len(codes)), ctx.Queue()
    procs = [ctx.Process(target=_checker, args=(v.id, c, barrier, results)) for c in codes]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    return outcomes


def test_twenty_right_checks_from_twenty_processes_approve_once(settings) -> None:
    outcomes = _race(settings, "424242", ["424242"] * 20)
    assert outcomes.count(True) == 1


def test_racing_wrong_codes_never_exceed_the_limit(settings, redis_db) -> None:
    outcomes = _race(settings, "424242", ["000000"] * 12)
    assert outcomes.count(True) == 0
    (key,) = redis_db.keys("gw:vf:*")
    assert redis_db.hget(key, "status") == b"denied" and redis_db.hget(key, "reason") == b"max_attempts"
    assert redis_db.xlen("gw:audit") == 1  # one end, one record
