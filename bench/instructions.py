"""Instructions per request, counted by valgrind's callgrind: the gateway beside the reference.

Rates and CPU seconds on a shared 2-vCPU VM move by ±10-15 % between runs of the same code,
more than most changes to the request path; instructions executed do not (the same code, inputs
and environment give the same count within ~1 %, whatever else the machine does). So this counts,
per request through the app's WSGI callable (no gunicorn, no HTTP client: the same for both),
the instructions of the web process (the app run in a child under callgrind) and of
redis-server (a private one under callgrind, counted while the app runs natively, its idle
background per second taken off), for a start, a check and, for the gateway, the send (what a
worker's sender does for one delivery, in one thread: its share of a claim, the code taken, the
message created at a fake Twilio on loopback, the send recorded) and the two signed SMS status
callbacks. Counts compare code with code on any machine; they are not time, and they leave out
what both apps share (gunicorn, sockets, the load generator) and the sender's threads.

`python -m bench.instructions [--requests 300]`: needs valgrind and a redis-server (the
machine's /usr/bin/redis-server when present, else the one on PATH); about 4 minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench.procs import answers, free_port, poll
from bench.harness import ACCOUNT_SID, API_KEY

PHASES = {"gateway": ("start", "send", "sent", "delivered", "check"), "reference": ("start", "check")}
AUTH_TOKEN = "bench-auth-token"
BASE_URL = "http://127.0.0.1:5000"
ROOT = Path(__file__).resolve().parents[1]


def _redis_binary() -> str:
    system = Path("/usr/bin/redis-server")  # the machine's (CI's) server, not a pip-installed one
    return str(system) if system.exists() else (shutil.which("redis-server") or "redis-server")


def _total(path: Path) -> int:
    """A callgrind dump's instruction total."""
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"no total in {path}")


def _dumps(directory: Path, prefix: str) -> dict[str, int]:
    """Each labelled dump's total (callgrind names a dump's file .1, .2, ... and its label in 'desc')."""
    found = {}
    for path in directory.glob(f"{prefix}*.out.*"):
        label = next(line for line in path.read_text().splitlines() if line.startswith("desc: Trigger"))
        found[label.rsplit(" ", 1)[-1]] = _total(path)
    return found


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


