"""The HTTP client under the `twilio` package's REST client: one urllib3 pool per sending thread.

Why not twilio's own TwilioHttpClient everywhere: it sends each request through a `requests`
Session, whose per-request work (preparing the request, merging the session's and the
environment's settings, hooks, cookies, building its Response) was about half of a send's CPU in
the worker (docs/performance.md), and a send to Twilio needs none of it. twilio documents a custom
`http_client` as the way to change how its requests travel (twilio-python, "Custom HTTP Clients",
advanced-examples/custom-http-client.md); the twilio package still builds every request and reads
every answer. When the environment names a proxy for the carrier's URL, TwilioHttpClient is kept:
requests handles every proxy form (authentication, SOCKS) and nothing here re-implements them.
"""
from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import certifi
import requests
import urllib3
from requests.utils import select_proxy
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

JSON_TYPES = ("application/json", "application/scim+json")  # as TwilioHttpClient sends them


class PooledHttpClient(HttpClient):
    """twilio's HttpClient on one urllib3 pool: the requests TwilioHttpClient would send, as sent."""

    def __init__(self, timeout: float, ca_bundle: str | None) -> None:
        super().__init__(logging.getLogger("twilio.http_client"), False, timeout)
        # requests' defaults: certificates checked against certifi's bundle (or REQUESTS_CA_BUNDLE
        # / CURL_CA_BUNDLE), no retries, the same timeout for connecting and for each read.
        self.pool = urllib3.PoolManager(num_pools=2, cert_reqs="CERT_REQUIRED", ca_certs=ca_bundle or certifi.where())

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """One request to Twilio; urllib3's exceptions pass through (carrier.TRANSPORT_ACTIONS)."""
        sent = dict(headers or {})
        if params:
            uri += "?" + _form(params)
        if auth:
            sent.update(urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}"))
        body = None
        if data is not None:
            json_body = sent.get("Content-Type") in JSON_TYPES
            body = json.dumps(data) if json_body else _form(data)
            sent.setdefault("Content-Type", "application/json" if json_body else "application/x-www-form-urlencoded")
        seconds = timeout if timeout is not None else self.timeout
        answer = self.pool.request(
            method.upper(), uri, body=body, headers=sent, redirect=allow_redirects, retries=False,
            timeout=urllib3.Timeout(connect=seconds, read=seconds) if seconds is not None else None,
        )
        return Response(answer.status, answer.data.decode("utf-8", errors="replace"), answer.headers)


def _form(values: dict[str, object]) -> str:
    """A form as requests encodes one: a list repeats its key, None leaves the key out."""
    return urlencode([(k, v) for k, v in values.items() if v is not None], doseq=True)


def http_client(base_url: str, timeout: float) -> HttpClient:
    """The HTTP client for a carrier at base_url, with the environment's proxy and CA-bundle
    settings read once (requests' own lookup), not on every request."""
    with requests.Session() as session:
        found = session.merge_environment_settings(base_url, {}, None, None, None)
    if select_proxy(base_url, found["proxies"]) is None:
        return PooledHttpClient(timeout, found["verify"] if isinstance(found["verify"], str) else None)
    http = TwilioHttpClient(timeout=timeout)
    if http.session is not None:
        # With trust_env, requests walks the whole environment twice per request for proxies.
        http.session.trust_env = False  # also skips ~/.netrc: every request carries its auth
        http.session.proxies.update(found["proxies"])
        http.session.verify = found["verify"]
    return http
