"""The verify API in-process: validation, errors, idempotency, checks, cancel, wait."""
from __future__ import annotations

import threading
import time

import pytest

from gateway import deliveries
from gateway.services import Services

MOBILE = "+48600100200"


def start(client, **body):  # type: ignore[no-untyped-def]
    body.setdefault("to", MOBILE)
    body.setdefault("channel", "sms")
    return client.post("/v1/verifications", json=body)


def give_code(app, verification_id: str, code: str = "123456") -> None:  # type: ignore[no-untyped-def]
    """Store a known code the way the sender does (no carrier involved)."""
    svc: Services = app.extensions["gateway"]
    v = svc.store.load(verification_id)
    assert deliveries.code_for(svc, v, v.attempt.number, code) == code


def test_start_returns_pending_verification_with_location(client, redis_db) -> None:
    r = start(client, user_id="alice", client_ip="10.0.0.1", user={"first_name": "Alice"})
    assert r.status_code == 201
    body = r.get_json()
    assert body["id"].startswith("vf_") and r.headers["Location"] == f"/v1/verifications/{body['id']}"
    assert body["status"] == "pending" and body["reason"] is None
    assert body["to"] == MOBILE and body["channel"] == "sms" and body["channels"] == ["sms", "call"]
    assert body["attempts"][0]["channel"] == "sms" and body["attempts"][0]["status"] == "queued"
    assert body["remaining_attempts"] == 5
    assert redis_db.zrange("gw:outbox", 0, -1) == [f"{body['id']}:1".encode()]  # a sender delivers it, not the request


def test_national_number_with_country_is_normalised(client) -> None:
    r = start(client, to="600 100 200", country="PL")
    assert r.status_code == 201 and r.get_json()["to"] == MOBILE


@pytest.mark.parametrize(
    "body, code",
    [
        ({"to": "+4860010"}, "invalid_phone_number"),
        ({"to": "600100200"}, "invalid_phone_number"),
        ({"to": "+48600100200", "country": "XX"}, "invalid_phone_number"),
        ({"to": 48600100200}, "invalid_request"),
        ({}, "invalid_request"),
        ({"to": MOBILE, "channel": "fax"}, "invalid_request"),
        ({"to": MOBILE, "fallback": "call"}, "invalid_request"),
        ({"to": MOBILE, "fallback": ["pigeon"]}, "invalid_request"),
        ({"to": MOBILE, "locale": "xx"}, "invalid_request"),
        ({"to": MOBILE, "ivr_mode": "sing"}, "invalid_request"),
        ({"to": MOBILE, "client_ip": "not-an-ip"}, "invalid_request"),
        ({"to": MOBILE, "user": {"age": 3}}, "invalid_request"),
        ({"to": MOBILE, "user": {"email": "nope"}}, "invalid_request"),
        ({"to": MOBILE, "user_id": "x" * 200}, "invalid_request"),
        ({"to": MOBILE, "surprise": 1}, "invalid_request"),
        ({"to": MOBILE, "channel": "totp"}, "invalid_request"),
    ],
)
def test_bad_start_bodies_get_clear_errors_and_change_nothing(client, redis_db, body, code) -> None:
    r = client.post("/v1/verifications", json=body)
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == code and r.get_json()["error"]["message"]
    assert not redis_db.keys("gw:vf:*") and redis_db.zcard("gw:outbox") == 0


def test_malformed_json_and_non_object_bodies(client) -> None:
    r = client.post("/v1/verifications", data="{nope", content_type="application/json")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_request"
    r = client.post("/v1/verifications", json=[1, 2])
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_request"


def test_blocked_destinations(app, client) -> None:
    premium = client.post("/v1/verifications", json={"to": "+48701234567"})  # PL premium rate
    assert premium.status_code == 403 and premium.get_json()["error"]["code"] == "destination_blocked"


