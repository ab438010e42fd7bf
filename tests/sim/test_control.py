"""Control API (behaviours, rules, handsets, records), configuration, and `python -m simulator`."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import requests
from twilio.base.exceptions import TwilioRestException

from simulator import SimulatorConfig

from .conftest import AUTH_TOKEN, LANDLINE, MOBILE, MOBILE_2, OWNED, REPO_ROOT, US_NUMBER, wait_for


def test_config_endpoint_hides_the_token(sim, control):
    config = control.call("GET", "/config")
    assert config["numbers"][0] == OWNED
    assert AUTH_TOKEN not in str(config)


def test_behaviour_get_put_patch_delete(sim, control):
    initial = control.call("GET", f"/handsets/{MOBILE}/behaviour")
    assert initial["source"] == "default" and initial["behaviour"]["sms"] == "deliver"
    put = control.behave(MOBILE, sms="undelivered", sms_error_code=30005)
    assert put["source"] == "number" and put["behaviour"]["sms_error_code"] == 30005
    patched = control.call("PATCH", f"/handsets/{MOBILE}/behaviour", {"call": "busy"})
    assert patched["behaviour"]["sms"] == "undelivered" and patched["behaviour"]["call"] == "busy"
    assert control.call("DELETE", f"/handsets/{MOBILE}/behaviour")["source"] == "default"


@pytest.mark.parametrize("payload", [
    {"nonsense": 1}, {"sms": "explode"}, {"call": "maybe"}, {"keys": "1#"}, {"ring_ms": -1},
    {"sms": "reject"}, {"duplicate_callbacks": "yes"}, {"sms_error_code": True},
])
def test_invalid_behaviours_are_400(sim, control, payload):
    assert "error" in control.call("PUT", f"/handsets/{MOBILE}/behaviour", payload, expect=400)


def test_invalid_numbers_are_400(sim, control):
    control.call("GET", "/handsets/12345", expect=400)
    control.call("POST", "/handsets/+4860010020/sms", {"body": "x"}, expect=400)
    control.call("POST", f"/handsets/{MOBILE}/sms", {"body": "x", "to": "+15005550099"}, expect=400)
    control.call("POST", f"/handsets/{MOBILE}/sms", {"body": ""}, expect=400)


def test_rules_by_prefix_and_type(sim, control, client):
    rules = control.call("GET", "/rules")["rules"]
    assert rules[0]["number_type"] == "fixed_line" and rules[0]["behaviour"]["sms_error_code"] == 21614
    control.call("POST", "/rules", {"prefix": "+4850", "behaviour": {"sms": "reject", "sms_error_code": 21408}})
    with pytest.raises(TwilioRestException) as info:
        client.messages.create(to=MOBILE_2, from_=OWNED, body="x")
    assert info.value.code == 21408
    assert control.call("GET", f"/handsets/{MOBILE_2}")["behaviour_source"] == "rule:1"
    control.behave(MOBILE_2)  # an explicit behaviour beats rules
    client.messages.create(to=MOBILE_2, from_=OWNED, body="x")
    control.call("PUT", "/rules", {"rules": [{"number_type": "mobile", "behaviour": {"call": "busy"}}]})
    client.messages.create(to=LANDLINE, from_=OWNED, body="landline rule removed")
    assert control.call("GET", f"/handsets/{MOBILE}")["behaviour"]["call"] == "busy"
    control.call("PUT", "/rules", {"rules": [{"prefix": 5, "behaviour": {}}]}, expect=400)


def test_reset_restores_defaults(sim, control, client):
    control.call("PUT", "/rules", {"rules": []})
    control.behave(MOBILE, sms="failed")
    client.messages.create(to=MOBILE, from_=OWNED, body="x")
    control.call("POST", "/reset")
    assert control.call("GET", "/handsets")["handsets"] == []
    assert control.call("GET", "/requests")["requests"] == []
    assert len(control.call("GET", "/rules")["rules"]) == 1
    assert control.call("GET", f"/handsets/{MOBILE}")["behaviour"]["sms"] == "deliver"


def test_handsets_records_and_lists(sim, control, client, receiver):
    client.messages.create(to=US_NUMBER, from_=OWNED, body="first", status_callback=receiver.url("/s"))
    client.messages.create(to=MOBILE, from_=OWNED, body="second")
    handsets = wait_for(lambda: (lambda hs: hs if len(hs) == 2 else None)(control.call("GET", "/handsets")["handsets"]))
    assert {h["number"] for h in handsets} == {US_NUMBER, MOBILE}
    us = control.handset(US_NUMBER)
    assert us["country"] == "US" and us["number_type"] == "fixed_line_or_mobile"
    receiver.wait("/s", 2)
    hooks = wait_for(lambda: (lambda hs: hs if len(hs) == 2 and all(h["status"] for h in hs) else None)(
        control.call("GET", "/webhooks?kind=sms-status")["webhooks"]), what="both answers recorded")
    assert [h["params"] for h in hooks][0][4] == ["MessageStatus", "sent"]
    assert all(h["status"] == 204 and h["attempts"] == 1 for h in hooks)
    assert len(control.call("GET", "/messages")["messages"]) == 2
    requests_ = control.call("GET", "/requests")["requests"]
    assert requests_[0]["form"][:2] == [["To", US_NUMBER], ["StatusCallback", receiver.url("/s")]]
    assert control.call("GET", f"/requests?since={requests_[1]['index']}")["requests"] == requests_[1:]


def test_webhook_connection_failure_is_retried_once(sim, control, client):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    client.messages.create(to=MOBILE, from_=OWNED, body="x", status_callback=f"http://127.0.0.1:{dead_port}/cb")
    hooks = wait_for(lambda: [h for h in control.call("GET", "/webhooks")["webhooks"] if h["error"]], what="failure")
    assert hooks[0]["attempts"] == 2 and hooks[0]["error_code"] == 11205


def test_config_from_env(monkeypatch):
    monkeypatch.setenv("SIM_ACCOUNT_SID", "AC" + "c" * 32)
    monkeypatch.setenv("SIM_AUTH_TOKEN", "tok")
    monkeypatch.setenv("SIM_NUMBERS", "+15005550006, +12025550143")
    monkeypatch.setenv("SIM_MESSAGING_SERVICES", "MG" + "d" * 32)
    monkeypatch.setenv("SIM_SMS_URL", "http://localhost:8000/webhooks/twilio/sms/inbound")
    monkeypatch.setenv("SIM_CALLBACK_DELAY_MS", "25")
    config = SimulatorConfig.from_env()
    assert config.numbers == ("+15005550006", "+12025550143")
    assert config.messaging_services == ("MG" + "d" * 32,)
    assert config.callback_delay_ms == 25 and config.auth_token == "tok"
    monkeypatch.setenv("SIM_CALLBACK_DELAY_MS", "soon")
    with pytest.raises(ValueError, match="SIM_CALLBACK_DELAY_MS"):
        SimulatorConfig.from_env()


def test_python_dash_m_simulator_serves():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, SIM_PORT=str(port), SIM_HOST="127.0.0.1", SIM_AUTH_TOKEN="t0k",
               SIM_ACCOUNT_SID="AC" + "e" * 32, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "simulator"], cwd=str(REPO_ROOT), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        page = requests.get(f"http://127.0.0.1:{port}/phone", timeout=5)
        assert page.status_code == 200 and "Developer phone" in page.text
        response = requests.post(f"http://127.0.0.1:{port}/2010-04-01/Accounts/{'AC' + 'e' * 32}/Messages.json",
                                 data={"To": MOBILE, "From": "+15005550006", "Body": "x"},
                                 auth=("AC" + "e" * 32, "t0k"), timeout=5)
        assert response.status_code == 201
    finally:
        proc.terminate()
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
    assert proc.returncode == 0
