"""The carrier's REST requests: the pooled client sends what twilio's own client sends, checks the
carrier's TLS certificate as requests would, and the environment's proxy settings (read once, at
start-up) are honoured."""
from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from twilio.http.http_client import TwilioHttpClient

from gateway.carrier import Action, CallRequest, Carrier, CarrierError
from gateway.carrier_http import PooledHttpClient
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN


class _Seen(BaseHTTPRequestHandler):
    """Answers any POST as Twilio's Create Message does, and keeps each request line."""

    lines: list[str] = []
    seen: list[tuple[str, dict[str, str], bytes]] = []

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.lines.append(self.requestline)
        self.seen.append((self.requestline, {k.lower(): v for k, v in self.headers.items()}, body))
        body = json.dumps({"sid": "SM" + "0" * 32, "status": "queued"}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    """A loopback HTTP server that plays both the proxy and Twilio; its base URL."""
    _Seen.lines, _Seen.seen = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Seen)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _send(base_url: str) -> str:
    carrier = Carrier(ACCOUNT_SID, AUTH_TOKEN, base_url, 5.0)
    return carrier.send_sms("+48600000001", "code 123456", "+15005550006", None, 300)


def test_a_proxy_named_in_the_environment_carries_every_request(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server)
    # twilio.invalid does not resolve: only the proxy can answer, and it sees the absolute URL.
    assert _send("http://twilio.invalid").startswith("SM")
    assert _send("http://twilio.invalid").startswith("SM")
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert _Seen.lines == [f"POST http://twilio.invalid{path} HTTP/1.1"] * 2


def test_no_proxy_sends_straight_to_the_carrier(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert _send(server).startswith("SM")
    assert _Seen.lines == [f"POST /2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json HTTP/1.1"]


def test_the_pooled_client_sends_what_twilios_own_client_sends(server: str) -> None:
    pooled = Carrier(ACCOUNT_SID, AUTH_TOKEN, server, 5.0)
    assert isinstance(pooled.client.http_client, PooledHttpClient)  # no proxy for loopback here
    own = Carrier(ACCOUNT_SID, AUTH_TOKEN, server, 5.0)
    own.client.http_client = TwilioHttpClient(timeout=5.0)
    call = CallRequest("+48600000001", "+15005550006", "https://gw.example/ivr", "https://gw.example/status", 30,
                       "DetectMessageEnd")
    for carrier in (pooled, own):
        carrier.send_sms("+48600000001", "Kod: 123456 – ważny 5 min", "+15005550006", "https://gw.example/s/1", 300)
        carrier.place_call(call)
    wire = [(line, {k: h.get(k) for k in ("authorization", "content-type", "accept", "user-agent")},
             sorted(parse_qsl(body.decode(), keep_blank_values=True))) for line, h, body in _Seen.seen]
    assert wire[:2] == wire[2:]  # the same request line, headers and form (repeated keys too)
    assert ("StatusCallbackEvent", "initiated") in wire[1][2] and ("StatusCallbackEvent", "completed") in wire[1][2]
    assert ("Body", "Kod: 123456 – ważny 5 min") in wire[0][2]


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 it signed: (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_tls_to_the_carrier_is_verified_against_requests_ca_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca, cert, key = _tls_files(tmp_path)
    _Seen.lines, _Seen.seen = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Seen)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"https://127.0.0.1:{httpd.server_address[1]}"
    try:
        for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        with pytest.raises(CarrierError) as refused:  # certifi's roots do not know this CA
            _send(base)
        assert refused.value.action is Action.RETRY and "SSL" in refused.value.message
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))  # as requests reads it
        carrier = Carrier(ACCOUNT_SID, AUTH_TOKEN, base, 5.0)
        assert isinstance(carrier.client.http_client, PooledHttpClient)
        assert carrier.send_sms("+48600000001", "code 123456", "+15005550006", None, 300).startswith("SM")
    finally:
        httpd.shutdown()
        httpd.server_close()
