"""Authenticator enrolment end to end (the Procfile's web and worker, real Redis, the simulator):
a pending authenticator approves nothing, a replacement needs proof, recovery codes work once,
and every activation is audited without secrets."""
from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest

from tests.conftest import ADMIN_KEY
from tests.stack import LOGS, Stack, poll

DB = 13
PERIOD = 30
_numbers = itertools.count(100)


def new_number() -> str:
    """A Polish mobile number no other test of this module uses."""
    return f"+48600300{next(_numbers):03d}"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    running = Stack(DB, FALLBACK_CHANNELS="", RATE_LIMIT_PER_NUMBER="1000", DELIVERY_DEADLINE="600")
    try:
        yield running.start()
    finally:
        running.stop()
        running.redis.flushdb()


def settled_now(margin: float = 4.0) -> float:
    """Now, once at least `margin` seconds are left in the current step (so codes stay put)."""
    while PERIOD - time.time() % PERIOD < margin:
        time.sleep(0.05)  # waiting for the wall clock, not for another process
    return time.time()


def enrol(stack: Stack, user: str) -> tuple[pyotp.TOTP, dict[str, Any]]:
    r = stack.api("POST", f"/v1/users/{user}/totp")
    assert r.status_code == 201, r.text
    return pyotp.parse_uri(r.json()["otpauth_uri"]), r.json()  # type: ignore[return-value]


def confirm(stack: Stack, user: str, code: str, verification_id: str | None = None) -> Any:
    body = {"code": code} | ({"verification_id": verification_id} if verification_id else {})
    return stack.api("POST", f"/v1/users/{user}/totp/confirm", body)


def activate(stack: Stack, user: str) -> tuple[pyotp.TOTP, list[str]]:
    """Enrol and confirm with the previous step's code (leaving the current step unused)."""
    app, _ = enrol(stack, user)
    r = confirm(stack, user, app.at(time.time() - PERIOD))
    assert r.status_code == 200, r.text
    return app, r.json()["recovery_codes"]


def sms_approved(stack: Stack, user: str, to: str | None = None) -> str:
    """A verification of the user approved by SMS just now: the proof a replacement needs."""
    to = to or new_number()
    v = stack.start_verification(to, channel="sms", user_id=user)
    assert stack.check(v["id"], stack.sms_code(to))["status"] == "approved"
    return v["id"]  # type: ignore[no-any-return]


def totp_check(stack: Stack, user: str, code: str) -> dict[str, Any]:
    v = stack.start_verification(new_number(), channel="totp", user_id=user)
    return stack.check(v["id"], code)


def notice_to(stack: Stack, number: str) -> str:
    """The text of the authenticator notice a handset received (waits for it)."""
    def received() -> str | None:
        return next((m["body"] for m in stack.inbox(number) if "authenticator" in m["body"]), None)

    return poll(received, 30, what=f"the authenticator notice to {number}")


def user_events(stack: Stack, user: str) -> list[dict[str, str]]:
    records = ({k.decode(): v.decode() for k, v in fields.items()} for _, fields in stack.redis.xrange("gw:audit:users"))
    return [r for r in records if r["user_id"] == user]


