"""Create/fetch Message through the real twilio client: success shape, Twilio's validations, auth."""
from __future__ import annotations

import re

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from simulator import create_simulator, get_simulator

from .conftest import (ACCOUNT_SID, AUTH_TOKEN, LANDLINE, MOBILE, OWNED, SERVICE, ServerThread, make_config,
                       twilio_client, wait_for)

RFC2822 = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$")


def _raw_create(sim, **form):
    """POST a Create Message form directly (to see the raw JSON)."""
    return requests.post(f"{sim.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", data=form,
                         auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)


def test_create_message_returns_twilio_shaped_resource(sim, client):
    message = client.messages.create(to=MOBILE, from_=OWNED, body="Your code is 123456")
    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert message.account_sid == ACCOUNT_SID
    assert message.status == "queued"
    assert message.direction == "outbound-api"
    assert message.num_segments == "1"
    assert message.error_code is None
    assert message.api_version == "2010-04-01"
    assert message.to == MOBILE and message.from_ == OWNED
    assert message.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message.sid}.json"
    raw = _raw_create(sim, To=MOBILE, From=OWNED, Body="x").json()
    assert RFC2822.match(raw["date_created"])
    assert raw["subresource_uris"]["media"].endswith("/Media.json")
    assert raw["num_media"] == "0" and raw["price"] is None


def test_fetch_message_and_status_progresses(sim, client):
    message = client.messages.create(to=MOBILE, from_=OWNED, body="hello")
    fetched = wait_for(lambda: (lambda m: m if m.status == "delivered" else None)(
        client.messages(message.sid).fetch()), what="delivered")
    assert fetched.date_sent is not None
    with pytest.raises(TwilioRestException) as info:
        client.messages("SM" + "0" * 32).fetch()
    assert info.value.status == 404 and info.value.code == 20404


def test_messaging_service_send_is_accepted(sim, client):
    message = client.messages.create(to=MOBILE, messaging_service_sid=SERVICE, body="hi")
    assert message.status == "accepted"
    assert message.messaging_service_sid == SERVICE
    assert message.from_ is None


def test_segments_counted_like_twilio(sim, client):
    assert client.messages.create(to=MOBILE, from_=OWNED, body="a" * 161).num_segments == "2"
    assert client.messages.create(to=MOBILE, from_=OWNED, body="ż" * 70).num_segments == "1"
    assert client.messages.create(to=MOBILE, from_=OWNED, body="ż" * 71).num_segments == "2"


@pytest.mark.parametrize("kwargs, code", [
    (dict(to="", from_=OWNED, body="x"), 21604),
    (dict(to="+4860010020", from_=OWNED, body="x"), 21211),
    (dict(to="48600100200", from_=OWNED, body="x"), 21211),
    (dict(to=MOBILE + "\n", from_=OWNED, body="x"), 21211),  # not E.164 (Python's $ took it)
    (dict(to=MOBILE, body="x"), 21603),
    (dict(to=MOBILE, from_="+15005550099", body="x"), 21606),
    (dict(to=MOBILE, messaging_service_sid="MG" + "9" * 32, body="x"), 21701),
    (dict(to=MOBILE, from_=OWNED), 21602),
    (dict(to=MOBILE, from_=OWNED, body="x" * 1601), 21617),
    (dict(to=MOBILE, from_=OWNED, body="x", status_callback="not a url"), 21609),
    (dict(to=MOBILE, from_=OWNED, body="x", status_callback="https://bad_host.example.com/cb"), 21609),
    (dict(to=MOBILE, from_=OWNED, body="x", validity_period=0), 21624),
])
def test_validation_errors(sim, client, kwargs, code):
    with pytest.raises(TwilioRestException) as info:
        client.messages.create(**kwargs)
    assert info.value.status == 400
    assert info.value.code == code


def test_error_body_shape(sim):
    response = _raw_create(sim, From=OWNED, Body="x")
    assert response.status_code == 400
    assert response.json() == {"code": 21604, "message": "A 'To' phone number is required.",
                               "more_info": "https://www.twilio.com/docs/errors/21604", "status": 400}


def test_landline_rejected_with_21614_by_default(sim, client):
    with pytest.raises(TwilioRestException) as info:
        client.messages.create(to=LANDLINE, from_=OWNED, body="x")
    assert (info.value.status, info.value.code) == (400, 21614)


@pytest.mark.parametrize("behaviour, status, code", [
    ({"sms": "reject", "sms_error_code": 21408}, 400, 21408),
    ({"sms": "reject", "sms_error_code": 21211}, 400, 21211),
    ({"sms": "reject", "sms_error_code": 20429}, 429, 20429),
    ({"sms": "reject", "sms_error_code": 500}, 500, 500),
    ({"sms": "reject", "sms_error_code": 20500}, 500, 20500),
    ({"sms": "reject", "sms_error_code": 21612, "sms_http_status": 403}, 403, 21612),
])
def test_handset_rest_failures(sim, client, control, behaviour, status, code):
    control.behave(MOBILE, **behaviour)
    with pytest.raises(TwilioRestException) as info:
        client.messages.create(to=MOBILE, from_=OWNED, body="x")
    assert (info.value.status, info.value.code) == (status, code)


def test_bad_credentials_are_401_20003(sim):
    wrong = Client(ACCOUNT_SID, "wrong-token")
    wrong.api.base_url = sim.url
    with pytest.raises(TwilioRestException) as info:
        wrong.messages.create(to=MOBILE, from_=OWNED, body="x")
    assert (info.value.status, info.value.code) == (401, 20003)
    response = requests.post(f"{sim.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
                             data={"To": MOBILE}, timeout=5)
    assert response.status_code == 401 and response.json()["code"] == 20003
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_other_account_in_path_is_404(sim):
    other = "AC" + "f" * 32
    response = requests.post(f"{sim.url}/2010-04-01/Accounts/{other}/Messages.json",
                             data={"To": MOBILE, "From": OWNED, "Body": "x"}, auth=(ACCOUNT_SID, AUTH_TOKEN),
                             timeout=5)
    assert response.status_code == 404 and response.json()["code"] == 20404


def test_works_mounted_under_a_prefix_with_trailing_slash(receiver):
    app = create_simulator(make_config(receiver))
    server = ServerThread(DispatcherMiddleware(receiver.app, {"/dev": app}))
    try:
        client = twilio_client(server.url + "/dev/")
        message = client.messages.create(to=MOBILE, from_=OWNED, body="via prefix")
        assert message.status == "queued"
        recorded = requests.get(server.url + "/dev/_sim/requests", timeout=5).json()["requests"]
        assert recorded[-1]["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    finally:
        server.stop()
        get_simulator(app).shutdown()
