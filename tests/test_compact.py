"""A pending SMS verification stays small in Redis: its hash keeps Redis's compact encoding
(every value within hash-max-listpack-value); and what records made before these changes hold
still works: a code encrypted or digested in the former formats."""
from __future__ import annotations

import base64
import json

import pytest
import redis
from cryptography.fernet import Fernet

from gateway import codes, create_app, deliveries
from gateway.models import AttemptStatus
from gateway.services import Services
from tests.conftest import API_KEY
from tests.test_api import give_code, start

COMPACT = {b"listpack", b"ziplist"}  # Redis 7 / Redis 6 names of the same encoding


def test_a_pending_sms_verification_keeps_the_compact_hash_encoding(app, client, redis_db: redis.Redis) -> None:
    svc: Services = app.extensions["gateway"]
    limit = int(next(iter(redis_db.config_get("hash-max-*-value").values())))
    vid = start(client, user_id="alice-01234567", client_ip="2001:db8::1").get_json()["id"]
    give_code(app, vid, "482913")  # as its delivery stores it
    sid = "SM" + "0123456789abcdef" * 2
    for status in (AttemptStatus.QUEUED, AttemptStatus.SENT, AttemptStatus.DELIVERED):  # Twilio's answer, callbacks
        deliveries.record_status(svc, vid, 1, status, None, sid)
    stored = redis_db.hgetall(f"gw:vf:{vid}")
    assert stored[b"enc"] and stored[b"a1:st"] == b"delivered" and stored[b"a1:sid"] == sid.encode()
    assert max(len(value) for value in stored.values()) <= limit, {k: len(x) for k, x in stored.items()}
    assert redis_db.object("encoding", f"gw:vf:{vid}") in COMPACT


def test_a_code_stored_before_the_compact_format_is_still_read_out(app, client, redis_db: redis.Redis) -> None:
    svc: Services = app.extensions["gateway"]
    vid = start(client).get_json()["id"]
    give_code(app, vid, "482913")
    # As the previous version stored it: a Fernet token under the same key.
    old = Fernet(base64.urlsafe_b64encode(svc.key("code-cipher"))).encrypt(b"482913").decode()
    redis_db.hset(f"gw:vf:{vid}", "enc", old)
    assert deliveries.spoken_code(svc, svc.store.load(vid)) == "482913"


def test_a_code_digested_in_the_former_hex_form_still_checks(app, client, redis_db) -> None:
    svc: Services = app.extensions["gateway"]
    vid = start(client).get_json()["id"]
    give_code(app, vid, "482913")
    assert len(redis_db.hget(f"gw:vf:{vid}", "code")) == 43
    redis_db.hset(f"gw:vf:{vid}", "code", codes.digest(svc.key("code-hmac"), vid, "482913"))  # as stored before
    assert client.post(f"/v1/verifications/{vid}/check", json={"code": "482914"}).get_json()["valid"] is False
    assert client.post(f"/v1/verifications/{vid}/check", json={"code": "482913"}).get_json()["valid"] is True


def _delivered(app, client, **body: str) -> str:  # type: ignore[no-untyped-def]
    """A started SMS verification whose code went out and was delivered, as in production."""
    svc: Services = app.extensions["gateway"]
    vid = start(client, **body).get_json()["id"]
    give_code(app, vid, "482913")
    sid = "SM" + "0123456789abcdef" * 2
    for status in (AttemptStatus.QUEUED, AttemptStatus.SENT, AttemptStatus.DELIVERED):
        deliveries.record_status(svc, vid, 1, status, None, sid)
    return vid


def test_a_pending_record_stores_no_default_no_id_and_no_spent_deadline(app, client, redis_db) -> None:  # type: ignore[no-untyped-def]
    vid = _delivered(app, client, user_id="alice", client_ip="10.0.0.1")
    stored = redis_db.hgetall(f"gw:vf:{vid}")
    assert not {b"id", b"reason", b"pos", b"fails", b"deadline", b"a1:at"} & stored.keys(), sorted(stored)
    assert all(value != b"" for value in stored.values()), stored
    record = app.extensions["gateway"].store.load(vid)
    assert record.id == vid and record.reason is None and record.position == 0 and record.failures == 0
    assert record.attempts[0].started_at == record.created_at == float(stored[b"created"])


