"""Every key a Lua script touches is passed in KEYS, and no script spells a key name (gateway/keys.py).

The strong check runs the main flows against the real Redis while a MONITOR connection records
every command; each command a script ran (MONITOR's `lua` client) must name only keys its
EVALSHA declared. Redis itself reports which arguments of a command are keys (COMMAND GETKEYS).
"""
from __future__ import annotations

import base64
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pyotp
import redis

from config import load_settings
from gateway import abuse, breakers, create_app, deliveries, keys, methods, operators, verifications
from gateway.auth import Caller, Scope
from gateway.models import ATTEMPT_RANK, AttemptStatus, Status
from gateway.oath import Params, Token
from tests.conftest import API_KEY, TEST_DB, gateway_env, redis_base

LUA = Path(__file__).resolve().parent.parent / "gateway" / "lua"
# The only names still spelled in a script, and why (docs/architecture.md, towards Redis Cluster):
ALLOWED = {
    ("prelude.lua", keys.DONE_PREFIX),  # a pub/sub channel, not a key
}
SPELLED = re.compile(r"""(['"])(gw:[^'"]*)\1""")


def test_no_script_spells_a_key_name() -> None:
    found = {(path.name, m.group(2)) for path in LUA.glob("*.lua") for m in SPELLED.finditer(path.read_text())}
    assert found == ALLOWED


def test_a_verification_id_is_the_end_of_its_key_after_the_last_colon() -> None:
    # prelude.lua id_of reads a compact record's id from its key so (no name spelled in Lua).
    for verification_id in (keys.new_verification_id(20428), "vf_" + "0" * 32):
        key = keys.verification(verification_id)
        assert ":" not in verification_id and key.rsplit(":", 1)[1] == verification_id


_LINE = re.compile(r'^\d+\.\d+ \[(\d+) ([^\]]+)\] (.*)$')
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", '"': '"', "\\": "\\"}


def _unescape(text: str) -> str:
    return re.sub(r'\\x([0-9a-fA-F]{2})|\\(.)',
                  lambda m: chr(int(m.group(1), 16)) if m.group(1) else _ESCAPES.get(m.group(2), m.group(2)), text)


@dataclass
class Script:
    """One script run: the keys its EVALSHA declared and the commands it ran."""

    sha: str
    declared: list[str]
    commands: list[list[str]] = field(default_factory=list)


