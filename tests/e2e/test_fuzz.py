"""The OpenAPI file fuzzed from outside: schemathesis, every check, against the Procfile's web and
worker processes and the simulator. No 5xx; every schema-valid request is accepted or refused
with a documented status; every answer matches its documented schema."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import ACCOUNT_SID, ADMIN_KEY, AUTH_TOKEN
from tests.stack import ROOT, Stack

DB = 14
SEED = 20261202  # fixed, so a failure is the same on every run and `st replay` can show it
EXAMPLES = 5  # per operation and phase; with the coverage phase about 1000 requests
BUDGET = 40  # seconds for the whole run, however loaded the machine (the coverage phase comes first)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # Short lifetimes, so a `?wait=` on a verification the fuzzer made ends within seconds.
    running = Stack(DB, SMS_CODE_TTL="2", SMS_REPLY_TIMEOUT="2", CALL_TTL="2", TOTP_TTL="2",
                    RATE_LIMIT_PER_NUMBER="100000", FALLBACK_CHANNELS="",
                    VERIFY_ACCOUNTS=f"{ACCOUNT_SID}:{AUTH_TOKEN}")
    try:
        yield running.start()
    finally:
        running.stop()


def test_the_openapi_file_fuzzed_from_outside(stack: Stack) -> None:
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(ROOT / "tests" / "schemathesis.toml"),
        "run", str(ROOT / "docs" / "openapi.yaml"), "--url", stack.url,
        "--checks", "all", "--max-examples", str(EXAMPLES), "--max-time", str(BUDGET), "--seed", str(SEED),
        "--generation-database", "none",  # nothing remembered between runs: the seed decides
        "--workers", "1",  # hypothesis in threads trips a CPython 3.11 ast.parse bug (SystemError)
        # A hang, not speed: speed is measured in bench/.
        "--max-response-time", "30", "--request-timeout", "40",
    ]
    try:
        run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env={
            **os.environ, "FUZZ_ADMIN_KEY": ADMIN_KEY, "FUZZ_ACCOUNT_SID": ACCOUNT_SID, "FUZZ_AUTH_TOKEN": AUTH_TOKEN,
        })
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"schemathesis did not finish: {exc.stdout!r:.3000}")
    print(run.stdout[-2500:])  # the phases and counts, for `pytest -s`
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-2000:]
