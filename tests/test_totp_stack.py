"""TOTP end to end: the Procfile's web and worker processes, real Redis, the token CLI as its own process."""
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pyotp
import pytest

from tests.conftest import ADMIN_KEY
from tests.stack import ROOT, Stack, poll

DB = 7
MOBILE = "+48600100200"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """One running gateway for the module."""
    s = Stack(DB)
    try:
        yield s.start()
    finally:
        s.stop()
        s.redis.flushdb()


def settled_now(period: int = 30, margin: float = 4.0) -> float:
    """Now, once at least `margin` seconds are left in the current step."""
    while period - time.time() % period < margin:
        time.sleep(0.05)  # waiting for the wall clock, not for another process
    return time.time()


def totp_start(stack: Stack, user: str) -> dict:  # type: ignore[type-arg]
    v = stack.start_verification(MOBILE, channel="totp", user_id=user)
    assert v["channel"] == "totp" and v["status"] == "pending"
    return poll(lambda: (read := stack.read(v["id"]))["attempts"][0]["status"] == "sent" and read,
                what="the totp attempt to be sent")


def test_app_code_approves_once_across_processes(stack: Stack) -> None:
    r = stack.api("POST", "/v1/users/olga/totp")
    assert r.status_code == 201
    app = pyotp.parse_uri(r.json()["otpauth_uri"])
    # Confirmed with the previous step's code, so the current step is still unused.
    r = stack.api("POST", "/v1/users/olga/totp/confirm", {"code": app.at(time.time() - 30)})
    assert r.status_code == 200 and r.json()["status"] == "active"
    first = totp_start(stack, "olga")
    code = app.at(settled_now())
    assert stack.check(first["id"], code)["status"] == "approved"
    second = totp_start(stack, "olga")
    body = stack.check(second["id"], code)
    assert body["valid"] is False and body["status"] == "pending" and body["remaining_attempts"] == 4
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert stack.api("DELETE", "/v1/users/olga", headers=admin).status_code == 204
    r = stack.api("POST", "/v1/verifications", {"to": MOBILE, "channel": "totp", "user_id": "olga"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "totp_not_enrolled"


def test_token_imported_by_the_cli_approves_through_the_running_gateway(stack: Stack, tmp_path) -> None:
    secret = pyotp.random_base32()
    file = tmp_path / "tokens.csv"
    file.write_text(f"serial,secret,step,user\nE2E-1,{secret},30,pete\n")
    run = subprocess.run([sys.executable, "-m", "gateway", "tokens", "import", str(file)], cwd=ROOT,
                         env=stack.env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    v = totp_start(stack, "pete")
    assert stack.check(v["id"], pyotp.TOTP(secret).at(settled_now()))["status"] == "approved"
