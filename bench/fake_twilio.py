"""A small fast fake Twilio for the bench: Messages.json answers 201 (after an optional
delay) and keeps the code each SMS carried, so the load generator can check it.

With callbacks on, each message's `StatusCallback` then receives `sent` and `delivered`
status callbacks, signed with X-Twilio-Signature as Twilio signs them (twilio's
RequestValidator over the URL and the POST parameters, the auth token as key: wire reference
§5–6), one after the other; the code is handed to the load generator only after `delivered`
was answered, as a user reads it only once it arrived.

Run: `python -m bench.fake_twilio --port 8099 [--delay-ms 200] [--auth-token T]`. Control endpoints:
GET /_bench/code?to=+48...&wait=10 (blocks until an SMS to that number arrived),
GET /_bench/codes, GET /_bench/stats, POST /_bench/reset,
POST /_bench/config {"delay_ms": N, "callbacks": true|false}.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from twilio.request_validator import RequestValidator

MESSAGES = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Messages\.json$")
CODE = re.compile(r"(?<!\d)\d{4,10}(?!\d)")


@dataclass
class Ledger:
    """What the fake received: the code per destination and when each request ran."""

    delay_s: float = 0.0
    callbacks: bool = False
    callbacks_done: int = 0
    callbacks_failed: int = 0
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

    def answer(self) -> None:
        """Note a request answered."""
        with self.lock:
            self.in_flight -= 1
            self.answered.append(time.time())

    def deliver(self, to: str, body: str) -> None:
        """Keep the code of a delivered SMS and wake whoever waits for it."""
        match = CODE.search(body)
        with self.lock:
            if match:
                self.codes[to] = match.group(0)
            self.lock.notify_all()

    def called_back(self, ok: bool) -> None:
        """Count one status callback sent (ok: answered 2xx)."""
        with self.lock:
            if ok:
                self.callbacks_done += 1
            else:
                self.callbacks_failed += 1

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
            self.callbacks_done = self.callbacks_failed = 0
            self.max_in_flight = self.in_flight

    def stats(self) -> dict[str, object]:
        """Counts and timestamps (epoch seconds) of the requests received."""
        with self.lock:
            return {
                "count": len(self.answered), "arrived": list(self.arrived), "answered": list(self.answered),
                "max_in_flight": self.max_in_flight, "delay_ms": round(self.delay_s * 1000),
                "callbacks": self.callbacks, "callbacks_done": self.callbacks_done,
                "callbacks_failed": self.callbacks_failed,
            }


LEDGER = Ledger()


class Callbacks:
    """Signed status callbacks (`sent`, then `delivered`) to each message's StatusCallback URL."""

    def __init__(self, auth_token: str, threads: int = 8) -> None:
        self.validator = RequestValidator(auth_token)
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="callback")
        self.local = threading.local()

    def _post(self, url: str, params: dict[str, str]) -> bool:
        parts = urlsplit(url)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "TwilioProxy/1.1",
                   "X-Twilio-Signature": self.validator.compute_signature(url, params),
                   "I-Twilio-Idempotency-Token": secrets.token_hex(16)}
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        for retry in (True, False):
            conns = self.local.__dict__.setdefault("conns", {})
            conn = conns.get(parts.netloc) or http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
            conns[parts.netloc] = conn
            try:
                conn.request("POST", path, body=urlencode(params), headers=headers)
                response = conn.getresponse()
                response.read()
                return 200 <= response.status < 300
            except (http.client.HTTPException, OSError):
                conn.close()
                conns.pop(parts.netloc, None)
                if not retry:
                    return False
        return False

    def _run(self, account_sid: str, form: dict[str, str], sid: str) -> None:
        url = form["StatusCallback"]
        for status in ("sent", "delivered"):
            params = {"AccountSid": account_sid, "From": form.get("From", ""), "To": form.get("To", ""),
                      "MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
                      "ApiVersion": "2010-04-01"}
            LEDGER.called_back(self._post(url, params))
        LEDGER.deliver(form.get("To", ""), form.get("Body", ""))

    def after(self, account_sid: str, form: dict[str, str], sid: str) -> None:
        """Send the message's callbacks in the background, then hand out its code."""
        self.pool.submit(self._run, account_sid, form, sid)


CALLBACKS: Callbacks | None = None


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
            config = json.loads(body or b"{}")
            LEDGER.delay_s = float(config.get("delay_ms", LEDGER.delay_s * 1000)) / 1000
            LEDGER.callbacks = bool(config.get("callbacks", LEDGER.callbacks)) and CALLBACKS is not None
            return self._answer(200, {"delay_ms": round(LEDGER.delay_s * 1000), "callbacks": LEDGER.callbacks})
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
        LEDGER.answer()
        self._answer(201, payload)
        if LEDGER.callbacks and CALLBACKS is not None and form.get("StatusCallback"):
            CALLBACKS.after(account_sid, form, str(payload["sid"]))
        else:
            LEDGER.deliver(form.get("To", ""), form.get("Body", ""))

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
            stats = LEDGER.stats()
            if query.get("brief"):
                stats = {k: v for k, v in stats.items() if k not in ("arrived", "answered")}
            return self._answer(200, stats)
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
    parser.add_argument("--auth-token", default="", help="signs status callbacks (off without it)")
    args = parser.parse_args()
    global CALLBACKS
    LEDGER.delay_s = args.delay_ms / 1000
    CALLBACKS = Callbacks(args.auth_token) if args.auth_token else None
    server = Server(("127.0.0.1", args.port), Handler)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