class Child:
    """The app under callgrind: warm, then per phase zero both counters, run, dump both."""

    def __init__(self, app: str, port: int, counted_pid: int, count: int, carrier: str = "http://127.0.0.1:9") -> None:
        self.app, self.count, self.pid = app, count, counted_pid
        self.seconds: dict[str, float] = {}
        self.codes: dict[str, str] = {}  # the code each delivery sent
        self.db = redis.Redis(port=port, db=12)
        self.db.flushdb()
        url = f"redis://127.0.0.1:{port}/12"
        if app == "gateway":
            from config import load_settings
            from gateway import create_app

            env = {"REDIS_URL": url, "GATEWAY_API_KEYS": API_KEY, "GATEWAY_SECRET_KEY": "b" * 40,
                   "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                   "TWILIO_API_BASE_URL": carrier, "SMS_FROM": "+15005550006",
                   "PUBLIC_BASE_URL": BASE_URL, "LOG_LEVEL": "WARNING", "RATE_LIMIT_PER_NUMBER": "100000",
                   "GLOBAL_SENDS_PER_MINUTE": "10000000", "RATE_LIMIT_PER_COUNTRY": "10000000",
                   "PUMPING_MIN_SENDS": "1000000", "PUMPING_COUNTRY_MIN_SENDS": "10000000",
                   "DAILY_BUDGET": "1000000000", "DAILY_BUDGET_PER_COUNTRY": "1000000000"}
            self.flask = create_app(load_settings(env))
        else:
            os.environ.update(REDIS_URL=url, GATEWAY_API_KEYS=API_KEY, GATEWAY_SECRET_KEY="b" * 40)
            from bench.reference_app import create_app as reference

            self.flask = reference()

    def call(self, path: str, body: dict[str, str] | None = None, form: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> tuple[str, bytes]:
        """One request through the WSGI callable: (status, body)."""
        from werkzeug.test import EnvironBuilder

        builder = EnvironBuilder(
            method="POST", path=path, base_url=BASE_URL,
            data=json.dumps(body) if body is not None else form,
            content_type="application/json" if body is not None else None,
            headers=headers or {"Authorization": f"Bearer {API_KEY}"})
        status: list[str] = []
        data = b"".join(self.flask.wsgi_app(builder.get_environ(), lambda s, h, e=None: status.append(s)))
        return status[0], data

    def start(self, number: str) -> str:
        """A start; the id."""
        path, body = (("/v1/verifications", {"to": number}) if self.app == "gateway"
                      else ("/start", {"to": number, "code": "123456"}))
        status, data = self.call(path, body)
        assert status.startswith("201"), data
        return str(json.loads(data)["id"])

    def send(self) -> int:
        """Every due delivery, as a sender takes and sends it (one thread): how many were sent."""
        from gateway import deliveries
        from gateway.sender import BATCH, senders
        from gateway.store import OUTBOX

        svc, send_to, sent = self.flask.extensions["gateway"], senders(), 0
        with self.flask.app_context():
            while members := svc.store.claim(OUTBOX, BATCH, 30).members:
                requests = [deliveries.CodeRequest(m.rsplit(":", 1)[0], int(m.rsplit(":", 1)[1])) for m in members]
                found, _ = deliveries.take_codes(svc, requests)
                for r, coded in zip(requests, found):
                    assert coded is not None, r
                    channel = coded.verification.attempts[r.attempt - 1].channel
                    sid = send_to[channel](svc, coded.verification, r.attempt, coded.code)
                    deliveries.record_sent(svc, r.verification_id, r.attempt, channel, sid)
                    self.codes[r.verification_id] = coded.code
                    sent += 1
        return sent

    def callback(self, verification_id: str, status: str) -> None:
        """A signed SMS status callback, as Twilio posts it (twilio's RequestValidator signs it)."""
        from twilio.request_validator import RequestValidator

        path, sid = f"/webhooks/twilio/sms/status/{verification_id}/1", "SM" + verification_id[-32:]
        form = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "From": "+15005550006",
                "To": "+48600000001", "MessageSid": sid, "MessageStatus": status, "SmsSid": sid, "SmsStatus": status}
        signature = RequestValidator(AUTH_TOKEN).compute_signature(BASE_URL + path, form)
        answer, data = self.call(path, form=form, headers={"X-Twilio-Signature": signature})
        assert answer.startswith("204"), data

    def check(self, verification_id: str) -> None:
        """A check of the right code; it must approve."""
        code = self.codes.get(verification_id, "123456")  # the reference got its code at the start
        path, body = ((f"/v1/verifications/{verification_id}/check", {"code": code}) if self.app == "gateway"
                      else ("/check", {"id": verification_id, "code": "123456"}))
        status, data = self.call(path, body)
        assert json.loads(data)["valid"], data

    def phase(self, name: str, work: Any) -> None:
        _control(self.pid, "--zero")
        began = time.monotonic()
        work()
        self.seconds[name] = time.monotonic() - began
        _control(self.pid, f"--dump={name}")

    def run(self) -> None:
        """Warm up (connections, scripts, caches), then each phase over `count` verifications."""
        for i in range(30):
            vid = self.start(f"+48601{i:06d}")
            if self.app == "gateway":
                assert self.send() == 1
                self.callback(vid, "sent")
                self.callback(vid, "delivered")
            self.check(vid)
        ids: list[str] = []
        self.phase("start", lambda: ids.extend(self.start(f"+4860{i:07d}") for i in range(self.count)))
        if self.app == "gateway":
            sent: list[int] = []
            self.phase("send", lambda: sent.append(self.send()))
            assert sent == [self.count], sent
            for status in ("sent", "delivered"):
                self.phase(status, lambda s=status: [self.callback(vid, s) for vid in ids])
        self.phase("check", lambda: [self.check(vid) for vid in ids])
        self.phase("idle", lambda: time.sleep(1.0))  # what the counted process does on its own, per second
        self.db.flushdb()


