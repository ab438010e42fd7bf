"""Authenticator-app TOTP through the API with real pyotp codes: enrol, check, window, replay, reset."""
from __future__ import annotations

import time
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest

from gateway import methods, oath, verifications
from gateway.schemas import ConfirmRequest, parse_start
from gateway.sender import Sender
from gateway.services import Services
from tests.conftest import redis_dump

MOBILE = "+48600100200"
PERIOD = 30


def settle_step(margin: float = 4.0, period: int = PERIOD) -> float:
    """Now, once at least `margin` seconds are left in the current step (so codes stay put)."""
    deadline = time.monotonic() + period
    while period - time.time() % period < margin:
        assert time.monotonic() < deadline
        time.sleep(0.05)  # waiting for the clock itself, not for another process
    return time.time()


def enrol(client, user: str) -> pyotp.TOTP:  # type: ignore[no-untyped-def]
    """Enrol and confirm an app, as if confirmed ten steps ago (so no recent step is used up)."""
    r = client.post(f"/v1/users/{user}/totp")
    assert r.status_code == 201, r.get_json()
    totp: pyotp.TOTP = pyotp.parse_uri(r.get_json()["otpauth_uri"])  # type: ignore[assignment]
    svc: Services = client.application.extensions["gateway"]
    then = time.time() - 10 * PERIOD
    with client.application.app_context():
        done = methods.confirm_totp(svc, user, ConfirmRequest(totp.at(then), None), admin=False, now=then)
    assert done.status == "active"
    return totp


def start_totp(client, user: str):  # type: ignore[no-untyped-def]
    return client.post("/v1/verifications", json={"to": MOBILE, "channel": "totp", "user_id": user})


def check(client, vid: str, code: str) -> dict:  # type: ignore[no-untyped-def]
    r = client.post(f"/v1/verifications/{vid}/check", json={"code": code})
    assert r.status_code == 200, r.get_json()
    return r.get_json()  # type: ignore[no-any-return]


def deliver_all(app) -> None:  # type: ignore[no-untyped-def]
    """Send what the outbox holds with the worker process's sender, until nothing is due."""
    sender = Sender(app)
    try:
        sender.drain()
    finally:
        sender.stop()


def test_enrol_returns_a_scannable_uri_and_the_secret_once(app, client, redis_db) -> None:
    r = client.post("/v1/users/alice@example.com/totp")
    assert r.status_code == 201
    body = r.get_json()
    assert set(body) == {"otpauth_uri", "secret", "status", "expires_at"} and body["status"] == "pending"
    uri = urlsplit(body["otpauth_uri"])
    query = parse_qs(uri.query)
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert unquote(uri.path) == "/Sign-in:alice@example.com"
    assert query["secret"] == [body["secret"]] and query["issuer"] == ["Sign-in"]
    totp = pyotp.parse_uri(body["otpauth_uri"])
    assert totp.digits == 6 and totp.interval == 30 and totp.secret == body["secret"]
    assert len(totp.byte_secret()) >= 20
    dump = redis_dump(redis_db)
    assert body["secret"].encode() not in dump and body["secret"].lower().encode() not in dump
    assert totp.byte_secret() not in dump
    # Only a pending enrolment so far: the user's record goes away with it unless confirmed.
    assert 590 <= redis_db.ttl("gw:user:alice@example.com") <= 600


def test_issuer_is_the_organisation_name(settings, redis_db) -> None:  # type: ignore[no-untyped-def]
    from gateway import create_app

    c = create_app(settings.replace(organization_name="Acme Bank")).test_client()
    r = c.post("/v1/users/bob/totp", headers={"Authorization": "Bearer test-api-key-0123456789"})
    assert pyotp.parse_uri(r.get_json()["otpauth_uri"]).issuer == "Acme Bank"


@pytest.mark.parametrize("user", ["bad user", "x" * 129, "semi;colon"])
def test_bad_user_ids_are_refused(client, admin, redis_db, user) -> None:
    assert client.post(f"/v1/users/{user}/totp").get_json()["error"]["code"] == "invalid_request"
    assert admin.delete(f"/v1/users/{user}").status_code == 400
    assert not redis_db.keys("gw:user:*")


def test_totp_start_needs_an_enrolled_method(client, redis_db) -> None:
    r = start_totp(client, "nobody")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "totp_not_enrolled"
    assert not redis_db.keys("gw:vf:*")


def test_current_code_approves_after_the_attempt_is_sent(app, client) -> None:
    totp = enrol(client, "carol")
    r = start_totp(client, "carol")
    assert r.status_code == 201 and r.get_json()["channel"] == "totp"
    vid = r.get_json()["id"]
    deliver_all(app)
    assert client.get(f"/v1/verifications/{vid}").get_json()["attempts"][0]["status"] == "sent"
    body = check(client, vid, totp.at(settle_step()))
    assert body["valid"] is True and body["status"] == "approved"


@pytest.mark.parametrize("offset, valid", [(-PERIOD, True), (PERIOD, True), (-2 * PERIOD, False), (2 * PERIOD, False)])
def test_window_is_one_step_either_side(client, offset, valid) -> None:
    totp = enrol(client, "dave")
    vid = start_totp(client, "dave").get_json()["id"]
    body = check(client, vid, totp.at(settle_step() + offset))
    assert body["valid"] is valid and body["status"] == ("approved" if valid else "pending")


