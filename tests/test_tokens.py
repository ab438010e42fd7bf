"""OATH hardware tokens: CSV and PSKC (plain and encrypted) imports through the CLI, assignment,
codes of imported tokens approving totp verifications, and broken files leaving Redis untouched."""
from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pskc
import pyotp
import pytest
import redis

from gateway import oath
from gateway.__main__ import main as gateway_main
from tests.conftest import TEST_DB, gateway_env
from tests.stack import ROOT
from tests.test_totp import check, redis_dump, settle_step, start_totp

TOTP_URI = "urn:ietf:params:xml:ns:keyprov:pskc:totp"
HOTP_URI = "urn:ietf:params:xml:ns:keyprov:pskc:hotp"


@pytest.fixture
def cli(redis_db, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    """Run `python -m gateway tokens …` in-process against the test database: (exit code, stdout, stderr)."""
    for name, value in gateway_env(TEST_DB).items():
        monkeypatch.setenv(name, value)

    def run(*argv: str) -> tuple[int, str, str]:
        code = gateway_main(["tokens", *map(str, argv)])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def snapshot(r: redis.Redis) -> dict[bytes, object]:
    """Every key with its type and contents, comparable before and after."""
    state: dict[bytes, object] = {}
    for key in r.scan_iter():
        kind = r.type(key)
        state[key] = (kind, r.hgetall(key) if kind == b"hash" else r.dump(key))
    return state


def secret() -> tuple[str, bytes]:
    """A fresh base32 secret and its bytes."""
    text = pyotp.random_base32()
    return text, base64.b32decode(text)


def write_pskc(path: Path, keys: list[dict], password: str | None = None, psk: bytes | None = None) -> Path:
    """A PSKC file made with python-pskc's writer, optionally encrypted."""
    container = pskc.PSKC()
    for key in keys:
        container.add_key(**{"algorithm": TOTP_URI, "response_encoding": "DECIMAL", **key})
    if password is not None:
        container.encryption.setup_pbkdf2(password, iterations=2000)
    if psk is not None:
        container.encryption.setup_preshared_key(key=psk)
    container.write(str(path))
    return path


def test_csv_import_with_header_and_mapping_then_codes_approve(app, client, cli, redis_db, tmp_path) -> None:
    s1, s2, s3 = pyotp.random_base32(), pyotp.random_base32(), pyotp.random_base32()
    file = tmp_path / "tokens.csv"
    file.write_text(
        "# exported from the token vendor\n"
        "Serial Number,Secret Key,Time Step,Digits,User\n"
        f"CSV-001,{s1},30,6,alice\n"
        f"CSV-002,{s2.lower()},60,8,bob\n"
        "\n"
        f"CSV-003,{' '.join(s3[i:i + 4] for i in range(0, len(s3), 4))},30,,\n"
    )
    code, out, err = cli("import", file)
    assert code == 0, err
    assert "imported 3 token(s)" in out and "2 assigned (alice, bob)" in out and "1 unassigned" in out
    assert redis_db.hget("gw:token:CSV-002", "period") == b"60" and redis_db.hget("gw:token:CSV-002", "digits") == b"8"
    assert redis_db.hget("gw:token:CSV-003", "user") == b"" and redis_db.ttl("gw:token:CSV-001") == -1
    dump = redis_dump(redis_db)
    for s in (s1, s2, s3):
        assert s.encode() not in dump and base64.b32decode(s) not in dump
    now = settle_step(period=60)
    vid = start_totp(client, "bob").get_json()["id"]
    assert check(client, vid, pyotp.TOTP(s2, digits=8, interval=60).at(now))["status"] == "approved"
    assert start_totp(client, "carol").get_json()["error"]["code"] == "totp_not_enrolled"


def test_csv_without_header_is_positional(cli, redis_db, tmp_path) -> None:
    file = tmp_path / "plain.txt"
    file.write_text(f"P-1,{pyotp.random_base32()},30\nP-2,{pyotp.random_base32()},45,7,dan\n")
    code, out, _ = cli("import", file)
    assert code == 0 and "imported 2 token(s)" in out
    assert redis_db.hget("gw:token:P-2", "digits") == b"7" and redis_db.hget("gw:token:P-2", "user") == b"dan"
    assert redis_db.hexists("gw:user:dan", "token:P-2")


def test_token_imported_then_assigned_approves_and_refuses_replay(client, cli, redis_db, tmp_path) -> None:
    text, raw = secret()
    file = write_pskc(tmp_path / "one.pskc", [{"id": "k1", "serial": "HW-42", "secret": raw, "time_interval": 30,
                                               "response_length": 6, "manufacturer": "Acme"}])
    assert cli("import", file)[0] == 0
    assert start_totp(client, "erin").get_json()["error"]["code"] == "totp_not_enrolled"
    code, out, _ = cli("assign", "HW-42", "erin")
    assert code == 0 and "assigned to erin" in out
    token = pyotp.TOTP(text)
    now = settle_step()
    first = start_totp(client, "erin").get_json()["id"]
    assert check(client, first, token.at(now))["status"] == "approved"
    second = start_totp(client, "erin").get_json()["id"]
    body = check(client, second, token.at(now))
    assert body["valid"] is False and body["remaining_attempts"] == 4  # the same code again: a replay


def test_assignment_rules(cli, redis_db, tmp_path) -> None:
    file = tmp_path / "t.csv"
    file.write_text(f"A-1,{pyotp.random_base32()},30\n")
    assert cli("import", file, "--user", "frank")[0] == 0
    assert redis_db.hget("gw:token:A-1", "user") == b"frank"
    code, _, err = cli("assign", "A-1", "gina")
    assert code == 1 and "assigned to frank" in err
    assert cli("assign", "NOPE", "gina")[0] == 1
    code, out, _ = cli("unassign", "A-1")
    assert code == 0 and "unassigned from frank" in out and not redis_db.exists("gw:user:frank")
    assert cli("assign", "A-1", "gina")[0] == 0 and redis_db.hexists("gw:user:gina", "token:A-1")


def test_pskc_plain_with_user_and_parameters(cli, redis_db, tmp_path) -> None:
    _, raw = secret()
    file = write_pskc(tmp_path / "sha256.xml", [{
        "id": "k7", "serial": "S256-1", "secret": raw + raw, "time_interval": 60, "response_length": 8,
        "algorithm_suite": "HMAC-SHA256",
    }])
    code, out, err = cli("import", file, "--user", "hank")
    assert code == 0, err
    stored = redis_db.hgetall("gw:token:S256-1")
    fields = (stored[b"algorithm"], stored[b"digits"], stored[b"period"], stored[b"user"])
    assert fields == (b"sha256", b"8", b"60", b"hank")


@pytest.mark.parametrize("how", ["password", "password-file", "key"])
def test_encrypted_pskc_imports_with_the_password_or_key(app, cli, redis_db, tmp_path, how) -> None:
    from gateway import methods
    from gateway.schemas import parse_start
    from gateway.verifications import start

    keys = []
    secrets_ = []
    for n in range(3):
        text, raw = secret()
        secrets_.append(text)
        keys.append({"id": f"key{n}", "serial": f"ENC-{n}", "secret": raw, "time_interval": 30, "response_length": 6})
    psk = os.urandom(16)
    file = write_pskc(tmp_path / "enc.pskc", keys, **({"psk": psk} if how == "key" else {"password": "correct horse"}))
    assert "CipherValue" in file.read_text() and secrets_[0] not in file.read_text()
    if how == "password":
        options = ["--password", "correct horse"]
    elif how == "password-file":
        (tmp_path / "pw").write_text("correct horse\n")
        options = ["--password-file", str(tmp_path / "pw")]
    else:
        options = ["--key", psk.hex()]
    code, out, err = cli("import", file, *options)
    assert code == 0, err
    assert "imported 3 token(s)" in out
    assert cli("assign", "ENC-1", "ivan")[0] == 0
    svc = app.extensions["gateway"]
    fixed = 1_900_000_010.0
    v, _ = start(svc, parse_start({"to": "+48600100200", "channel": "totp", "user_id": "ivan"}), None)
    assert methods.totp_verify(svc, v, pyotp.TOTP(secrets_[0]).at(fixed), now=fixed) is False  # not ivan's token
    assert methods.totp_verify(svc, v, pyotp.TOTP(secrets_[1]).at(fixed), now=fixed) is True


def broken_files(tmp_path: Path) -> list[tuple[str, Path, list[str], list[str]]]:
    """(name, file, extra CLI options, fragments the error output must contain)."""
    good, other = pyotp.random_base32(), pyotp.random_base32()
    _, raw = secret()
    cases = []

    def csv(name: str, text: str, *expect: str) -> None:
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        cases.append((name, path, [], list(expect)))

    csv("bad_base32", f"B-1,{good},30\nB-2,NOT*BASE32!,30\n", "line 2", "not base32")
    csv("short_secret", f"B-1,{good},30\nB-2,JBSWY3DP,30\n", "line 2", "bits")
    csv("bad_step", f"serial,secret,step\nB-1,{good},30\nB-2,{other},thirty\nB-3,{other},0\n",
        "line 3", "line 4", "time step")
    csv("duplicate_serial", f"B-1,{good},30\nB-2,{other},30\nB-1,{other},30\n", "line 3", "repeats line 1")
    csv("bad_digits", f"B-1,{good},30,9\n", "line 1", "digits")
    csv("bad_user", f"B-1,{good},30,6,no spaces allowed\n", "line 1", "user")
    csv("too_many_columns", f"serial,secret,step\nB-1,{good},30,alice\n", "line 2", "columns")
    csv("empty", "# nothing here\n\n", "no tokens")
    enc = write_pskc(tmp_path / "enc.pskc", [{"id": "kk1", "serial": "E-1", "secret": raw}], password="right")
    cases.append(("wrong_password", enc, ["--password", "wrong"], ["key kk1", "wrong password"]))
    cases.append(("no_password", enc, [], ["--password"]))
    plain = write_pskc(tmp_path / "plain.pskc", [{"id": "a", "serial": "X-1", "secret": raw},
                                                 {"id": "b", "serial": "X-2", "secret": raw}])
    lines = plain.read_text().splitlines()
    lines[6] = "  <pskc:Broken attribute=unquoted>"  # one bad line in an otherwise good file
    (tmp_path / "malformed.pskc").write_text("\n".join(lines))
    cases.append(("malformed_xml", tmp_path / "malformed.pskc", [], ["line 7", "malformed XML"]))
    cases.append(("user_for_many", plain, ["--user", "judy"], ["--user", "has 2"]))
    hotp = write_pskc(tmp_path / "hotp.pskc", [{"id": "h1", "serial": "H-1", "secret": raw, "counter": 0,
                                                "algorithm": HOTP_URI}])
    cases.append(("hotp_key", hotp, [], ["key h1", "not TOTP"]))
    newline = write_pskc(tmp_path / "newline.pskc", [{"id": "n1", "serial": "N-1", "secret": raw,
                                                      "algorithm": TOTP_URI + "\n"}])
    cases.append(("algorithm_with_final_newline", newline, [], ["key n1", "not TOTP"]))  # $ took it
    (tmp_path / "notpskc.xml").write_text("<?xml version='1.0'?><Other/>")
    cases.append(("not_pskc", tmp_path / "notpskc.xml", [], ["KeyContainer"]))
    return cases


def test_broken_files_are_reported_and_import_nothing(cli, redis_db, tmp_path) -> None:
    existing = tmp_path / "existing.csv"
    existing.write_text(f"OLD-1,{pyotp.random_base32()},30,6,kate\n")
    assert cli("import", existing)[0] == 0
    before = snapshot(redis_db)
    for name, file, options, expect in broken_files(tmp_path):
        code, out, err = cli("import", file, *options)
        assert code == 1, name
        assert "nothing was imported" in err, (name, err)
        for fragment in expect:
            assert fragment in err, (name, fragment, err)
        assert snapshot(redis_db) == before, name


def test_an_existing_serial_refuses_the_whole_file_unless_replaced(cli, redis_db, tmp_path) -> None:
    first = tmp_path / "first.csv"
    first.write_text(f"R-1,{pyotp.random_base32()},30,6,leo\n")
    assert cli("import", first)[0] == 0
    before = snapshot(redis_db)
    again = tmp_path / "again.csv"
    new_secret = pyotp.random_base32()
    again.write_text(f"R-2,{pyotp.random_base32()},30\nR-1,{new_secret},60\n")
    code, _, err = cli("import", again)
    assert code == 1 and "R-1" in err and "line 2" in err and "--replace" in err
    assert snapshot(redis_db) == before and not redis_db.exists("gw:token:R-2")
    code, out, err = cli("import", again, "--replace")
    assert code == 0, err
    assert redis_db.hget("gw:token:R-1", "period") == b"60" and redis_db.hget("gw:token:R-1", "user") == b"leo"
    assert redis_db.exists("gw:token:R-2")


def test_the_real_command_line(redis_db, tmp_path) -> None:
    """`python -m gateway tokens import` as an operator runs it, in its own process."""
    file = tmp_path / "cli.csv"
    file.write_text(f"serial,secret,step,user\nCLI-1,{pyotp.random_base32()},30,mia\n")
    env = {**os.environ, **gateway_env(TEST_DB)}
    run = subprocess.run([sys.executable, "-m", "gateway", "tokens", "import", str(file)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "imported 1 token(s)" in run.stdout and redis_db.hget("gw:token:CLI-1", "user") == b"mia"
    bad = tmp_path / "bad.csv"
    bad.write_text("CLI-2,???,30\n")
    run = subprocess.run([sys.executable, "-m", "gateway", "tokens", "import", str(bad)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "line 1" in run.stderr and not redis_db.exists("gw:token:CLI-2")


def test_time_is_read_only_from_the_clock_given(app, cli, redis_db, tmp_path) -> None:
    """A token with a 60 s step and a fixed clock: the window is one 60 s step either side."""
    from gateway import methods
    from gateway.schemas import parse_start
    from gateway.verifications import start

    text = pyotp.random_base32()
    file = tmp_path / "sixty.csv"
    file.write_text(f"SIX-1,{text},60,6,nina\n")
    assert cli("import", file)[0] == 0
    svc = app.extensions["gateway"]
    v, _ = start(svc, parse_start({"to": "+48600100200", "channel": "totp", "user_id": "nina"}), None)
    token, fixed = pyotp.TOTP(text, interval=60), 1_900_000_030.0
    assert methods.totp_verify(svc, v, token.at(fixed + 120), now=fixed) is False
    assert methods.totp_verify(svc, v, token.at(fixed + 60), now=fixed) is True
    assert methods.totp_verify(svc, v, token.at(fixed), now=fixed + 1) is False  # earlier step than the last used


def test_serials_end_at_the_true_end_of_the_text() -> None:
    # The importer strips cells before this check; the pattern itself must not take a final
    # newline either ($ matches before one, \Z does not).
    assert oath.SERIAL.match("T-1") and oath.SERIAL.match("a" * 64)
    for bad in ("T-1\n", "T-1\r\n", "\nT-1", "a" * 65, "-T"):
        assert not oath.SERIAL.match(bad), bad