def _child(command: list[str], app: str, port: int, redis_pid: int, count: int, carrier: str) -> dict[str, float]:
    """Run one app's phases in a child process, counting redis-server (redis_pid) or itself (0);
    the seconds each phase took."""
    with tempfile.NamedTemporaryFile(suffix=".json") as seconds:
        child = subprocess.run(
            [*command, "-m", "bench.instructions", "--child", app, "--port", str(port), "--count-pid", str(redis_pid),
             "--requests", str(count), "--seconds-to", seconds.name, "--carrier", carrier],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=1800)
        if child.returncode:
            raise RuntimeError(f"the {app} run failed:\n{child.stderr[-3000:]}")
        return json.loads(Path(seconds.name).read_text())  # type: ignore[no-any-return]


def measure(count: int) -> dict[str, Any]:
    """Both apps' instructions per request, web and redis-server, and the totals per verification."""
    out: dict[str, Any] = {"requests": count, "redis_server": _redis_binary()}
    with tempfile.TemporaryDirectory(prefix="bench-instr-") as tmp:
        directory = Path(tmp)
        port, fake_port = free_port(), free_port()
        carrier = f"http://127.0.0.1:{fake_port}"  # the fake Twilio the send phase creates messages at
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={directory}/redis.out", _redis_binary(),
             "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        fake = subprocess.Popen([sys.executable, "-m", "bench.fake_twilio", "--port", str(fake_port)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            poll(lambda: answers(f"{carrier}/_bench/stats"), 30, "the fake Twilio")
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.ping()
                    break
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("redis-server under callgrind did not start") from None
                    time.sleep(0.2)
            out["redis_version"] = client.info("server")["redis_version"]
            for app in PHASES:
                # Redis counted while the app runs natively (short phases), then the app under
                # callgrind; Redis's own background work (its cron) is taken off per phase second.
                for stale in directory.glob("redis.out.*"):
                    stale.unlink()
                seconds = _child([sys.executable], app, port, server.pid, count, carrier)
                store = _dumps(directory, "redis")
                background = store["idle"] / seconds["idle"]
                _child(["valgrind", "--tool=callgrind", f"--callgrind-out-file={directory}/{app}.out", sys.executable],
                       app, port, 0, count, carrier)
                web = _dumps(directory, app)
                out[app] = {p: {"web": round(web[p] / count),
                                "redis": round((store[p] - background * seconds[p]) / count)} for p in PHASES[app]}
        finally:
            server.terminate()
            server.wait(30)
            fake.terminate()
            fake.wait(30)
    for app in PHASES:
        rows = out[app]
        out[app]["api path"] = {side: rows["start"][side] + rows["check"][side] for side in ("web", "redis")}
    # A whole SMS verification: the web's requests, the sender's send (a worker's), Redis's share of each.
    out["gateway"]["verification"] = {side: sum(out["gateway"][p][side] for p in PHASES["gateway"])
                                      for side in ("web", "redis")}
    gw, ref = out["gateway"]["api path"], out["reference"]["api path"]
    out["reference ÷ gateway, api path"] = round((ref["web"] + ref["redis"]) / (gw["web"] + gw["redis"]), 3)
    return out


def table(result: dict[str, Any]) -> str:
    """The counts as a Markdown table, in thousands of instructions per request."""
    lines = ["| app | request | web or worker (k instr.) | redis-server (k instr.) | both |", "|---|---|---|---|---|"]
    for app in PHASES:
        for name, row in result[app].items():
            lines.append(f"| {app} | {name} | {row['web'] / 1000:.0f} | {row['redis'] / 1000:.0f} | "
                         f"{(row['web'] + row['redis']) / 1000:.0f} |")
    lines.append(f"\nReference ÷ gateway, start + check: **{result['reference ÷ gateway, api path']}** "
                 f"({result['requests']} requests per phase; redis-server {result['redis_version']}).")
    return "\n".join(lines)


def main() -> None:
    """Entry point: `python -m bench.instructions`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--child", choices=tuple(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds-to", help=argparse.SUPPRESS)
    parser.add_argument("--carrier", default="http://127.0.0.1:9", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child = Child(args.child, args.port, args.count_pid or os.getpid(), args.requests, args.carrier)
        child.run()
        Path(args.seconds_to).write_text(json.dumps(child.seconds))
        return
    result = measure(args.requests)
    result["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    results = Path(__file__).with_name("results")
    results.mkdir(exist_ok=True)
    name = results / f"{time.strftime('%Y%m%d-%H%M%S')}-instructions.json"
    name.write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"written: {name}")


if __name__ == "__main__":
    main()
