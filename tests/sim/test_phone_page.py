"""The developer phone page in a real headless Chromium, with the simulator mounted at /dev."""
from __future__ import annotations

from typing import Iterator

import pytest
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from gateway import i18n
from simulator import create_simulator, get_simulator
from tests.browser import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from tests.stack import Stack, poll

from .conftest import AUTH_TOKEN, MOBILE, OWNED, Receiver, ServerThread, make_config, twilio_client

SMS_PATH = "/webhooks/twilio/sms/inbound"

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = needs_chromium


class DevStack:
    """Gateway side at the root and the simulator under /dev on one server, like the gateway's dev mode."""

    def __init__(self) -> None:
        """Start both apps on one port."""
        self.apps: dict[str, object] = {}
        self.server = ServerThread(lambda environ, start: self.apps["root"](environ, start))
        self.receiver = Receiver(AUTH_TOKEN)
        self.receiver.server = self.server
        self.sim_app = create_simulator(make_config(self.receiver, sms_url=self.server.url + SMS_PATH))
        self.apps["root"] = DispatcherMiddleware(self.receiver.app, {"/dev": self.sim_app})

    def stop(self) -> None:
        """Stop the server and the simulator's workers."""
        self.server.stop()
        get_simulator(self.sim_app).shutdown()


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    """One dev stack for the browser tests."""
    dev = DevStack()
    yield dev
    dev.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium (Debian's binary; never downloaded)."""
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def test_phone_page_sms_and_keypad(stack, browser):
    client = twilio_client(stack.server.url + "/dev")
    receiver = stack.receiver
    page = browser.new_page()
    page.set_default_timeout(10_000)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    try:
        page.goto(stack.server.url + "/dev/phone")
        assert page.title().startswith("Developer phone")
        page.wait_for_selector("#conn.ok")

        # 1. an SMS sent through the REST API shows up, markup shown as text
        client.messages.create(to=MOBILE, from_=OWNED, body="<b>x</b> Your code is 123456")
        page.wait_for_selector(f'#handset-list li[data-number="{MOBILE}"]')
        page.click(f'#handset-list li[data-number="{MOBILE}"]')
        bubble = page.locator("#thread .bubble.in .text").first
        bubble.wait_for()
        assert bubble.text_content() == "<b>x</b> Your code is 123456"
        assert page.locator("#thread b").count() == 0

        # 2. replying from the page posts a signed inbound webhook to the gateway side
        page.fill("#reply-body", "Reply 42 & <i>done</i>")
        page.click("#reply-send")
        hit = receiver.wait(SMS_PATH)[0]
        assert hit.signature_valid and hit.url == stack.server.url + SMS_PATH
        assert hit.params()["Body"] == "Reply 42 & <i>done</i>"
        assert hit.params()["From"] == MOBILE and hit.params()["To"] == OWNED
        page.wait_for_selector("#thread .bubble.out")

        # 3. keypad presses on an interactive call reach the Gather action
        receiver.twiml("/voice", '<Response><Gather action="/voice/action" timeout="15">'
                                 "<Say>Press 1 and then the hash key to confirm</Say></Gather></Response>")
        receiver.twiml("/voice/action", "<Response><Say>Thank you</Say></Response>")
        client.calls.create(to=MOBILE, from_=OWNED, url=receiver.url("/voice"))
        page.wait_for_selector("#gather-hint:not([hidden])")
        assert "Press 1 and then the hash key" in page.locator("#transcript").text_content()
        page.click('#keypad button[data-key="1"]')
        page.click('#keypad button[data-key="#"]')
        action = receiver.wait("/voice/action")[0]
        assert action.signature_valid
        assert (action.params()["Digits"], action.params()["FinishedOnKey"]) == ("1", "#")
        page.locator("#transcript li", has_text="Thank you").wait_for()
        assert problems == []
    finally:
        page.close()


@pytest.fixture(scope="module")
def gateway() -> Iterator[Stack]:
    """The Procfile's web and worker processes with the simulator as a real server."""
    running = Stack(10, FALLBACK_CHANNELS="", RATE_LIMIT_PER_NUMBER="1000")
    try:
        yield running.start()
    finally:
        running.stop()


def test_pound_on_the_phone_page_approves_a_confirm_call(gateway, browser):
    number = "+48600100777"
    page = browser.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    try:
        page.goto(f"{gateway.sim_url}/phone#{number}")
        page.wait_for_selector("#conn.ok")
        vid = gateway.start_verification(number, channel="call")["id"]
        page.wait_for_selector("#gather-hint:not([hidden])")  # the menu listens for keys
        assert "pound key" in page.locator("#transcript").text_content()
        page.click('#keypad button[data-key="#"]')
        body = poll(lambda: (lambda v: v if v["status"] != "pending" else None)(gateway.wait(vid, 10)), 30,
                    what="the verification to end")
        assert (body["status"], body["reason"]) == ("approved", None)
        page.locator("#transcript li", has_text=i18n.text("en", "voice", "approved")).wait_for()
        assert problems == []
    finally:
        page.close()
