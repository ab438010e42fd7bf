"""`python -m gateway` as a newcomer runs it: embedded Redis, simulator, developer phone."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import requests

from tests.stack import ROOT, free_port, poll

LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1 as /proc/net writes them


def listening_on(port: int) -> set[str]:
    """The local addresses (hex, as in /proc/net/tcp and tcp6) that listen on a TCP port."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_python_m_gateway_runs_everything_with_nothing_configured(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TWILIO_", "GATEWAY_", "REDIS_", "SMS_", "VOICE_", "PUBLIC_"))}
    env.update(PORT=str(port), PYTHONUNBUFFERED="1")
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        key = poll(lambda: (m := re.search(r"API key: (\S+)", log.read_text())) and m.group(1), 30,
                   what="the printed API key")
        base = f"http://localhost:{port}"
        assert f"{base}/dev/phone" in log.read_text() and "curl" in log.read_text()
        poll(lambda: requests.get(f"{base}/readyz", timeout=2).status_code == 200, 20, what="ready")
        assert listening_on(port) and listening_on(port) <= LOOPBACK  # not on the network (--expose)
        auth = {"Authorization": f"Bearer {key}"}
        admin_key = re.search(r"Admin key \(.*\): (\S+)", log.read_text())
        assert admin_key, log.read_text()
        admin = {"Authorization": f"Bearer {admin_key.group(1)}"}
        assert requests.delete(f"{base}/v1/users/anna", headers=auth, timeout=10).status_code == 403
        assert requests.delete(f"{base}/v1/users/anna", headers=admin, timeout=10).status_code == 204
        v = requests.post(f"{base}/v1/verifications", json={"to": "+48600100200", "channel": "sms"},
                          headers=auth, timeout=10).json()
        page = requests.get(f"{base}/dev/phone", timeout=5)
        assert page.status_code == 200 and "<html" in page.text.lower()

        def code_on_the_phone() -> str | None:
            handset = requests.get(f"{base}/dev/_sim/handsets/+48600100200", timeout=5).json()
            bodies = [m["body"] for m in handset.get("inbox", [])]
            found = re.search(r"\b(\d{6})\b", bodies[-1]) if bodies else None
            return found.group(1) if found else None

        code = poll(code_on_the_phone, 20, what="the SMS on the developer phone")
        checked = requests.post(f"{base}/v1/verifications/{v['id']}/check", json={"code": code},
                                headers=auth, timeout=10).json()
        assert checked["status"] == "approved" and checked["valid"] is True
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
