"""A loopback HTTP proxy in front of the carrier simulator that injects carrier faults.

The gateway's TWILIO_API_BASE_URL points here; every request goes on to the simulator
unchanged except the message sends (`POST …/Messages.json`) picked by the plan:
- `hold`: the request is read and never answered (a send in flight, for killing its worker);
- `stall`: like `hold`, but once let go the send reaches the simulator (it went out after all);
- `error`: Twilio answers HTTP 500 (an HTML page, as its front end does) and sends nothing;
- `late`: the simulator accepts the message, the answer comes after the client gave up
  (the ambiguous timeout: sent, but the gateway cannot know).
Written by hand because no library injects faults at this one request type; it is a test tool.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

FAULTS = ("hold", "stall", "error", "late")


@dataclass
class Plan:
    """Which message sends get which fault."""

    next: list[str] = field(default_factory=list)  # faults for the next sends, in order
    every: int = 0  # with `cycle`: every n-th send gets the next fault of the cycle (10 = 10 %)
    cycle: tuple[str, ...] = ()
    late_seconds: float = 15.0


@dataclass
class Record:
    """One message send that passed through, and what was done to it."""

    to: str
    fault: str | None
    at: float
    client_port: int = 0  # the sender's end of the connection (which process sent it: bench/faults.py)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up (timed out, or was killed) is what the faults are about: not an error."""


class FaultProxy:
    """The proxy server (a thread); `plan` decides, `records` tells what happened."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.plan = Plan()
        self.records: list[Record] = []
        self.let_go = threading.Event()  # held and stalled sends wait for this
        self._lock = threading.Lock()
        self._sends = 0
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "FaultProxy":
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Let held requests go and stop serving."""
        self.let_go.set()
        self.server.shutdown()
        self.server.server_close()

    def held(self) -> list[Record]:
        """The sends held or stalled so far."""
        with self._lock:
            return [r for r in self.records if r.fault in ("hold", "stall")]

    def _decide(self, to: str, client_port: int = 0) -> str | None:
        with self._lock:
            self._sends += 1
            fault: str | None = None
            if self.plan.next:
                fault = self.plan.next.pop(0)
            elif self.plan.every and self.plan.cycle and self._sends % self.plan.every == 0:
                fault = self.plan.cycle[(self._sends // self.plan.every) % len(self.plan.cycle)]
            self.records.append(Record(to, fault, time.monotonic(), client_port))
            return fault

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def _forward(self, body: bytes) -> requests.Response:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                return requests.request(self.command, proxy.target + self.path, data=body, headers=headers,
                                        timeout=30, allow_redirects=False)

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = None
                if self.command == "POST" and self.path.endswith("/Messages.json"):
                    to = requests.utils.unquote(body.decode(errors="replace").partition("To=")[2].split("&")[0])
                    fault = proxy._decide(to, self.client_address[1])
                if fault in ("hold", "stall"):
                    proxy.let_go.wait(120)
                    if fault == "hold":
                        self.close_connection = True
                        return
                if fault == "error":
                    self._answer(500, b"<html><body>Internal Server Error</body></html>", "text/html")
                    return
                answer = self._forward(body)
                if fault == "late":
                    time.sleep(proxy.plan.late_seconds)
                self._answer(answer.status_code, answer.content,
                             answer.headers.get("Content-Type", "application/json"))

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        return Handler
