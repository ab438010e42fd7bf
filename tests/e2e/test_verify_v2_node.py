"""/v2 driven by the official twilio npm package under the machine's Node.js (tests/node/flow.js)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.v2_support import ACCOUNT, TOKEN, new_number, v2_stack

NODE_DIR = Path(__file__).resolve().parent.parent / "node"


def test_the_node_sdk_runs_a_whole_flow() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node.js on this machine (scripts/test.sh installs the npm package when node exists)")
    # With Node.js present, a missing package is a failure, never a skip: scripts/test.sh runs npm ci.
    assert (NODE_DIR / "node_modules" / "twilio" / "package.json").exists(), "run npm ci in tests/node"
    stack = v2_stack(12).start()
    try:
        env = {**os.environ, "GATEWAY_URL": stack.url, "SIM_URL": stack.sim_url, "ACCOUNT_SID": ACCOUNT,
               "AUTH_TOKEN": TOKEN, "TO": new_number("+48600310")}
        for name in ("TWILIO_REGION", "TWILIO_EDGE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(name, None)
        done = subprocess.run([node, "flow.js"], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=120)
    finally:
        stack.stop()
    assert done.returncode == 0, done.stderr + done.stdout
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"] is True and result["verification"].startswith("VE")