def test_previous_release_records_keep_the_fields_that_release_reads(settings, redis_db) -> None:  # type: ignore[no-untyped-def]
    app = create_app(settings.replace(previous_release_records=True))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    vid = start(client).get_json()["id"]
    stored = redis_db.hgetall(f"gw:vf:{vid}")
    assert stored[b"id"] == vid.encode() and stored[b"a1:at"] == stored[b"created"]


def test_a_record_the_previous_release_wrote_reads_and_ends_the_same(app, client, redis_db) -> None:  # type: ignore[no-untyped-def]
    """Rolling upgrade: records made before the compact record hold `id`, empty and default fields
    and a delivered attempt's deadline; they read, check and end exactly as a compact one."""
    svc: Services = app.extensions["gateway"]
    compact, old = _delivered(app, client, to="+48600100201"), _delivered(app, client, to="+48600100202")
    deadline = float(redis_db.hget(f"gw:vf:{old}", "expires")) - 1
    created = redis_db.hget(f"gw:vf:{old}", "created")
    redis_db.hset(f"gw:vf:{old}", mapping={"id": old, "reason": "", "pos": "0", "fails": "0", "deadline": deadline,
                                           "a1:at": created})
    for vid in (compact, old):
        body = client.get(f"/v1/verifications/{vid}").get_json()
        assert body["id"] == vid and body["status"] == "pending" and body["reason"] is None
        assert client.post(f"/v1/verifications/{vid}/check", json={"code": "000000"}).get_json()["valid"] is False
        assert svc.store.load(vid).failures == 1
        done = client.post(f"/v1/verifications/{vid}/check", json={"code": "482913"}).get_json()
        assert done["valid"] is True and done["id"] == vid
        assert redis_db.zscore("gw:timers", vid) is None  # finish() found the timer by the id
    audited = {fields[b"verification_id"].decode(): fields for _, fields in redis_db.xrange("gw:audit")}
    assert audited.keys() == {compact, old}
    assert audited[compact][b"phone_number"] == b"+48600100201" and audited[old][b"phone_number"] == b"+48600100202"
    for fields in audited.values():  # the first attempt started with the verification
        # the stream keeps the stored time whole; JSON numbers (cjson) carry 14 digits
        assert json.loads(fields[b"attempts"])[0]["started_at"] == pytest.approx(float(fields[b"created_at"]), abs=1e-3)


def test_a_resend_of_a_compact_records_first_attempt_waits_from_its_start(app, client) -> None:  # type: ignore[no-untyped-def]
    from gateway.models import Channel
    from gateway.store import Step

    svc: Services = app.extensions["gateway"]
    vid = start(client).get_json()["id"]  # its first attempt's start is `created` (no a1:at)
    step = Step(Channel.SMS, 0, 300, "resend", resend_interval=3600)
    outcome = svc.store.advance(vid, 1, step)
    assert outcome.kind == "too_soon" and 3590 <= int(outcome.value) <= 3600


def test_a_status_callback_moves_the_attempt_without_answering_the_record(app, client) -> None:  # type: ignore[no-untyped-def]
    """An SMS status callback needs only the kind: the record is neither answered nor decoded
    (sms/webhooks.py); the callers that act on the record still get it."""
    svc: Services = app.extensions["gateway"]
    vid = start(client).get_json()["id"]
    sid = "SM" + "0123456789abcdef" * 2
    light = deliveries.record_status(svc, vid, 1, AttemptStatus.SENT, None, sid, with_record=False)
    assert (light.kind, light.value, light.verification) == ("changed", "sent", None) and light.now > 0
    again = deliveries.record_status(svc, vid, 1, AttemptStatus.SENT, None, sid, with_record=False)
    assert (again.kind, again.value, again.verification) == ("unchanged", "sent", None)
    full = deliveries.record_status(svc, vid, 1, AttemptStatus.DELIVERED, None, sid)
    assert full.kind == "changed" and full.verification is not None
    assert (full.verification.id, full.verification.attempt.status) == (vid, AttemptStatus.DELIVERED)
    assert svc.store.load(vid).attempt.status is AttemptStatus.DELIVERED