def test_a_used_code_is_refused_on_a_new_verification(client) -> None:
    totp = enrol(client, "erin")
    code = totp.at(settle_step())
    first = start_totp(client, "erin").get_json()["id"]
    assert check(client, first, code)["valid"] is True
    second = start_totp(client, "erin").get_json()["id"]
    body = check(client, second, code)
    assert body["valid"] is False and body["status"] == "pending" and body["remaining_attempts"] == 4
    # An older code (previous step) is refused too: only a later step than the last used one counts.
    assert check(client, second, totp.at(time.time() - PERIOD))["valid"] is False


def test_wrong_codes_count_down_to_denied(client) -> None:
    totp = enrol(client, "frank")
    vid = start_totp(client, "frank").get_json()["id"]
    now = settle_step()
    wrong = next(c for c in (f"{n:06d}" for n in range(1000000)) if c not in {totp.at(now + d) for d in (-30, 0, 30)})
    for left in (4, 3, 2, 1):
        body = check(client, vid, wrong)
        assert body["valid"] is False and body["remaining_attempts"] == left and body["status"] == "pending"
    body = check(client, vid, wrong)
    assert body["status"] == "denied" and body["reason"] == "max_attempts"
    assert check(client, vid, totp.at(time.time()))["valid"] is False


def test_re_enrolling_without_confirmation_replaces_nothing(client) -> None:
    old = enrol(client, "gina")
    new = pyotp.parse_uri(client.post("/v1/users/gina/totp").get_json()["otpauth_uri"])
    now = settle_step()
    vid = start_totp(client, "gina").get_json()["id"]
    if old.at(now) != new.at(now):
        assert check(client, vid, new.at(now))["valid"] is False
    assert check(client, vid, old.at(now))["valid"] is True


def test_reset_removes_every_method(app, client, admin, redis_db) -> None:
    enrol(client, "hank")
    svc: Services = app.extensions["gateway"]
    token = oath.Token("RST-1", pyotp.random_base32(), oath.Params(), "hank", "test")
    assert methods.import_tokens(svc, [token]) == 1
    assert methods.totp_enrolled(svc, "hank")
    r = admin.delete("/v1/users/hank")
    assert r.status_code == 204 and r.data == b""
    assert not redis_db.exists("gw:user:hank")
    assert redis_db.hget("gw:token:RST-1", "user") == b""  # kept, unassigned: it can be issued again
    r = start_totp(client, "hank")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "totp_not_enrolled"
    assert admin.delete("/v1/users/nobody-at-all").status_code == 204


def test_reset_makes_a_pending_totp_verification_unanswerable(client, admin) -> None:
    totp = enrol(client, "ivan")
    vid = start_totp(client, "ivan").get_json()["id"]
    assert admin.delete("/v1/users/ivan").status_code == 204
    assert check(client, vid, totp.at(settle_step()))["valid"] is False


# -- the step logic with a fixed clock -------------------------------------------------
FIXED = 1_800_000_015.0  # 15 s into a 30 s step


def test_fixed_clock_window_and_replay(app, client) -> None:
    svc: Services = app.extensions["gateway"]
    totp = enrol(client, "judy")
    v, _ = verifications.start(
        svc, parse_start({"to": MOBILE, "channel": "totp", "user_id": "judy"}), None
    )
    assert methods.totp_verify(svc, v, totp.at(FIXED + 2 * PERIOD), now=FIXED) is False
    assert methods.totp_verify(svc, v, totp.at(FIXED - PERIOD), now=FIXED) is True
    assert methods.totp_verify(svc, v, totp.at(FIXED - PERIOD), now=FIXED) is False  # replay
    assert methods.totp_verify(svc, v, totp.at(FIXED), now=FIXED) is True  # a later step is fine
    assert methods.totp_verify(svc, v, totp.at(FIXED - PERIOD), now=FIXED + PERIOD) is False  # earlier than used
    assert methods.totp_verify(svc, v, totp.at(FIXED + PERIOD), now=FIXED) is True


def test_matched_step_and_secret_rules() -> None:
    secret = pyotp.random_base32()
    totp = pyotp.TOTP(secret)
    params = oath.Params()
    step = int(FIXED // 30)
    assert oath.matched_step(secret, params, totp.at(FIXED), FIXED) == step
    assert oath.matched_step(secret, params, totp.at(FIXED + 30), FIXED) == step + 1
    assert oath.matched_step(secret, params, totp.at(FIXED - 60), FIXED) is None
    assert oath.matched_step(secret, params, totp.at(FIXED)[:5], FIXED) is None
    drifted = oath.Params(drift=2)  # a device two steps fast
    assert oath.matched_step(secret, drifted, totp.at(FIXED + 60), FIXED) == step + 2
    assert oath.normalise_secret(" jbsw y3dp ehpk 3pxp jbsw y3dp ehpk 3pxp==") == "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    for bad in ("JBSWY3DP", "NOT*BASE32", "", "A" * 33):
        with pytest.raises(oath.SecretError):
            oath.normalise_secret(bad)


def test_concurrent_checks_of_one_code_accept_it_once(app, client) -> None:
    """Five verifications checked with the same code at once: the step is used once."""
    import threading

    totp = enrol(client, "kate")
    vids = [start_totp(client, "kate").get_json()["id"] for _ in range(5)]
    code = totp.at(settle_step())
    results: list[bool] = []
    barrier = threading.Barrier(len(vids))

    def one(vid: str) -> None:
        c = app.test_client()
        barrier.wait(5)
        r = c.post(f"/v1/verifications/{vid}/check", json={"code": code},
                   headers={"Authorization": "Bearer test-api-key-0123456789"})
        results.append(r.get_json()["valid"])

    threads = [threading.Thread(target=one, args=(vid,)) for vid in vids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(results) == [False] * 4 + [True]