def test_allowed_countries(settings, redis_db) -> None:  # type: ignore[no-untyped-def]
    from gateway import create_app

    app = create_app(settings.replace(allowed_countries=frozenset({"US"})))
    c = app.test_client()
    r = c.post("/v1/verifications", json={"to": MOBILE}, headers={"Authorization": "Bearer test-api-key-0123456789"})
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "destination_blocked"


def test_auth_is_required_on_v1_only(app) -> None:
    anonymous = app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="}):
        r = anonymous.post("/v1/verifications", json={"to": MOBILE}, headers=headers)
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthorized"
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/readyz").status_code == 200
    assert b"gateway_verifications_started" in anonymous.get("/metrics").data


def test_no_keys_configured_refuses_everything(settings, redis_db) -> None:  # type: ignore[no-untyped-def]
    from gateway import create_app

    c = create_app(settings.replace(api_keys=())).test_client()
    assert c.get("/v1/verifications/vf_x", headers={"Authorization": "Bearer "}).status_code == 401


def test_json_errors_for_404_405_413(client) -> None:
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    r = client.get("/v1/verifications/vf_unknown")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    r = client.delete("/v1/verifications")
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"
    r = client.post("/v1/verifications", data="x" * 20000, content_type="application/json")
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "payload_too_large"


def test_idempotency_key_replays_and_conflicts(client, redis_db) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = client.post("/v1/verifications", json={"to": MOBILE}, headers=headers)
    again = client.post("/v1/verifications", json={"to": MOBILE}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.get_json()["id"] == again.get_json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert redis_db.zcard("gw:outbox") == 1  # nothing sent again
    other = client.post("/v1/verifications", json={"to": "+48600100201"}, headers=headers)
    assert other.status_code == 409 and other.get_json()["error"]["code"] == "idempotency_conflict"


def test_rate_limit_per_number(client) -> None:
    codes = [start(client).status_code for _ in range(6)]
    assert codes == [201] * 5 + [429]
    r = start(client)
    assert r.get_json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) > 0


def test_right_code_approves_once(app, client) -> None:
    vid = start(client).get_json()["id"]
    give_code(app, vid)
    r = client.post(f"/v1/verifications/{vid}/check", json={"code": "123456"})
    assert r.status_code == 200 and r.get_json()["valid"] is True and r.get_json()["status"] == "approved"
    again = client.post(f"/v1/verifications/{vid}/check", json={"code": "123456"}).get_json()
    assert again["valid"] is False and again["status"] == "approved"


def test_a_check_is_one_call_and_one_more_to_count_a_user_s_allowance(app, client) -> None:
    # A behaviour test (what goes over the wire), not a timing one: bench/ measures the speed.
    from bench.probes import count_round_trips

    for user, calls in ((None, 1), ("alice", 2)):
        vid = start(client, **({"user_id": user} if user else {})).get_json()["id"]
        give_code(app, vid)
        with count_round_trips() as trips:
            r = client.post(f"/v1/verifications/{vid}/check", json={"code": "123456"})
        assert r.status_code == 200 and r.get_json()["valid"] is True
        assert trips.trips == [["EVALSHA"]] * calls, trips.describe()


def test_wrong_codes_deny_after_max_attempts(app, client) -> None:
    vid = start(client).get_json()["id"]
    give_code(app, vid)
    for left in (4, 3, 2, 1):
        body = client.post(f"/v1/verifications/{vid}/check", json={"code": "000000"}).get_json()
        assert body["valid"] is False and body["remaining_attempts"] == left and body["status"] == "pending"
    body = client.post(f"/v1/verifications/{vid}/check", json={"code": "000000"}).get_json()
    assert body["status"] == "denied" and body["reason"] == "max_attempts" and body["remaining_attempts"] == 0
    late = client.post(f"/v1/verifications/{vid}/check", json={"code": "123456"}).get_json()
    assert late["valid"] is False and late["status"] == "denied"


