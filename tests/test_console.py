"""The helpdesk console in-process: sign-in, sessions, CSRF, pages, actions and what they never show."""
from __future__ import annotations

import dataclasses
import re
import time

import pyotp
import pytest

from gateway import create_app, keys, methods, oath
from tests.conftest import ADMIN_KEY, API_KEY
from tests.test_abuse import number_counters, numbers, refused, start
from tests.test_audit import ANNA, BOB, ended

SECRETS = re.compile(r"[A-Z2-7]{32}")  # a base32 TOTP secret or token seed


def form_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def sign_in(c, key: str = ADMIN_KEY):  # type: ignore[no-untyped-def]
    token = form_token(c.get("/console/login").get_data(as_text=True))
    return c.post("/console/login", data={"csrf_token": token, "key": key, "next": ""})


@pytest.fixture
def console(app):  # type: ignore[no-untyped-def]
    """A browser-like client signed in with the admin key."""
    c = app.test_client()
    assert sign_in(c).status_code == 302
    return c


def test_pages_need_a_session(app) -> None:
    c = app.test_client()
    r = c.get("/console/users/anna")
    assert r.status_code == 302 and r.headers["Location"].startswith("/console/login?next=/console/users/anna")
    r = c.get("/console/data/usage")  # data, not a page: the JSON error shape, no redirect
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthorized"
    r = c.post("/console/users/anna/reset", data={"csrf_token": "x"})
    assert r.status_code == 401 and "Sign in" in r.get_data(as_text=True)


