"""Authenticator enrolment in-process: recovery codes raced by 20 gateway processes, expiry of a
pending enrolment, and what Redis keeps (only keyed hashes and encrypted secrets)."""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
import threading
import time

import pyotp

from gateway import create_app, methods, oath, verifications
from gateway.schemas import parse_start
from gateway.services import Services
from tests.conftest import API_KEY, redis_dump
from tests.test_concurrency import _checker  # a separate gateway instance per process
from tests.stack import poll

PERIOD = 30


def activate(client, user: str) -> tuple[pyotp.TOTP, list[str]]:  # type: ignore[no-untyped-def]
    r = client.post(f"/v1/users/{user}/totp")
    app: pyotp.TOTP = pyotp.parse_uri(r.get_json()["otpauth_uri"])  # type: ignore[assignment]
    r = client.post(f"/v1/users/{user}/totp/confirm", json={"code": app.at(time.time() - PERIOD)})
    assert r.status_code == 200, r.get_json()
    return app, r.get_json()["recovery_codes"]


def redis_now(r) -> float:  # type: ignore[no-untyped-def]
    """Redis's clock, which decides expiry."""
    seconds, micros = r.time()
    return seconds + micros / 1e6  # type: ignore[no-any-return]


def recovery_verification(svc: Services, user: str, n: int) -> str:
    to = f"+48600400{n:03d}"  # one number each: the per-number rate limit stays out of the way
    v, _ = verifications.start(svc, parse_start({"to": to, "channel": "recovery_code", "user_id": user}), None)
    return v.id


def test_twenty_processes_racing_one_recovery_code_are_accepted_once(settings, redis_db) -> None:
    # Twenty starts and checks for one user: far past the per-user limits (docs/abuse.md),
    # which are not what this race is about.
    unlimited = {"RATE_LIMIT_PER_USER": "0", "RATE_LIMIT_CHECKS_PER_USER": "0"}
    app = create_app(settings.replace(abuse=dataclasses.replace(settings.abuse, per_user=0, checks_per_user=0)))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    _, codes = activate(client, "rita")
    svc: Services = app.extensions["gateway"]
    vids = [recovery_verification(svc, "rita", n) for n in range(20)]
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(len(vids)), ctx.Queue()
    procs = [ctx.Process(target=_checker, args=(vid, codes[0], barrier, results), kwargs=unlimited) for vid in vids]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert outcomes.count(True) == 1
    approved = [vid for vid in vids if svc.store.load(vid).status.value == "approved"]  # type: ignore[union-attr]
    assert len(approved) == 1
    assert svc.store.user_methods("rita").recovery_codes == 9


def test_two_confirmations_at_once_activate_once(app, client, redis_db) -> None:
    r = client.post("/v1/users/sam/totp")
    code = pyotp.parse_uri(r.get_json()["otpauth_uri"]).at(time.time())
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def one() -> None:
        c = app.test_client()
        barrier.wait(5)
        statuses.append(c.post("/v1/users/sam/totp/confirm", json={"code": code},
                               headers={"Authorization": "Bearer test-api-key-0123456789"}).status_code)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(statuses) == [200, 409, 409, 409]
    assert [f[b"event"] for _, f in redis_db.xrange("gw:audit:users")] == [b"authenticator_activated"]


def test_a_pending_enrolment_expires(settings, redis_db) -> None:  # type: ignore[no-untyped-def]
    quick = create_app(settings.replace(totp_enrolment_ttl=1)).test_client()
    quick.environ_base["HTTP_AUTHORIZATION"] = "Bearer test-api-key-0123456789"
    app, _ = activate(quick, "tom")
    second = pyotp.parse_uri(quick.post("/v1/users/tom/totp").get_json()["otpauth_uri"])
    expires = float(redis_db.hget("gw:user:tom", "pending:exp"))
    poll(lambda: redis_now(redis_db) > expires, timeout=10,
         what="Redis's clock to pass the enrolment's expiry")
    assert quick.post("/v1/users/tom/totp/confirm", json={"code": second.at(time.time())}).status_code == 409
    # A user with nothing but an expired enrolment is forgotten altogether.
    quick.post("/v1/users/una/totp")
    poll(lambda: not redis_db.exists("gw:user:una"), timeout=10, what="the user record to expire")
    assert quick.post("/v1/users/una/totp/confirm", json={"code": "123456"}).status_code == 404