def test_the_answers_are_the_contracts(stack: Stack) -> None:
    before = time.time()
    app, body = enrol(stack, "ada")
    assert set(body) == {"secret", "otpauth_uri", "status", "expires_at"} and body["status"] == "pending"
    expires = time.mktime(time.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert before + 598 <= expires <= time.time() + 601  # TOTP_ENROLMENT_TTL's default, 10 minutes
    r = confirm(stack, "ada", app.at(time.time()))
    assert r.status_code == 200
    assert set(r.json()) == {"status", "recovery_codes"} and r.json()["status"] == "active"
    codes = r.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert confirm(stack, "ada", app.at(time.time())).status_code == 409  # nothing pending any more
    assert confirm(stack, "nobody-known", "123456").status_code == 404
    for bad in ("12345", "1234567", "abcdef", 123456, None):
        r = confirm(stack, "ada", bad)  # type: ignore[arg-type]
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"


def test_a_pending_authenticator_never_approves_nor_is_offered(stack: Stack) -> None:
    pending, _ = enrol(stack, "bea")
    r = stack.api("POST", "/v1/verifications", {"to": new_number(), "channel": "totp", "user_id": "bea"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "totp_not_enrolled"
    v = stack.start_verification(new_number(), channel="sms", fallback=["totp", "call"], user_id="bea")
    assert v["channels"] == ["sms", "call"]  # fallback does not offer the pending app
    # Beside an active app, a second pending one approves nothing either.
    active, _ = activate(stack, "cid")
    second, _ = enrol(stack, "cid")
    now = settled_now()
    if second.at(now) != active.at(now):
        assert totp_check(stack, "cid", second.at(now))["valid"] is False
    assert totp_check(stack, "cid", active.at(now))["valid"] is True
    assert pending.at(now)  # the first user's pending app was never usable


def test_wrong_confirmation_codes_count_and_end_the_enrolment(stack: Stack) -> None:
    app, _ = enrol(stack, "dot")
    now = settled_now()
    right = {app.at(now + d) for d in (-PERIOD, 0, PERIOD)}
    wrong = next(c for c in (f"{n:06d}" for n in range(1000000)) if c not in right)
    for left in (4, 3, 2, 1):
        r = confirm(stack, "dot", wrong)
        assert r.status_code == 200 and r.json() == {"status": "pending", "valid": False, "remaining_attempts": left}
    assert confirm(stack, "dot", wrong).json() == {"status": "denied", "valid": False, "remaining_attempts": 0}
    # The right code comes too late: the enrolment is gone, and with it all the gateway knew of dot.
    assert confirm(stack, "dot", app.at(now)).status_code == 404
    assert [e["event"] for e in user_events(stack, "dot")] == ["enrolment_denied"]


def test_replacement_without_proof_is_refused_and_changes_nothing(stack: Stack) -> None:
    old, _ = activate(stack, "eve")
    new, _ = enrol(stack, "eve")
    now = settled_now()
    r = confirm(stack, "eve", new.at(now))
    assert r.status_code == 403 and r.json()["error"]["code"] == "proof_required"
    # Proof of someone else, or an unfinished verification, is no proof.
    other = sms_approved(stack, "mallory")
    assert confirm(stack, "eve", new.at(now), other).status_code == 403
    unfinished = stack.start_verification(new_number(), channel="sms", user_id="eve")["id"]
    assert confirm(stack, "eve", new.at(now), unfinished).status_code == 403
    assert confirm(stack, "eve", new.at(now), "vf_" + "0" * 32).status_code == 403
    if old.at(now) != new.at(now):
        assert totp_check(stack, "eve", new.at(now))["valid"] is False
    assert totp_check(stack, "eve", old.at(now))["valid"] is True
    assert [e["event"] for e in user_events(stack, "eve")] == ["authenticator_activated"]


def test_replacement_with_proof_works_once_and_is_audited(stack: Stack) -> None:
    old, old_codes = activate(stack, "fay")
    new, enrolment = enrol(stack, "fay")
    phone = new_number()
    proof = sms_approved(stack, "fay", phone)
    now = settled_now()
    r = confirm(stack, "fay", new.at(now - PERIOD), proof)
    assert r.status_code == 200 and r.json()["status"] == "active"
    new_codes = r.json()["recovery_codes"]
    assert not set(new_codes) & set(old_codes)
    if old.at(now) != new.at(now):
        assert totp_check(stack, "fay", old.at(now))["valid"] is False
    assert totp_check(stack, "fay", new.at(now))["valid"] is True
    # One sign-in proves one change: the same verification cannot replace again.
    again, _ = enrol(stack, "fay")
    assert confirm(stack, "fay", again.at(time.time()), proof).status_code == 403
    notice = notice_to(stack, phone)
    assert "a new authenticator was added to your sign-in" in notice
    events = user_events(stack, "fay")
    assert [(e["event"], e["how"]) for e in events] == [("authenticator_activated", "first"), ("authenticator_replaced", "proof")]
    assert events[1]["proof_verification_id"] == proof and events[1]["server_name"]
    # Neither the secrets nor the recovery codes are in the audit stream, Redis or the logs.
    secrets_shown = [enrolment["secret"], *old_codes, *new_codes]
    dump = repr(stack.redis.xrange("gw:audit:users")) + repr(stack.redis.hgetall("gw:user:fay"))
    logs = "".join((LOGS / f"stack-{DB}-{name}.log").read_text() for name in ("web", "worker"))
    for shown in secrets_shown:
        for form in (shown, shown.replace("-", ""), shown.upper()):
            assert form not in dump and form not in logs


def test_a_recovery_code_approves_once(stack: Stack) -> None:
    _, codes = activate(stack, "gus")
    v = stack.start_verification(new_number(), channel="recovery_code", user_id="gus")
    assert v["channel"] == "recovery_code"
    poll(lambda: stack.read(v["id"])["attempts"][0]["status"] == "sent", what="the attempt to be ready")
    body = stack.check(v["id"], codes[3].upper())  # as typed: case and hyphen do not matter
    assert body["valid"] is True and body["status"] == "approved"
    again = stack.start_verification(new_number(), channel="recovery_code", user_id="gus")
    assert stack.check(again["id"], codes[3])["valid"] is False
    assert stack.check(again["id"], codes[4].replace("-", ""))["valid"] is True
    # Used as the last step of a chain, and the approval proves the user for a replacement.
    new, _ = enrol(stack, "gus")
    assert confirm(stack, "gus", new.at(time.time()), v["id"]).status_code == 200


def test_regenerating_recovery_codes_needs_proof_and_voids_the_old_set(stack: Stack) -> None:
    _, old_codes = activate(stack, "hal")
    r = stack.api("POST", "/v1/users/hal/recovery_codes")
    assert r.status_code == 403 and r.json()["error"]["code"] == "proof_required"
    r = stack.api("POST", "/v1/users/hal/recovery_codes", {"verification_id": sms_approved(stack, "hal")})
    assert r.status_code == 200
    new_codes = r.json()["recovery_codes"]
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    v = stack.start_verification(new_number(), channel="recovery_code", user_id="hal")
    assert stack.check(v["id"], old_codes[0])["valid"] is False
    assert stack.check(v["id"], new_codes[0])["valid"] is True
    assert stack.api("POST", "/v1/users/nobody-known/recovery_codes").status_code == 404
    assert [e["event"] for e in user_events(stack, "hal")][-1] == "recovery_codes_regenerated"


def test_the_admin_scope_replaces_without_proof_and_is_recorded(stack: Stack) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    old, _ = activate(stack, "ivy")
    phone = new_number()
    sms_approved(stack, "ivy", phone)  # the number on file: her newest approved verification
    new, _ = enrol(stack, "ivy")
    now = settled_now()
    assert confirm(stack, "ivy", new.at(now)).status_code == 403  # a verify key needs proof
    r = stack.api("POST", "/v1/users/ivy/totp/confirm", {"code": new.at(now)}, headers=admin)
    assert r.status_code == 200 and len(r.json()["recovery_codes"]) == 10
    if old.at(now + PERIOD) != new.at(now + PERIOD):
        assert totp_check(stack, "ivy", old.at(now + PERIOD))["valid"] is False
    event = user_events(stack, "ivy")[-1]
    assert (event["event"], event["how"], event["proof_verification_id"]) == ("authenticator_replaced", "admin", "")
    assert "new authenticator" in notice_to(stack, phone)  # the user learns of it, even from an admin
    actions = [{k.decode(): v.decode() for k, v in f.items()} for _, f in stack.redis.xrange("gw:actions")]
    assert any(a["action"] == "replace_authenticator" and a["target"] == "ivy" and a["key_id"] for a in actions)
    r = stack.api("POST", "/v1/users/ivy/recovery_codes", headers=admin)
    assert r.status_code == 200 and len(r.json()["recovery_codes"]) == 10
    # The lost-phone reset is audited too, and afterwards a new app needs no proof.
    assert stack.api("DELETE", "/v1/users/ivy", headers=admin).status_code == 204
    assert user_events(stack, "ivy")[-1]["event"] == "methods_reset"
    activate(stack, "ivy")


def test_an_undelivered_sms_falls_back_to_a_recovery_code_last(stack: Stack) -> None:
    _, codes = activate(stack, "jon")
    to = new_number()
    stack.sim("PUT", f"handsets/{to}/behaviour", {"sms": "undelivered", "sms_error_code": 30003})
    v = stack.start_verification(to, channel="sms", fallback=["recovery_code"], user_id="jon")
    moved = stack.attempts_where(v["id"], lambda a: len(a) == 2 and a[1]["status"] == "sent", timeout=30)
    assert moved["channel"] == "recovery_code" and moved["status"] == "pending"
    assert stack.check(v["id"], codes[9])["status"] == "approved"
    # The last resort goes last, whatever order the caller gives.
    ordered = stack.start_verification(new_number(), channel="sms", fallback=["recovery_code", "call"], user_id="jon")
    assert ordered["channels"] == ["sms", "call", "recovery_code"]
    # A user without recovery codes is never offered the channel.
    fresh = stack.start_verification(new_number(), channel="sms", fallback=["recovery_code"], user_id="nobody-else")
    assert fresh["channels"] == ["sms"]