def test_only_admin_keys_sign_in_and_the_cookie_is_locked_down(app) -> None:
    c = app.test_client()
    for key in (API_KEY, "nonsense-key-0123456789", ""):
        r = sign_in(c, key)
        assert r.status_code == 401 and "not an admin key" in r.get_data(as_text=True)
    r = sign_in(c)
    assert r.status_code == 302 and r.headers["Location"] == "/console/"
    cookie = next(h for h in r.headers.getlist("Set-Cookie") if h.startswith("gw_console="))
    assert all(flag in cookie for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/console"))
    assert ADMIN_KEY not in cookie


def test_sign_in_needs_its_form_token_and_never_redirects_away(app) -> None:
    c = app.test_client()
    c.get("/console/login")
    r = c.post("/console/login", data={"csrf_token": "forged", "key": ADMIN_KEY})
    assert r.status_code == 403
    token = form_token(c.get("/console/login").get_data(as_text=True))
    r = c.post("/console/login", data={"csrf_token": token, "key": ADMIN_KEY, "next": "https://evil.example/"})
    assert r.headers["Location"] == "/console/"


def test_the_session_lives_in_redis_and_sign_out_ends_it(app, console, redis_db) -> None:
    [key] = redis_db.keys("gw:console:*")
    cookie = console.get_cookie("gw_console", path="/console").value
    assert cookie.encode() not in key and redis_db.hget(key, "key_id").startswith(b"key_")
    page = console.get("/console/").get_data(as_text=True)
    assert "Dashboard" in page and ADMIN_KEY not in page
    assert console.post("/console/logout", data={"csrf_token": "wrong"}).status_code == 403
    assert redis_db.exists(key)
    assert console.post("/console/logout", data={"csrf_token": form_token(page)}).status_code == 302
    assert not redis_db.exists(key)
    # the old cookie no longer opens anything
    fresh = app.test_client()
    fresh.set_cookie("gw_console", cookie, path="/console")
    assert fresh.get("/console/").status_code == 302


def test_dashboard_data_is_the_usage_report_and_pages_are_locked_down(app, client, console) -> None:
    ended(app, client, ANNA, "approved", user_id="anna")
    r = console.get("/console/data/usage?group_by=channel")
    assert r.get_json()["rows"][0]["key"] == "sms" and r.get_json()["totals"]["approved"] == 1
    page = console.get("/console/")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and page.headers["Cache-Control"] == "no-store"
    assert "<script>" not in page.get_data(as_text=True)  # no inline script
    js = console.get("/console/vendor/plotly.min.js")
    assert js.status_code == 200 and b"plotly" in js.data[:2000].lower()
    js.close()


def enrol_with_token(app, client, user: str) -> None:  # type: ignore[no-untyped-def]
    """An active authenticator app (enrolled and confirmed) and an assigned OATH token."""
    secret = client.post(f"/v1/users/{user}/totp").get_json()["secret"]
    r = client.post(f"/v1/users/{user}/totp/confirm", json={"code": pyotp.TOTP(secret).now()})
    assert r.status_code == 200, r.get_json()
    seed = pyotp.random_base32()
    methods.import_tokens(app.extensions["gateway"], [oath.Token(f"TOK-{user}", seed, oath.Params(), user, "t")])


def test_user_page_and_lost_phone_reset_recorded_with_the_key_id(app, client, console, redis_db) -> None:
    enrol_with_token(app, client, "anna")
    vid = ended(app, client, ANNA, "approved", user_id="anna")
    page = console.get("/console/users/anna").get_data(as_text=True)
    assert 'id="app-state">active<' in page and "TOK-anna" in page and vid in page
    assert 'id="recovery-codes">10<' in page and "authenticator_activated (first)" in page
    assert not SECRETS.search(page)
    token = form_token(page)
    assert console.post("/console/users/anna/reset", data={"csrf_token": token + "x"}).status_code == 403
    assert redis_db.exists("gw:user:anna")
    r = console.post("/console/users/anna/reset", data={"csrf_token": token})
    assert r.status_code == 302 and not redis_db.exists("gw:user:anna")
    page = console.get("/console/users/anna").get_data(as_text=True)
    assert "reset_user" in page and "method(s) removed" in page and ADMIN_KEY not in page
    assert 'id="app-state">none<' in page and "methods_reset (admin)" in page  # gw:audit:users beside gw:audit
    assert page.index("methods_reset") < page.index(vid) < page.index("authenticator_activated")  # newest first
    [action] = [f for _, f in redis_db.xrange("gw:actions") if f[b"action"] == b"reset_user"]
    assert action[b"key_id"].startswith(b"key_") and action[b"via"] == b"console"


def test_assign_unassign_and_start_on_another_channel(app, client, console, redis_db) -> None:
    enrol_with_token(app, client, "bob")
    methods.import_tokens(app.extensions["gateway"], [oath.Token("SPARE-1", pyotp.random_base32(), oath.Params(),
                                                                 None, "t")])
    token = form_token(console.get("/console/users/bob").get_data(as_text=True))
    assert console.post("/console/users/bob/tokens", data={"csrf_token": token, "serial": "SPARE-1"}).status_code == 302
    assert redis_db.hget("gw:token:SPARE-1", "user") == b"bob"
    r = console.post("/console/users/bob/tokens", data={"csrf_token": token, "serial": "TOK-bob", "op": "unassign"})
    assert r.status_code == 302 and redis_db.hget("gw:token:TOK-bob", "user") == b""
    r = console.post("/console/users/bob/verifications", data={"csrf_token": token, "to": BOB, "channel": "call"})
    assert r.status_code == 302 and "/console/verifications/vf_" in r.headers["Location"]
    page = console.get(r.headers["Location"]).get_data(as_text=True)
    assert "call" in page and "pending" in page and "queued" in page


def test_number_page_unblock_and_clear_with_reasons(app, client, console, redis_db) -> None:
    for _ in range(5):
        client.post("/v1/verifications", json={"to": ANNA, "channel": "sms"})
    redis_db.set(f"gw:block:{ANNA}", "0# pressed (fraud reported) on vf_x at 2026-12-02T10:00:00Z", ex=600)
    # A client's counter begun in the last window generation, its window still running (admit.lua).
    now, _ = redis_db.time()
    window = app.extensions["gateway"].settings.rate_limit_window
    redis_db.hset(keys.limits(now // window - 1, f"n{ANNA}"), f"p{ANNA}|198.51.100.9", f"3:{now + 100}")
    page = console.get(f"/console/numbers/{ANNA}").get_data(as_text=True)
    assert "0# pressed (fraud reported) on vf_x" in page and "5 of 5 — <strong>limited</strong>" in page
    assert "client 198.51.100.9" in page and "3 of 5" in page
    token = form_token(page)
    assert console.post(f"/console/numbers/{ANNA}/unblock", data={}).status_code == 403
    assert redis_db.exists(f"gw:block:{ANNA}")
    assert console.post(f"/console/numbers/{ANNA}/unblock", data={"csrf_token": token}).status_code == 302
    assert console.post(f"/console/numbers/{ANNA}/clear-rate-limit", data={"csrf_token": token}).status_code == 302
    assert not redis_db.exists(f"gw:block:{ANNA}") and not number_counters(redis_db, ANNA)
    assert client.post("/v1/verifications", json={"to": ANNA, "channel": "sms"}).status_code == 201
    page = console.get(f"/console/numbers/{ANNA}").get_data(as_text=True)
    assert "unblock_number" in page and "clear_rate_limit" in page


def test_search_and_unknown_things(app, client, console) -> None:
    vid = ended(app, client, ANNA, "denied", user_id="carl")
    assert console.get(f"/console/search?q={vid}").headers["Location"] == f"/console/verifications/{vid}"
    assert console.get("/console/search?q=%2B48600100200").headers["Location"] == f"/console/numbers/{ANNA}"
    assert console.get("/console/search?q=carl").headers["Location"] == "/console/users/carl"
    page = console.get(f"/console/verifications/{vid}").get_data(as_text=True)
    assert "max_attempts" in page and "424242" not in page
    assert console.get("/console/users/nobody").status_code == 404
    assert console.get("/console/numbers/+48600999999").status_code == 404
    assert console.get("/console/verifications/vf_unknown").status_code == 404
    token = form_token(page)
    assert console.post("/console/users/nobody/reset", data={"csrf_token": token}).status_code == 404
    assert console.post("/console/numbers/+48600999999/unblock", data={"csrf_token": token}).status_code == 404
    assert console.get("/console/numbers/12345").status_code == 400


def test_a_number_with_a_final_newline_is_refused_not_looked_up(client, console) -> None:
    assert client.post("/v1/verifications", json={"to": ANNA, "channel": "sms"}).status_code == 201
    assert console.get(f"/console/numbers/{ANNA}").status_code == 200
    r = console.get("/console/numbers/%2B48600100200%0A")  # $ matched before the newline: a 404 for "another" number
    assert r.status_code == 400 and "E.164" in r.get_data(as_text=True)


def test_an_operator_sees_a_tripped_breaker_and_resets_it_audited(settings, redis_db) -> None:
    app = create_app(settings.replace(abuse=dataclasses.replace(settings.abuse, pumping_min_sends=3)))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    console = app.test_client()
    assert sign_in(console).status_code == 302
    *pumped, victim = numbers("+48600", 4)
    for to in pumped:  # three sends, none converted: the +48 600 range trips
        assert start(client, to).status_code == 201
    assert refused(start(client, victim), "fraud_suspected")
    breakers = app.extensions["gateway"].abuse.breakers
    assert [(b.scope, b.id) for b in breakers(time.time())] == [("prefix", "48600")]

    page = console.get(f"/console/numbers/{victim}").get_data(as_text=True)
    row = page[page.index('id="breakers"'):page.index("</tr>", page.index('id="breakers"'))]
    assert "tripped" in row and "+48 600" in row and "0 of 3 sends converted" in row
    action = f"/console/numbers/{victim}/breakers/prefix/48600/reset"
    assert f'action="{action}"' in row
    token = form_token(page)
    assert console.post(action, data={"csrf_token": token + "x"}).status_code == 403  # no valid CSRF token
    assert start(client, "+48601100200").status_code == 201  # known to the gateway, in the next range
    other = "/console/numbers/+48601100200/breakers/prefix/48600/reset"  # the breaker does not cover it
    assert console.post(other, data={"csrf_token": token}).status_code == 404
    assert [(b.scope, b.id) for b in breakers(time.time())] == [("prefix", "48600")]  # both changed nothing
    def resets() -> list[dict[bytes, bytes]]:
        return [f for _, f in redis_db.xrange("gw:actions") if f[b"action"] == b"reset_breaker"]

    assert not resets() and not [x for _, x in redis_db.xrange("gw:audit") if x.get(b"event") == b"breaker_reset"]

    r = console.post(action, data={"csrf_token": token})
    assert r.status_code == 302 and r.headers["Location"].startswith(f"/console/numbers/{victim}")
    assert breakers(time.time()) == []
    page = console.get(r.headers["Location"]).get_data(as_text=True)
    assert "Done: breaker reset" in page and "none tripped for this number" in page
    assert start(client, victim).status_code == 201  # the range sends again
    [done] = resets()
    assert (done[b"action"], done[b"target"], done[b"via"]) == (b"reset_breaker", b"prefix:48600", b"console")
    assert done[b"key_id"].startswith(b"key_") and ADMIN_KEY.encode() not in done[b"key_id"]
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    records = client.get("/v1/audit", headers=admin).get_json()["records"]
    [reset] = [x for x in records if x.get("event") == "breaker_reset"]
    assert reset["breaker"] == "prefix:48600" and reset["operator"] == done[b"key_id"].decode()
