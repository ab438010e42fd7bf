"""The helpdesk console in Debian's headless Chromium, against the Procfile's processes, the
simulator and verifications this test makes: sign in, charts with real data, find and reset a
user, unblock a number, and the refusals without a session or with a wrong CSRF token.

CONSOLE_SCREENSHOTS=docs saves the dashboard and a timeline as docs/console-*.png."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from tests.conftest import ADMIN_KEY
from tests.stack import ROOT, Stack
from tests.test_abuse import number_counters

ANNA, BEA, CARL, DORA = "+48600500101", "+48600500102", "+48600500103", "+48600500104"

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = needs_chromium


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    running = Stack(14, RATE_LIMIT_PER_NUMBER="1000", FRAUD_BLOCK_SECONDS="600", CALL_TTL="60")
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture(scope="module")
def made(stack: Stack) -> dict[str, Any]:
    """Real verifications: an SMS approved, one rescued by a call after 30003, a fraud report, a cancel."""
    stack.sim("PUT", f"handsets/{BEA}/behaviour",
              {"sms": "undelivered", "sms_error_code": 30003, "call": "answer", "keys": ["#"]})
    stack.sim("PUT", f"handsets/{CARL}/behaviour", {"call": "answer", "keys": ["0", "#"]})
    secret = stack.api("POST", "/v1/users/anna/totp").json()["secret"]
    r = stack.api("POST", "/v1/users/anna/totp/confirm", {"code": pyotp.TOTP(secret).now()})
    assert r.status_code == 200, r.text
    anna = stack.start_verification(ANNA, channel="sms", user_id="anna")
    assert stack.check(anna["id"], stack.sms_code(ANNA))["status"] == "approved"
    bea = stack.start_verification(BEA, channel="sms", fallback=["call"], user_id="bea")
    carl = stack.start_verification(CARL, channel="call", fallback=[], user_id="carl")
    dora = stack.start_verification(DORA, channel="sms", user_id="dora")
    stack.api("POST", f"/v1/verifications/{dora['id']}/cancel")
    assert stack.wait(bea["id"])["status"] == "approved"
    assert stack.wait(carl["id"])["reason"] == "fraud_reported"
    return {"anna": anna["id"], "bea": bea["id"], "carl": carl["id"]}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    tab.problems = []
    tab.on("pageerror", lambda exc: tab.problems.append(str(exc)))
    tab.on("console", lambda msg: tab.problems.append(msg.text) if msg.type == "error" else None)
    yield tab
    context.close()


def shot(tab: Any, name: str, tmp_path: Path) -> None:
    folder = ROOT / "docs" if os.environ.get("CONSOLE_SCREENSHOTS") == "docs" else tmp_path
    tab.screenshot(path=str(folder / f"console-{name}.png"), full_page=True)


def sign_in(tab: Any, stack: Stack) -> None:
    tab.goto(f"{stack.url}/console/")
    assert "/console/login" in tab.url
    tab.fill("#key", ADMIN_KEY)
    tab.click("#sign-in")
    tab.wait_for_selector("#dashboard")


def test_dashboard_charts_show_the_verifications_made(stack: Stack, made: dict[str, Any], page: Any,
                                                      tmp_path: Path) -> None:
    sign_in(page, stack)
    page.wait_for_selector("body[data-charts=ready]")
    tiles = page.locator("#tiles").inner_text()
    assert "4\nstarted" in tiles and "2\napproved" in tiles and "1\nrescued by fallback" in tiles
    for chart in ("days", "channels", "countries", "rescues", "errors"):
        assert page.locator(f"#chart-{chart} .main-svg").count() > 0, chart
        assert page.locator(f"#chart-{chart} .bars .point path").count() > 0, chart  # bars, not an empty frame
    assert "30003" in page.locator("#chart-errors").inner_text()
    assert "PL" in page.locator("#chart-countries").inner_text()
    shot(page, "dashboard", tmp_path)
    assert page.problems == []


def test_find_a_user_and_reset_them(stack: Stack, made: dict[str, Any], page: Any, tmp_path: Path) -> None:
    sign_in(page, stack)
    page.fill("#search", "anna")
    page.press("#search", "Enter")
    page.wait_for_selector("#user-id")
    assert page.locator("#app-state").inner_text() == "active"
    assert made["anna"] in page.locator("table.records").inner_text()
    page.click("#reset")
    page.wait_for_selector("#done")
    assert page.locator("#app-state").inner_text() == "none"
    assert "reset_user" in page.locator("#actions").inner_text() and "key_" in page.locator("#actions").inner_text()
    assert not stack.redis.exists("gw:user:anna")
    page.fill("#search", made["bea"])
    page.press("#search", "Enter")
    timeline = page.locator("#timeline")
    timeline.wait_for()
    text = timeline.inner_text()
    assert "sms" in text and "undelivered" in text and "30003" in text and "call" in text and "approved" in text
    shot(page, "timeline", tmp_path)
    assert page.problems == []


def test_unblock_a_number_but_not_with_a_wrong_csrf_token(stack: Stack, made: dict[str, Any], page: Any) -> None:
    sign_in(page, stack)
    page.goto(f"{stack.url}/console/numbers/{CARL}")
    assert "fraud reported" in page.locator("#block").inner_text() and made["carl"] in page.locator("#block").inner_text()
    # a forged form: same session, wrong token
    page.eval_on_selector("#block input[name=csrf_token]", "input => { input.value = 'forged' }")
    page.click("#unblock")
    page.wait_for_selector("#error-message")
    assert "CSRF" in page.locator("#error-message").inner_text()
    assert stack.redis.exists(f"gw:block:{CARL}")
    page.goto(f"{stack.url}/console/numbers/{CARL}")
    page.click("#unblock")
    page.wait_for_selector("#done")
    assert "none" in page.locator("#block").inner_text()
    assert not stack.redis.exists(f"gw:block:{CARL}")
    assert stack.api("POST", "/v1/verifications", {"to": CARL, "channel": "call", "fallback": []}).status_code == 201


def test_refused_without_a_session(stack: Stack, made: dict[str, Any], page: Any) -> None:
    page.goto(f"{stack.url}/console/users/bea")
    assert "/console/login" in page.url
    counters = number_counters(stack.redis, BEA)
    assert counters  # the start of the fixture counted
    r = page.request.post(f"{stack.url}/console/numbers/{BEA}/clear-rate-limit", form={"csrf_token": "x"})
    assert r.status == 401
    assert number_counters(stack.redis, BEA) == counters