@dataclass
class Monitor:
    """MONITOR's lines for one database, read on a thread of its own."""

    db: int
    lines: list[tuple[str, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def feed(self, line: str) -> None:
        """Keep a line of this database: (client, arguments)."""
        match = _LINE.match(line)
        if match and int(match.group(1)) == self.db:
            with self.lock:
                self.lines.append((match.group(2), [_unescape(a) for a in _ARG.findall(match.group(3))]))

    def seen(self, marker: str) -> bool:
        """Whether the ECHO of a marker has come through."""
        with self.lock:
            return any(args == ["ECHO", marker] or args == ["echo", marker] for _, args in self.lines)

    def scripts(self, lua_after_eval: bool) -> list[Script]:
        """The script runs, each with the commands MONITOR shows for it (Redis 6 shows a script's
        commands after its EVALSHA; whether a server shows them before is probed: _lua_after_eval)."""
        runs: list[Script] = []
        waiting: list[list[str]] = []
        with self.lock:
            lines = list(self.lines)
        for client, args in lines:
            name = args[0].upper() if args else ""
            if client == "lua":
                (runs[-1].commands if lua_after_eval and runs else waiting).append(args)
            elif name in ("EVALSHA", "EVAL"):
                run = Script(args[1] if name == "EVALSHA" else "eval", args[3:3 + int(args[2])])
                if not lua_after_eval:
                    run.commands, waiting = waiting, []
                runs.append(run)
        return runs


@contextmanager
def monitored(db: int) -> Iterator[Monitor]:
    """Record every command of a database while the block runs (until an ECHO marker is seen)."""
    parts = urlsplit(redis_base())
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=30)
    sock.sendall(b"MONITOR\r\n")
    monitor = Monitor(db)
    reader = sock.makefile("r", encoding="latin-1", newline="\r\n")

    def read() -> None:
        try:
            for line in reader:
                monitor.feed(line.rstrip("\r\n").lstrip("+"))
        except (OSError, ValueError):
            pass

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    probe = redis.Redis.from_url(f"{redis_base()}/{db}")
    deadline = time.monotonic() + 10
    while not monitor.seen("begin"):  # MONITOR is listening once it shows this
        assert time.monotonic() < deadline, "MONITOR showed nothing"
        probe.echo("begin")
        time.sleep(0.02)
    try:
        yield monitor
    finally:
        probe.echo("end")
        deadline = time.monotonic() + 10
        while not monitor.seen("end") and time.monotonic() < deadline:
            time.sleep(0.02)
        sock.close()
        thread.join(5)
        probe.close()


def undeclared(r: redis.Redis, runs: list[Script]) -> list[str]:
    """Each key a script touched that its EVALSHA did not declare, with the command."""
    keyless: set[str] = set()
    found = []
    for run in runs:
        for command in run.commands:
            if command[0].upper() in keyless:
                continue
            try:
                touched = [k.decode() if isinstance(k, bytes) else k for k in r.command_getkeys(*command)]
            except redis.exceptions.ResponseError:
                keyless.add(command[0].upper())  # TIME, PUBLISH, …: no key arguments
                continue
            found += [f"{run.sha[:8]}: {' '.join(command[:3])} touches {key!r}, declared {run.declared}"
                      for key in touched if key not in run.declared]
    return found


def _lua_after_eval(db: int) -> bool:
    """Whether MONITOR shows a script's commands after its EVAL (as Redis 6 and 7.0 do) or before,
    found by running a probe script: the order is the server's, not its version's promise."""
    probe = redis.Redis.from_url(f"{redis_base()}/{db}")
    try:
        with monitored(db) as monitor:
            probe.eval("redis.call('EXISTS', KEYS[1]) return 1", 1, "order-probe")
    finally:
        probe.close()
    with monitor.lock:
        kinds = [client == "lua" for client, args in monitor.lines
                 if client == "lua" or (args and args[0].upper() == "EVAL")]
    assert kinds in ([False, True], [True, False]), kinds
    return kinds == [False, True]


ANNA, BEA = "+48600100200", "+48600100300"


def flows(app) -> None:  # type: ignore[no-untyped-def]
    """The main scripts once each: start, delivery, check (wrong, right, refused), a fallback
    callback, a read, a fraud report, an abuse refusal, breaker reset, users' methods, tokens."""
    svc = app.extensions["gateway"]
    http = app.test_client()
    http.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"

    def start(to: str, **body: object) -> str:
        r = http.post("/v1/verifications", json={"to": to, "channel": "sms", **body},
                      headers={"Idempotency-Key": f"k-{to}-{len(body)}"})
        assert r.status_code == 201, r.get_json()
        return str(r.get_json()["id"])

    vid = start(ANNA, user_id="u1", fallback=["call"])
    v = verifications.get(svc, vid)
    assert deliveries.code_for(svc, v, 1, "424242") == "424242"
    assert http.post(f"/v1/verifications/{vid}/check", json={"code": "000000"}).get_json()["valid"] is False
    assert http.post(f"/v1/verifications/{vid}/check", json={"code": "424242"}).get_json()["valid"] is True
    assert http.post(f"/v1/verifications/{vid}/check", json={"code": "000000"}).status_code == 429  # allowance: 2
    assert abuse.fold_conversions(svc) == 1  # the supervisor counts the approval's conversion

    other = start(BEA, fallback=["call"])
    assert f"{other}:1" in svc.store.claim(keys.OUTBOX, 10, 30).members  # the senders' steps
    assert svc.store.send_later(other, 1, 0.5, (1,)).kind == "later"
    assert svc.store.sent(other, 1, AttemptStatus.SENT, ATTEMPT_RANK[AttemptStatus.SENT], "SM" + "1" * 32).kind == "changed"
    svc.store.due_now(other)  # its timer: claimed, then rescheduled while the claim holds it
    timers = svc.store.claim(keys.TIMERS, 10, 30)
    assert svc.store.reschedule(keys.TIMERS, other, timers.held, timers.now + 60)
    deliveries.record_status(svc, other, 1, AttemptStatus.SENT, sid="SM" + "1" * 32)
    deliveries.record_status(svc, other, 1, AttemptStatus.UNDELIVERED, error_code=30003)  # falls back to a call
    called = verifications.get(svc, other)
    assert called.attempt.number == 2
    assert verifications.report_fraud(svc, called, 2).kind == "ended"
    assert http.post("/v1/verifications", json={"to": ANNA, "channel": "sms"}).status_code == 429  # number limit: 1

    reply = start("+48600100400", channel="sms_reply")
    assert deliveries.await_reply(svc, verifications.get(svc, reply), 1, "+15005550006")
    assert verifications.cancel(svc, reply).status is Status.CANCELED
    breakers.reset(svc, "prefix", "48600", "test")
    operators.record(svc, Caller("key-1", frozenset({Scope.ADMIN})), "test", "nothing")

    secret = http.post("/v1/users/u2/totp").get_json()["secret"]
    assert http.post("/v1/users/u2/totp/confirm", json={"code": pyotp.TOTP(secret).now()}).status_code == 200
    token = Token("T1", pyotp.random_base32(), Params(), "u2", "line 1")
    assert methods.import_tokens(svc, [token]) == 1
    assert methods.import_tokens(svc, [Token("T1", token.secret, Params(), "u3", "line 1")], replace=True) == 1
    assert "unassigned" in methods.assign_token(svc, "T1", None)
    assert "assigned" in methods.assign_token(svc, "T1", "u2")
    assert methods.reset_user(svc, "u2") == 2


def test_every_key_a_script_touches_is_declared(redis_db) -> None:  # type: ignore[no-untyped-def]
    env = gateway_env(TEST_DB, RATE_LIMIT_PER_NUMBER="1", RATE_LIMIT_PER_NUMBER_ANY_CLIENT="1",
                      RATE_LIMIT_CHECKS_PER_USER="2", PUMPING_MIN_SENDS="1")
    app = create_app(load_settings(env).replace(testing=True))
    capped = create_app(load_settings(gateway_env(TEST_DB, MAX_SENDS_PER_VERIFICATION="1", RESEND_INTERVAL="0")).replace(
        testing=True))
    v2 = create_app(load_settings(gateway_env(TEST_DB, VERIFY_ACCOUNTS=f"{ACCOUNT}:{TOKEN}")).replace(testing=True))
    with monitored(TEST_DB) as monitor:
        flows(app)
        http = capped.test_client()
        http.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
        vid = http.post("/v1/verifications", json={"to": "+48600100500"}).get_json()["id"]
        assert http.post(f"/v1/verifications/{vid}/resend", json={}).get_json()["error"]["reason"] == "max_sends"
        assert v2_repeat_start(v2)
    runs = monitor.scripts(lua_after_eval=_lua_after_eval(TEST_DB))
    assert len(runs) >= 25 and sum(len(r.commands) for r in runs) > 200  # the monitor saw the flows
    # Including a /v2 repeat start's live verification: read first and declared (live_lib.lua).
    assert undeclared(redis_db, runs) == []


ACCOUNT, TOKEN = "AC" + "b" * 32, "v2-token"


def v2_repeat_start(app) -> str:  # type: ignore[no-untyped-def]
    """Start a /v2 verification twice for one Service and number (the second finds the first); its id."""
    http = app.test_client()
    auth = {"Authorization": "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()}
    r = http.post("/v2/Services", data={"FriendlyName": "Keys"}, headers=auth)
    assert r.status_code == 201, r.get_json()
    path = f"/v2/Services/{r.get_json()['sid']}/Verifications"
    first = http.post(path, data={"To": "+48600100600", "Channel": "sms"}, headers=auth)
    again = http.post(path, data={"To": "+48600100600", "Channel": "sms"}, headers=auth)
    assert first.status_code == again.status_code == 201, again.get_json()
    assert first.get_json()["sid"] == again.get_json()["sid"]
    return "vf_" + str(first.get_json()["sid"])[2:]


def test_a_key_spelled_in_a_script_is_caught(redis_db) -> None:  # type: ignore[no-untyped-def]
    """The check itself: a script that writes a key it did not declare is reported."""
    script: Callable[..., object] = redis_db.register_script(
        "redis.call('SET', KEYS[1], 1) redis.call('HINCRBY', ARGV[1], 'x', 1) return 1")
    with monitored(TEST_DB) as monitor:
        script(keys=["k:declared"], args=["k:hidden"])
    [problem] = undeclared(redis_db, monitor.scripts(lua_after_eval=_lua_after_eval(TEST_DB)))
    assert "'k:hidden'" in problem


def test_a_token_script_given_an_outdated_owner_changes_nothing(app) -> None:  # type: ignore[no-untyped-def]
    """Keys found in data are read first and declared; the script compares what was read (Store._settled
    reads again on 'changed'), so a change made in between is never overwritten or missed."""
    svc = app.extensions["gateway"]
    assert methods.import_tokens(svc, [Token("T7", pyotp.random_base32(), Params(), "ann", "line 1")]) == 1
    # As if read before ann got the token: no owner, so nobody's hash declared to take it from.
    stale = svc.store._run("token_assign", [keys.token("T7"), keys.token("T7"), keys.token("T7")], "T7", "", "")
    assert stale.kind == "changed"
    assert [t.serial for t in svc.store.user_methods("ann").tokens] == ["T7"]
    assert "unassigned from ann" in methods.assign_token(svc, "T7", None)  # read afresh: ann's hash declared
    assert svc.store.user_methods("ann").tokens == ()


def test_a_start_whose_live_verification_moved_is_asked_again_and_changes_nothing(app) -> None:  # type: ignore[no-untyped-def]
    """The live verification is read first and declared; if the live key names another one by the
    time the script runs, the script answers 'changed' before anything is counted or written."""
    svc = app.extensions["gateway"]
    svc.redis.set(keys.live("k1"), "vf_" + "a" * 32)
    before = svc.redis.dbsize()
    for declared in (keys.verification("vf_" + "b" * 32), keys.verification("vf_new")):  # another id; none
        script_keys = [keys.verification("vf_new"), keys.verification("vf_new"), keys.block("+48600100200"),
                       keys.optout("+48600100200"), keys.live("k1"), keys.OUTBOX, keys.TIMERS,
                       keys.metrics("started"), keys.OUTBOX_WAKE, declared]
        moved = svc.store._run("create", script_keys, "", 86400, "vf_new", '["sms"]', 300, "[]", 0, "to", "+48600100200")
        assert moved.kind == "changed"
    assert svc.redis.dbsize() == before and not svc.redis.exists(keys.verification("vf_new"))


def test_a_verification_id_carries_its_start_day() -> None:
    today = 20_400
    vid = keys.new_verification_id(today)
    assert re.fullmatch(r"vf_[0-9a-f]{32}", vid)  # the shape /v2 SIDs are made of (VE + 32 hex)
    assert keys.start_day(vid, today + 1) == today  # ended the next day: counted on the start day
    # An id made before ids held a day (random hex), or no id at all: counted on the day it ends.
    assert keys.start_day("vf_" + "f" * 32, today) == today and keys.start_day("vf_unknown", today) == today
    assert keys.ending(vid, (today + 1) * keys.DAY)[1] == keys.usage(str(today))
