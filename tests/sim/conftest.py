"""Fixtures for the carrier-simulator tests: a running simulator, a throwaway "gateway side" receiver."""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
from flask import Flask, Request, Response, request
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from werkzeug.datastructures import MultiDict
from werkzeug.serving import BaseWSGIServer, make_server

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from simulator import SimulatorConfig, create_simulator, get_simulator  # noqa: E402

for _name in ("TWILIO_REGION", "TWILIO_EDGE"):
    os.environ.pop(_name, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
logging.getLogger("werkzeug").setLevel(logging.ERROR)

ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
OWNED = "+15005550006"
OWNED_2 = "+12025550143"
SERVICE = "MG" + "b2" * 16
MOBILE = "+48600100200"
MOBILE_2 = "+48501234567"
LANDLINE = "+48221234567"
US_NUMBER = "+14155552671"
WAIT_S = 5.0


def wait_for(predicate: Callable[[], Any], timeout: float = WAIT_S, what: str = "condition") -> Any:
    """Poll predicate until it returns something truthy (bounded); return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class ServerThread:
    """A werkzeug threaded server on a free loopback port, served from a daemon thread."""

    def __init__(self, app: Callable[..., Any]) -> None:
        """Bind to 127.0.0.1:0 and start serving."""
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Hit:
    """One request the receiver got."""

    method: str
    path: str
    url: str
    form: MultiDict
    query: MultiDict
    headers: dict[str, str]
    signature_valid: bool
    time: float = field(default_factory=time.monotonic)

    def params(self) -> dict[str, str]:
        """Form (POST) or query (GET) parameters as a plain dict."""
        return dict((self.form if self.method == "POST" else self.query).items())


class Receiver:
    """The "gateway side": records every request, validates X-Twilio-Signature, answers via handlers."""

    def __init__(self, auth_token: str) -> None:
        """Start a Flask app on a free port."""
        self.validator = RequestValidator(auth_token)
        self.lock = threading.Lock()
        self.hits: list[Hit] = []
        self.handlers: dict[str, Callable[[Request], Any]] = {}
        app = Flask("receiver")

        @app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
        @app.route("/<path:path>", methods=["GET", "POST"])
        def catch_all(path: str) -> Any:
            return self._handle()

        self.app = app
        self.server: ServerThread | None = None

    def start(self) -> "Receiver":
        """Serve the receiver on its own port."""
        self.server = ServerThread(self.app)
        return self

    @property
    def base(self) -> str:
        """http://127.0.0.1:port of the receiver's own server."""
        assert self.server is not None
        return self.server.url

    def url(self, path: str) -> str:
        """Absolute URL of a path on the receiver."""
        return self.base + path

    def _handle(self) -> Any:
        """Record, validate the signature over the raw URL Twilio requested, and answer."""
        raw = request.environ.get("RAW_URI") or request.full_path
        url = request.host_url.rstrip("/") + raw
        params = request.form if request.method == "POST" else {}
        valid = self.validator.validate(url, params, request.headers.get("X-Twilio-Signature", ""))
        hit = Hit(method=request.method, path=request.path, url=url, form=MultiDict(request.form),
                  query=MultiDict(request.args), headers=dict(request.headers), signature_valid=valid)
        with self.lock:
            self.hits.append(hit)
            handler = self.handlers.get(request.path)
        if handler is None:
            return Response("", status=204)
        return handler(request)

    def on(self, path: str, handler: Callable[[Request], Any]) -> None:
        """Answer requests to path with handler(request)."""
        with self.lock:
            self.handlers[path] = handler

    def twiml(self, path: str, body: str | Callable[[Request], str], status: int = 200) -> None:
        """Answer path with TwiML (text/xml)."""
        def handler(req: Request) -> Response:
            text = body(req) if callable(body) else body
            return Response(text, status=status, mimetype="text/xml")
        self.on(path, handler)

    def get(self, path: str | None = None) -> list[Hit]:
        """Hits so far (optionally only for one path)."""
        with self.lock:
            return [h for h in self.hits if path is None or h.path == path]

    def wait(self, path: str, count: int = 1, timeout: float = WAIT_S) -> list[Hit]:
        """Wait until path got at least count requests; return them."""
        return wait_for(lambda: (lambda hits: hits if len(hits) >= count else None)(self.get(path)),
                        timeout, f"{count} request(s) to {path}")

    def clear(self) -> None:
        """Forget hits and handlers."""
        with self.lock:
            self.hits.clear()
            self.handlers.clear()


class Control:
    """Tiny client for the simulator's /_sim control API."""

    def __init__(self, base: str) -> None:
        """Base URL of the simulator (root or mount prefix)."""
        self.base = base
        self.http = requests.Session()
        self.http.trust_env = False

    def call(self, method: str, path: str, json: Any = None, expect: int | None = 200) -> Any:
        """Call the control API and return the JSON body (asserting the status when expect is set)."""
        response = self.http.request(method, self.base + "/_sim" + path, json=json, timeout=10)
        if expect is not None:
            assert response.status_code == expect, (response.status_code, response.text)
        return response.json()

    def handset(self, number: str) -> dict[str, Any]:
        """GET a handset."""
        return self.call("GET", f"/handsets/{number}")

    def behave(self, number: str, **behaviour: Any) -> dict[str, Any]:
        """PUT a handset's behaviour."""
        return self.call("PUT", f"/handsets/{number}/behaviour", behaviour)

    def sms_from(self, number: str, body: str, to: str | None = None) -> dict[str, Any]:
        """The handset sends an SMS to an owned number."""
        payload = {"body": body} if to is None else {"body": body, "to": to}
        return self.call("POST", f"/handsets/{number}/sms", payload, expect=202)

    def call_of(self, sid: str) -> dict[str, Any]:
        """GET a call view."""
        return self.call("GET", f"/calls/{sid}")

    def wait_call(self, sid: str, status: str | None = None, timeout: float = WAIT_S) -> dict[str, Any]:
        """Wait until the call ended (or reached status)."""
        def check() -> dict[str, Any] | None:
            view = self.call_of(sid)
            done = view["status"] == status if status else not view["active"]
            return view if done else None
        return wait_for(check, timeout, f"call {sid} to reach {status or 'an end'}")


def make_config(receiver: Receiver, **overrides: Any) -> SimulatorConfig:
    """The test simulator configuration."""
    values: dict[str, Any] = dict(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, numbers=(OWNED, OWNED_2),
                                  messaging_services=(SERVICE,), sms_url=receiver.url("/sms/inbound"))
    values.update(overrides)
    return SimulatorConfig(**values)


def twilio_client(base_url: str) -> Client:
    """A real twilio Client pointed at the simulator."""
    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    client.api.base_url = base_url
    return client


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    """The throwaway gateway side (session-wide, cleared per test)."""
    rec = Receiver(AUTH_TOKEN).start()
    yield rec
    assert rec.server is not None
    rec.server.stop()


@pytest.fixture(scope="session")
def sim_server(receiver: Receiver) -> Iterator[ServerThread]:
    """The simulator at the root of its own threaded server."""
    app = create_simulator(make_config(receiver))
    server = ServerThread(app)
    yield server
    server.stop()
    get_simulator(app).shutdown()


@pytest.fixture
def sim(sim_server: ServerThread, receiver: Receiver) -> Iterator[ServerThread]:
    """The simulator, reset and with a clean receiver for each test."""
    requests.post(sim_server.url + "/_sim/reset", timeout=5).raise_for_status()
    receiver.clear()
    yield sim_server
    requests.post(sim_server.url + "/_sim/reset", timeout=5).raise_for_status()


@pytest.fixture
def control(sim: ServerThread) -> Control:
    """Control-API client for the simulator."""
    return Control(sim.url)


@pytest.fixture
def client(sim: ServerThread) -> Client:
    """twilio Client talking to the simulator."""
    return twilio_client(sim.url)