def test_redis_keeps_no_secret_nor_recovery_code(app, client, redis_db) -> None:
    r = client.post("/v1/users/vic/totp")
    secret = r.get_json()["secret"]
    app_totp = pyotp.parse_uri(r.get_json()["otpauth_uri"])
    codes = client.post("/v1/users/vic/totp/confirm", json={"code": app_totp.at(time.time())}).get_json()["recovery_codes"]
    pending = client.post("/v1/users/vic/totp").get_json()["secret"]
    dump = redis_dump(redis_db)
    for shown in (secret, pending, *codes, *(c.replace("-", "") for c in codes)):
        assert shown.encode() not in dump and shown.lower().encode() not in dump and shown.upper().encode() not in dump


def test_a_recovery_verification_refuses_other_codes_and_counts_them(app, client, redis_db) -> None:
    _, codes = activate(client, "wes")
    svc: Services = app.extensions["gateway"]
    vid = recovery_verification(svc, "wes", 900)
    r = client.post(f"/v1/verifications/{vid}/check", json={"code": "123456"})
    assert r.get_json()["valid"] is False and r.get_json()["remaining_attempts"] == 4
    r = client.post(f"/v1/verifications/{vid}/check", json={"code": "aaaaa-aaaaa"})
    assert r.get_json()["valid"] is False and r.get_json()["remaining_attempts"] == 3
    r = client.post(f"/v1/verifications/{vid}/check", json={"code": "not a code!"})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_request"
    # Another user's code is no code for wes (the digest is bound to the user).
    _, others = activate(client, "xan")
    assert client.post(f"/v1/verifications/{vid}/check", json={"code": others[0]}).get_json()["valid"] is False
    assert svc.store.user_methods("xan").recovery_codes == 10
    r = client.post("/v1/verifications", json={"to": "+48600400901", "channel": "recovery_code", "user_id": "zed"})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "no_recovery_codes"
    assert codes


def test_an_operator_token_is_active_at_once_and_keeps_a_pending_only_user(app, client, redis_db) -> None:
    client.post("/v1/users/yul/totp")  # pending only: the record would expire with it
    svc: Services = app.extensions["gateway"]
    secret = pyotp.random_base32()
    assert methods.import_tokens(svc, [oath.Token("ENR-1", secret, oath.Params(), "yul", "test")]) == 1
    assert redis_db.ttl("gw:user:yul") == -1
    v, _ = verifications.start(svc, parse_start({"to": "+48600400902", "channel": "totp", "user_id": "yul"}), None)
    _, valid = verifications.check(svc, v.id, pyotp.TOTP(secret).at(time.time()))
    assert valid is True


def test_recovery_codes_and_a_pending_app_survive_a_key_rotation(settings, redis_db) -> None:  # type: ignore[no-untyped-def]
    before = create_app(settings).test_client()
    before.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    _, codes = activate(before, "kim")
    pending = pyotp.parse_uri(before.post("/v1/users/kim/totp").get_json()["otpauth_uri"])
    rotated = create_app(settings.replace(secret_key="n" * 40, previous_secret_keys=(settings.secret_key,)))
    after = rotated.test_client()
    after.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    vid = recovery_verification(rotated.extensions["gateway"], "kim", 950)
    assert after.post(f"/v1/verifications/{vid}/check", json={"code": codes[0]}).get_json()["valid"] is True
    r = after.post("/v1/users/kim/totp/confirm", json={"code": pending.at(time.time()), "verification_id": vid})
    assert r.status_code == 200 and r.get_json()["status"] == "active"


def test_confirmation_codes_count_toward_the_users_check_allowance(settings, redis_db) -> None:  # type: ignore[no-untyped-def]
    limited = create_app(settings.replace(abuse=dataclasses.replace(settings.abuse, checks_per_user=3)))
    c = limited.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    app = pyotp.parse_uri(c.post("/v1/users/lea/totp").get_json()["otpauth_uri"])
    now = time.time()
    wrong = next(x for x in (f"{n:06d}" for n in range(1000000)) if x not in {app.at(now + d) for d in (-60, -30, 0, 30, 60)})
    for left in (4, 3, 2):
        assert c.post("/v1/users/lea/totp/confirm", json={"code": wrong}).get_json()["remaining_attempts"] == left
    r = c.post("/v1/users/lea/totp/confirm", json={"code": app.at(time.time())})
    assert r.status_code == 429 and r.get_json()["error"]["reason"] == "user" and r.headers["Retry-After"]
    # The allowance is the user's, shared with the checks of their verifications.
    vid = c.post("/v1/verifications", json={"to": "+48600400960", "channel": "sms", "user_id": "lea"}).get_json()["id"]
    assert c.post(f"/v1/verifications/{vid}/check", json={"code": "123456"}).status_code == 429
    refused = [f for _, f in redis_db.xrange("gw:audit") if f.get(b"action") == b"confirm"]
    assert refused and refused[0][b"user_id"] == b"lea" and refused[0][b"reason"] == b"user"
