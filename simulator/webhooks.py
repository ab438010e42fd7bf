"""Signed webhook delivery like Twilio's: X-Twilio-Signature, idempotency token, timeouts, one retry."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urldefrag, urlencode, urlsplit

import requests
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from .config import SimulatorConfig
from .state import SimState

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "TwilioProxy/1.1"


@dataclass
class ConnectionOverrides:
    """Per-URL fragment overrides (#ct=..&rt=..&tt=..&rc=..&rp=..)."""

    connect_timeout_s: float
    read_timeout_s: float
    retry_count: int = 1
    retry_policy: frozenset[str] = field(default_factory=lambda: frozenset({"ct"}))


@dataclass
class WebhookResult:
    """What came back from a webhook: status/body, or an error with a Twilio error code."""

    url: str
    status: int | None = None
    content_type: str = ""
    body: bytes = b""
    error: str | None = None
    error_code: int | None = None

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return self.status is not None and 200 <= self.status < 300

    def text(self) -> str:
        """The body decoded as UTF-8 (replacing invalid bytes)."""
        return self.body.decode("utf-8", errors="replace")


def parse_overrides(fragment: str, config: SimulatorConfig) -> ConnectionOverrides:
    """Read Twilio's connection-override fragment; out-of-range values are clamped to Twilio's limits."""
    values = dict(parse_qsl(fragment, keep_blank_values=True))
    overrides = ConnectionOverrides(config.webhook_connect_timeout_s, config.webhook_read_timeout_s)

    def millis(name: str, low: int, high: int) -> float | None:
        try:
            return min(max(int(values[name]), low), high) / 1000.0
        except (KeyError, ValueError):
            return None

    overrides.connect_timeout_s = millis("ct", 100, 10000) or overrides.connect_timeout_s
    overrides.read_timeout_s = millis("rt", 100, 15000) or overrides.read_timeout_s
    total = millis("tt", 100, 15000)
    if total is not None:
        overrides.read_timeout_s = min(overrides.read_timeout_s, total)
    if "rc" in values:
        try:
            overrides.retry_count = min(max(int(values["rc"]), 0), 5)
        except ValueError:
            pass
    if "rp" in values:
        policy = {p.strip() for p in values["rp"].split(",") if p.strip()}
        if policy <= {"4xx", "5xx", "ct", "rt", "all"}:
            overrides.retry_policy = frozenset(policy)
    return overrides


def signed_request_url(url: str, method: str, params: list[tuple[str, str]]) -> str:
    """The URL Twilio requests: for GET the parameters are appended to the query string."""
    if method.upper() != "GET" or not params:
        return url
    separator = "&" if urlsplit(url).query else ("" if url.endswith("?") else "?")
    return url + separator + urlencode(params)


class WebhookSender:
    """Sends signed webhooks synchronously from the calling (background) thread and records them."""

    def __init__(self, config: SimulatorConfig, state: SimState) -> None:
        """Bind to the config (auth token for signing) and the state (for records)."""
        self.config = config
        self.state = state
        self.validator = RequestValidator(config.auth_token)

    def signature(self, url: str, method: str, params: list[tuple[str, str]]) -> str:
        """X-Twilio-Signature for a request to url (already including GET params) with POST params."""
        if method.upper() == "GET":
            return self.validator.compute_signature(url, {})
        return self.validator.compute_signature(url, MultiDict(params))

    def send(self, kind: str, url: str, params: list[tuple[str, str]], method: str = "POST",
             sid: str | None = None, token: str | None = None) -> WebhookResult:
        """Send one webhook (with retries per policy); never raises for network problems."""
        method = (method or "POST").upper()
        base, fragment = urldefrag(url)
        overrides = parse_overrides(fragment, self.config)
        request_url = signed_request_url(base, method, params)
        signature = self.signature(request_url, method, params)
        token = token or str(uuid.uuid4())
        record = self.state.add_webhook(kind=kind, sid=sid, url=base, method=method, params=list(params),
                                        signature=signature, idempotency_token=token)
        headers = {
            "X-Twilio-Signature": signature,
            "I-Twilio-Idempotency-Token": token,
            "User-Agent": USER_AGENT,
            "Accept": "*/*",
            "Cache-Control": "max-age=259200",
            "X-Home-Region": "us1",
        }
        data = None
        if method != "GET":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            data = urlencode(params).encode("utf-8")
        started = time.monotonic()
        result = WebhookResult(url=base)
        attempts = 0
        while True:
            attempts += 1
            result, failure = self._attempt(request_url, method, headers, data, overrides)
            retryable = failure is not None and (failure in overrides.retry_policy
                                                 or "all" in overrides.retry_policy)
            if not retryable or attempts > overrides.retry_count:
                break
        with self.state.lock:
            record.attempts = attempts
            record.status = result.status
            record.content_type = result.content_type or None
            record.response_body = result.text()[:4000] if result.body else None
            record.error = result.error
            record.error_code = result.error_code
            record.duration_ms = int((time.monotonic() - started) * 1000)
        return result

    def _attempt(self, url: str, method: str, headers: dict[str, str], data: bytes | None,
                 overrides: ConnectionOverrides) -> tuple[WebhookResult, str | None]:
        """One HTTP attempt; returns the result and the failure class (ct, rt, 4xx, 5xx) or None."""
        session = requests.Session()
        session.trust_env = False  # never route loopback webhooks through a proxy
        try:
            response = session.request(method, url, headers=headers, data=data, stream=True,
                                       allow_redirects=True,
                                       timeout=(overrides.connect_timeout_s, overrides.read_timeout_s))
            try:
                body = b""
                for chunk in response.iter_content(8192):
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        break
            finally:
                response.close()
        except requests.exceptions.ConnectTimeout as exc:
            return WebhookResult(url=url, error=f"connect timeout: {exc}", error_code=11205), "ct"
        except requests.exceptions.ConnectionError as exc:
            text = str(exc)
            is_read = "Read timed out" in text
            return (WebhookResult(url=url, error=f"connection failure: {text}", error_code=11205),
                    "rt" if is_read else "ct")
        except requests.exceptions.ReadTimeout as exc:
            return WebhookResult(url=url, error=f"read timeout: {exc}", error_code=11205), "rt"
        except requests.exceptions.RequestException as exc:
            return WebhookResult(url=url, error=f"request failed: {exc}", error_code=11200), "ct"
        finally:
            session.close()
        result = WebhookResult(url=url, status=response.status_code,
                               content_type=response.headers.get("Content-Type", ""), body=body)
        if len(body) > MAX_RESPONSE_BYTES:
            result.error, result.error_code = "response body larger than 64 kB", 11750
            return result, None
        if 400 <= response.status_code < 500:
            result.error, result.error_code = f"HTTP {response.status_code}", 11200
            return result, "4xx"
        if response.status_code >= 500:
            result.error, result.error_code = f"HTTP {response.status_code}", 11200
            return result, "5xx"
        return result, None
