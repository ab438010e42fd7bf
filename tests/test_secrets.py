"""The server secret: the Procfile's processes refuse to start without it, and a rotated key
keeps checking and decrypting what the previous key made while new material uses the new key."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

import pyotp
import pytest

from config import ConfigError, Settings
from gateway import codes, create_app, deliveries
from gateway.services import Services
from tests.conftest import API_KEY, TEST_DB, gateway_env
from tests.stack import ROOT, free_port, procfile
from tests.test_api import give_code, start

OLD, NEW = "o" * 40, "n" * 40


@pytest.mark.parametrize("process", ["web", "worker"])
def test_procfile_processes_refuse_to_start_without_a_secret_key(process: str) -> None:
    env = {**os.environ, **gateway_env(TEST_DB, PORT=str(free_port()))}
    del env["GATEWAY_SECRET_KEY"]
    command = procfile()[process].strip().replace("$PORT", env["PORT"])
    command = command.replace("python ", f"{shlex.quote(sys.executable)} ", 1)
    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: rq's scheduler is a child process
        proc.communicate()
        pytest.fail(f"the {process} process kept running without GATEWAY_SECRET_KEY")
    assert proc.returncode != 0
    assert "GATEWAY_SECRET_KEY: is required" in output


def test_an_app_is_never_built_without_a_key(settings: Settings) -> None:
    with pytest.raises(ConfigError) as refused:
        create_app(settings.replace(secret_key=None))
    assert refused.value.variable == "GATEWAY_SECRET_KEY"


def client_of(app):  # type: ignore[no-untyped-def]
    c = app.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    return c


def test_a_rotated_key_still_checks_and_decrypts_what_the_old_key_made(settings: Settings, redis_db) -> None:
    old_app = create_app(settings.replace(secret_key=OLD))
    old = client_of(old_app)
    code_vid = start(old, to="+48600100200").get_json()["id"]
    with old_app.app_context():
        svc: Services = old_app.extensions["gateway"]
        v = svc.store.load(code_vid)
        assert deliveries.code_for(svc, v, v.attempt.number, "246802") == "246802"
    spoken_vid = start(old, to="+48600100201").get_json()["id"]
    give_code(old_app, spoken_vid, "135791")
    totp = pyotp.parse_uri(old.post("/v1/users/rita/totp").get_json()["otpauth_uri"])
    # Confirmed with the previous step's code, leaving the current step for the check below.
    assert old.post("/v1/users/rita/totp/confirm", json={"code": totp.at(time.time() - 30)}).status_code == 200

    rotated_app = create_app(settings.replace(secret_key=NEW, previous_secret_keys=(OLD,)))
    rotated = client_of(rotated_app)
    svc = rotated_app.extensions["gateway"]
    assert deliveries.spoken_code(svc, svc.store.load(code_vid)) == "246802"  # decrypted with the old key
    body = rotated.post(f"/v1/verifications/{code_vid}/check", json={"code": "246802"}).get_json()
    assert body["valid"] is True and body["status"] == "approved"
    totp_vid = rotated.post("/v1/verifications", json={
        "to": "+48600100202", "channel": "totp", "user_id": "rita"}).get_json()["id"]
    assert rotated.post(f"/v1/verifications/{totp_vid}/check", json={"code": totp.now()}).get_json()["valid"]

    # Without the previous key, the old digest no longer checks: the list is what keeps it working.
    forgotten = client_of(create_app(settings.replace(secret_key=NEW)))
    assert forgotten.post(f"/v1/verifications/{spoken_vid}/check", json={"code": "135791"}).get_json()["valid"] is False

    # New material uses only the new key.
    new_vid = start(rotated, to="+48600100203").get_json()["id"]
    v = svc.store.load(new_vid)
    assert deliveries.code_for(svc, v, v.attempt.number, "975310") == "975310"
    stored = redis_db.hgetall(f"gw:vf:{new_vid}")
    assert stored[b"code"].decode() == codes.code_digest(codes.derive_key(NEW, "code-hmac"), new_vid, "975310")
    assert codes.decrypt([codes.derive_key(NEW, "code-cipher")], stored[b"enc"].decode()) == "975310"
    assert codes.decrypt([codes.derive_key(OLD, "code-cipher")], stored[b"enc"].decode()) is None
    enrolled = pyotp.parse_uri(rotated.post("/v1/users/sam/totp").get_json()["otpauth_uri"])
    secret_encrypted = redis_db.hget("gw:user:sam", "pending")  # pending until confirmed
    assert secret_encrypted is not None
    assert codes.decrypt([codes.derive_key(NEW, "totp-cipher")], secret_encrypted.decode()) == enrolled.secret


def test_previous_keys_are_validated() -> None:
    from config import load_settings

    s = load_settings({"GATEWAY_SECRET_KEY": NEW, "GATEWAY_SECRET_KEY_PREVIOUS": f"{OLD}, {'p' * 32}"})
    assert s.previous_secret_keys == (OLD, "p" * 32)
    with pytest.raises(ConfigError) as short:
        load_settings({"GATEWAY_SECRET_KEY": NEW, "GATEWAY_SECRET_KEY_PREVIOUS": "short"})
    assert short.value.variable == "GATEWAY_SECRET_KEY_PREVIOUS"