def test_this_process_counts_the_ends_it_made_by_channel_status_and_reason(app, client) -> None:
    def ended(status: str, reason: str) -> float:
        line = f'gateway_process_verifications_ended_total{{channel="sms",reason="{reason}",status="{status}"}} '
        found = [x for x in client.get("/metrics").get_data(as_text=True).splitlines() if x.startswith(line)]
        return float(found[0].rsplit(" ", 1)[1]) if found else 0.0

    before = ended("approved", "none"), ended("denied", "max_attempts")
    approved, denied = start(client).get_json()["id"], start(client, to="+48600100299").get_json()["id"]
    give_code(app, approved)
    assert client.post(f"/v1/verifications/{approved}/check", json={"code": "123456"}).get_json()["valid"]
    for _ in range(5):
        client.post(f"/v1/verifications/{denied}/check", json={"code": "000000"})
    assert (ended("approved", "none"), ended("denied", "max_attempts")) == (before[0] + 1, before[1] + 1)


@pytest.mark.parametrize("body", [{}, {"code": 123456}, {"code": "12"}, {"code": "12345678901"}, {"code": "12ab56"}])
def test_bad_check_bodies(client, body) -> None:
    vid = start(client).get_json()["id"]
    r = client.post(f"/v1/verifications/{vid}/check", json=body)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_request"


def test_cancel_then_finished_is_unchanged(app, client, redis_db) -> None:
    vid = start(client).get_json()["id"]
    r = client.post(f"/v1/verifications/{vid}/cancel")
    assert r.status_code == 200 and r.get_json()["status"] == "canceled" and r.get_json()["reason"] == "canceled"
    assert client.post(f"/v1/verifications/{vid}/cancel").get_json()["status"] == "canceled"
    assert redis_db.xlen("gw:audit") == 1


def test_expiry_ends_with_audit_record(settings, redis_db) -> None:  # type: ignore[no-untyped-def]
    from gateway import create_app

    app = create_app(settings.replace(sms_code_ttl=1))
    c = app.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = "Bearer test-api-key-0123456789"
    vid = start(c).get_json()["id"]
    give_code(app, vid)
    body = c.get(f"/v1/verifications/{vid}?wait=5").get_json()  # wakes at expiry, no sleep
    assert body["status"] == "expired" and body["reason"] == "expired"
    assert c.post(f"/v1/verifications/{vid}/check", json={"code": "123456"}).get_json()["valid"] is False
    record = redis_db.xrange("gw:audit")[-1][1]
    assert record[b"status"] == b"expired" and record[b"verification_id"].decode() == vid


def test_wait_wakes_when_approved(app, client) -> None:
    vid = start(client).get_json()["id"]
    give_code(app, vid)
    result = {}

    def waiter() -> None:
        c = app.test_client()
        t0 = time.monotonic()
        result["body"] = c.get(f"/v1/verifications/{vid}?wait=20", headers={"Authorization": "Bearer test-api-key-0123456789"}).get_json()
        result["took"] = time.monotonic() - t0

    thread = threading.Thread(target=waiter)
    thread.start()
    deadline = time.monotonic() + 5
    while not app.extensions["gateway"].redis.pubsub_numsub(f"gw:done:{vid}")[0][1] and time.monotonic() < deadline:
        time.sleep(0.01)
    client.post(f"/v1/verifications/{vid}/check", json={"code": "123456"})
    thread.join(10)
    assert result["body"]["status"] == "approved" and result["took"] < 10


def test_bad_wait_values(client) -> None:
    vid = start(client).get_json()["id"]
    for value in ("31", "-1", "abc", "%C2%B2", "%D9%A3"):  # "²" was a 500, an Arabic-Indic 3 a wait of 3 s
        assert client.get(f"/v1/verifications/{vid}?wait={value}").status_code == 400


def test_code_never_in_redis_or_responses(app, client, redis_db) -> None:
    vid = start(client).get_json()["id"]
    give_code(app, vid, "987654")
    dump = b"".join(k + b"".join(redis_db.hgetall(k).values()) for k in redis_db.keys("gw:vf:*"))
    assert b"987654" not in dump
    assert "987654" not in client.get(f"/v1/verifications/{vid}").get_data(as_text=True)
