"""Small security gaps: masked audit log lines, a readiness answer without internals, the user
id alphabet, locales from their folders."""
from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from config import Settings
from gateway import create_app, i18n
from gateway.logs import JsonFormatter
from tests.stack import ROOT, free_port
from tests.test_api import start

PERSON = {"first_name": "Jadwiga", "last_name": "Kowalska", "email": "jadwiga.k@example.com"}


def test_the_audit_log_line_masks_what_identifies_a_person(client, redis_db) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    audit = logging.getLogger("gateway.audit")
    audit.addHandler(handler)
    level = audit.level
    audit.setLevel(logging.INFO)  # setLevel, not .level: it clears the loggers' cached levels
    try:
        vid = start(client, to="+48600123987", user_id="jk-7", client_ip="203.0.113.77", user=PERSON).get_json()["id"]
        assert client.post(f"/v1/verifications/{vid}/cancel").status_code == 200
    finally:
        audit.removeHandler(handler)
        audit.setLevel(level)
    line = out.getvalue()
    entry = json.loads(line)["audit"]
    for secret in ("600123987", "Jadwiga", "Kowalska", "jadwiga.k", "203.0.113.77"):
        assert secret not in line
    assert entry["phone_number"] == "+48*******87" and entry["email"] == "j***@example.com"
    assert entry["first_name"] == "J***" and entry["client_ip"] == "203.0.113.0/24"
    assert entry["verification_id"] == vid and entry["user_id"] == "jk-7" and entry["status"] == "canceled"
    (_, stored), = redis_db.xrange("gw:audit")  # the stream keeps the whole record
    assert stored[b"phone_number"] == b"+48600123987" and stored[b"email"] == PERSON["email"].encode()
    assert stored[b"client_ip"] == b"203.0.113.77" and stored[b"last_name"] == b"Kowalska"


def test_readyz_does_not_tell_where_redis_is(settings: Settings) -> None:
    port = free_port()  # nothing listens there
    app = create_app(settings.replace(redis_url=f"redis://127.0.0.1:{port}/0"))
    r = app.test_client().get("/readyz")
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "unavailable"
    assert str(port) not in r.get_data(as_text=True) and "127.0.0.1" not in r.get_data(as_text=True)


@pytest.mark.parametrize("user_id", [
    "alice\n",  # $ would match before the newline
    "\u0430lice",  # Cyrillic a
    "\uff41lice",  # fullwidth a
    "al\u0131ce",  # dotless i
    "bj\u00f6rn",
    "x" * 129,
])
def test_user_ids_outside_the_ascii_alphabet_are_refused(client, redis_db, user_id: str) -> None:
    r = start(client, user_id=user_id)
    assert r.status_code == 400 and "user_id" in r.get_json()["error"]["message"]
    assert client.post(f"/v1/users/{quote(user_id)}/totp").status_code == 400
    assert not redis_db.keys("gw:vf:*") and not redis_db.keys("gw:user:*")


@pytest.mark.parametrize("user_id", ["alice", "jan.kowalski", "a+b@example.com", "A_1-2", "x" * 128])
def test_user_ids_of_the_documented_alphabet_are_accepted(client, user_id: str) -> None:
    assert start(client, user_id=user_id).status_code == 201


@pytest.mark.parametrize("body", [{"code": "123456\n"}, {"code": "\u0661\u0662\u0663\u0664"}])
def test_codes_are_ascii_digits_without_a_trailing_newline(client, body) -> None:
    vid = start(client).get_json()["id"]
    r = client.post(f"/v1/verifications/{vid}/check", json=body)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_request"
    assert client.get(f"/v1/verifications/{vid}").get_json()["remaining_attempts"] == 5


def test_locales_are_the_folders_and_the_openapi_file_lists_them(client) -> None:
    folders = sorted(p.name for p in (Path(i18n.__file__).parent / "locales").iterdir() if p.is_dir())
    assert list(i18n.LOCALES) == folders
    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    assert spec["components"]["schemas"]["StartRequest"]["properties"]["locale"]["enum"] == folders
    assert start(client, locale="xx").status_code == 400
    for locale in folders:
        assert start(client, to=f"+4860010020{folders.index(locale)}", locale=locale).status_code == 201


# -- found by the fuzz test (tests/e2e/test_fuzz.py) -------------------------------------------

@pytest.mark.parametrize("query", ["cursor=0-0", "cursor=00-000", "since=1969-01-01T00:00:00Z",
                                   "until=1969-12-31T23:59:59Z", "since=1969-01-01T00:00:00Z&until=1969-06-01T00:00:00Z"])
def test_audit_ranges_before_the_first_stream_id_answer_empty(admin, query: str) -> None:
    for path in ("/v1/audit", "/v1/audit.csv"):
        r = admin.get(f"{path}?{query}")
        assert r.status_code == 200, r.get_data(as_text=True)
    assert admin.get(f"/v1/audit?{query}").get_json()["records"] == []  # an empty stream


@pytest.mark.parametrize("user", [False, 0, "", [], "x"])
def test_user_must_be_an_object_or_null(client, redis_db, user) -> None:
    assert start(client, user=user).status_code == 400
    assert not redis_db.keys("gw:vf:*")


def test_optional_start_fields_sent_as_null_count_as_absent(client) -> None:
    r = start(client, country=None, fallback=None, user_id=None, client_ip=None, user=None)
    assert r.status_code == 201, r.get_json()


@pytest.mark.parametrize("path", ["/v2/Services/abc/Verifications/de%0A", "/v2/Nothing"])
def test_a_v2_url_that_matches_no_route_answers_in_twilios_shape(client, path: str) -> None:
    body = client.post(path).get_json()
    assert body["status"] == 404 and set(body) == {"code", "message", "more_info", "status"}
    assert client.post("/v1/nothing").get_json()["error"]["code"] == "not_found"  # /v1 keeps its own


def test_a_v2_method_not_allowed_keeps_the_allow_header(client) -> None:
    r = client.open("/v2/Services/VA0/Verifications/x", method="TRACE")
    assert r.status_code == 405 and "POST" in r.headers["Allow"] and r.get_json()["status"] == 405
