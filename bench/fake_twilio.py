"""A small fast fake Twilio for the bench: Messages.json answers 201 (after an optional
delay) and keeps the code each SMS carried, so the load generator can check it.

Run: `python -m bench.fake_twilio --port 8099 [--delay-ms 200]`. Control endpoints:
GET /_bench/code?to=+48...&wait=10 (blocks until an SMS to that number arrived),
GET /_bench/codes, GET /_bench/stats, POST /_bench/reset, POST /_bench/config {"delay_ms": N}.
"""
from __future__ import annotations

import argparse
import base64
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MESSAGES = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Messages\.json$")
CODE = re.compile(r"(?<!\d)\d{4,10}(?!\d)")


@dataclass
class Ledger:
    """What the fake received: the code per destination and when each request ran."""

    delay_s: float = 0.0
    codes: dict[str, str] = field(default_factory=dict)
    arrived: list[float] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Condition = field(default_factory=threading.Condition)

    def begin(self) -> None:
        """Note a request arriving."""
        with self.lock:
            self.arrived.append(time.time())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def record(self, to: str, body: str) -> None:
        """Keep the code of an answered SMS and wake whoever waits for it."""
        match = CODE.search(body)
        with self.lock:
            self.in_flight -= 1
            self.answered.append(time.time())
            if match:
                self.codes[to] = match.group(0)
            self.lock.notify_all()

    def wait_code(self, to: str, timeout: float) -> str | None:
        """The code sent to a number, waiting up to timeout seconds for it."""
        with self.lock:
            self.lock.wait_for(lambda: to in self.codes, timeout)
            return self.codes.get(to)

    def reset(self) -> None:
        """Forget everything received so far."""
        with self.lock:
            self.codes.clear()
            self.arrived.clear()
            self.answered.clear()
            self.max_in_flight = self.in_flight

    def stats(self) -> dict[str, object]:
        """Counts and timestamps (epoch seconds) of the requests received."""
        with self.lock:
            return {
                "count": len(self.answered), "arrived": list(self.arrived), "answered": list(self.answered),
                "max_in_flight": self.max_in_flight, "delay_ms": round(self.delay_s * 1000),
            }


LEDGER = Ledger()


def message_json(account_sid: str, form: dict[str, str]) -> dict[str, object]:
    """A Twilio-shaped Message resource for a freshly queued SMS."""
    sid = "SM" + secrets.token_hex(16)
    now = formatdate(usegmt=False).replace("-0000", "+0000")
    return {
        "account_sid": account_sid, "api_version": "2010-04-01", "body": form.get("Body", ""),
        "date_created": now, "date_sent": None, "date_updated": now, "direction": "outbound-api",
        "error_code": None, "error_message": None, "from": form.get("From"),
        "messaging_service_sid": form.get("MessagingServiceSid"), "num_media": "0", "num_segments": "1",
        "price": None, "price_unit": "USD", "sid": sid, "status": "queued", "to": form.get("To"),
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}/Media.json"},
        "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
    }


class Handler(BaseHTTPRequestHandler):
    """Twilio's Messages.json plus the bench's /_bench control endpoints."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the twilio client's requests session expects
    # Headers and body leave in one segment: written apart on a keep-alive connection, Nagle
    # holds the body until the client's delayed ACK (~40 ms) and the bench would time that.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: one line per request would cost more than the request."""

    def _answer(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:  # noqa: N802
        """Create a message, or change the fake's settings."""
        url = urlsplit(self.path)
        body = self._body()
        if url.path == "/_bench/reset":
            LEDGER.reset()
            return self._answer(200, {"ok": True})
        if url.path == "/_bench/config":
            LEDGER.delay_s = float(json.loads(body or b"{}").get("delay_ms", 0)) / 1000
            return self._answer(200, {"delay_ms": round(LEDGER.delay_s * 1000)})
        match = MESSAGES.match(url.path)
        if not match:
            return self._answer(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
        account_sid = match.group(1)
        user = base64.b64decode(self.headers.get("Authorization", "Basic ")[6:] or b"").split(b":", 1)[0]
        if user.decode(errors="replace") != account_sid:
            return self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        LEDGER.begin()
        if LEDGER.delay_s:
            time.sleep(LEDGER.delay_s)  # the carrier's own latency is what is simulated here
        payload = message_json(account_sid, form)
        LEDGER.record(form.get("To", ""), form.get("Body", ""))
        self._answer(201, payload)

    def do_GET(self) -> None:  # noqa: N802
        """Read what was received."""
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/_bench/code":
            code = LEDGER.wait_code(query.get("to", ""), float(query.get("wait", "0")))
            return self._answer(200 if code else 404, {"code": code})
        if url.path == "/_bench/codes":
            with LEDGER.lock:
                return self._answer(200, dict(LEDGER.codes))
        if url.path == "/_bench/stats":
            return self._answer(200, LEDGER.stats())
        return self._answer(404, {"code": 20404, "message": "not found", "status": 404})


class Server(ThreadingHTTPServer):
    """A thread per connection; a deep backlog for bursts of worker connections."""

    daemon_threads = True
    request_queue_size = 256


def main() -> None:
    """Entry point: serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    LEDGER.delay_s = args.delay_ms / 1000
    server = Server(("127.0.0.1", args.port), Handler)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
