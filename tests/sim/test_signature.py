"""X-Twilio-Signature as the simulator computes it, pinned by the known-answer vectors of the wire reference §6."""
from __future__ import annotations

import base64
import hashlib
import hmac

from simulator import SimulatorConfig
from simulator.state import SimState
from simulator.webhooks import WebhookSender, signed_request_url

# ../shared/reference/twilio-wire.md §6 (twilio-python's tests/unit/test_request_validator.py).
TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675309"), ("Digits", "1234"),
          ("From", "+14158675309"), ("To", "+18005551212")]
EXPECTED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def sender() -> WebhookSender:
    """The simulator's webhook signer with the vector's auth token."""
    config = SimulatorConfig(auth_token=TOKEN)
    return WebhookSender(config, SimState(config))


def test_post_signature_matches_the_known_answer() -> None:
    assert sender().signature(URL, "POST", PARAMS) == EXPECTED
    assert sender().signature(URL, "POST", list(reversed(PARAMS))) == EXPECTED  # names are sorted


def test_a_changed_parameter_changes_the_signature() -> None:
    tampered = [(k, "9999" if k == "Digits" else v) for k, v in PARAMS]
    assert sender().signature(URL, "POST", tampered) != EXPECTED


def test_get_signs_the_url_with_the_parameters_in_its_query() -> None:
    url = signed_request_url("https://h.example/cb?x=1", "GET", [("Digits", "5"), ("CallSid", "CA1")])
    assert url == "https://h.example/cb?x=1&Digits=5&CallSid=CA1"
    expected = base64.b64encode(hmac.new(TOKEN.encode(), url.encode(), hashlib.sha1).digest()).decode()
    assert sender().signature(url, "GET", [("Digits", "5"), ("CallSid", "CA1")]) == expected
