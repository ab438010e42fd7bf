"""A pending SMS verification stays small in Redis: its hash keeps Redis's compact encoding
(every value within hash-max-listpack-value); and what records made before these changes hold
still works: a code encrypted or digested in the former formats."""
from __future__ import annotations

import base64

import redis
from cryptography.fernet import Fernet

from gateway import codes, verifications
from gateway.models import AttemptStatus
from gateway.services import Services
from tests.test_api import give_code, start

COMPACT = {b"listpack", b"ziplist"}  # Redis 7 / Redis 6 names of the same encoding


def test_a_pending_sms_verification_keeps_the_compact_hash_encoding(app, client, redis_db: redis.Redis) -> None:
    svc: Services = app.extensions["gateway"]
    limit = int(next(iter(redis_db.config_get("hash-max-*-value").values())))
    vid = start(client, user_id="alice-01234567", client_ip="2001:db8::1").get_json()["id"]
    give_code(app, vid, "482913")  # as its delivery stores it
    sid = "SM" + "0123456789abcdef" * 2
    for status in (AttemptStatus.QUEUED, AttemptStatus.SENT, AttemptStatus.DELIVERED):  # Twilio's answer, callbacks
        verifications.record_status(svc, vid, 1, status, None, sid)
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
    assert verifications.spoken_code(svc, svc.store.load(vid)) == "482913"


def test_a_code_digested_in_the_former_hex_form_still_checks(app, client, redis_db) -> None:
    svc: Services = app.extensions["gateway"]
    vid = start(client).get_json()["id"]
    give_code(app, vid, "482913")
    assert len(redis_db.hget(f"gw:vf:{vid}", "code")) == 43
    redis_db.hset(f"gw:vf:{vid}", "code", codes.digest(svc.key("code-hmac"), vid, "482913"))  # as stored before
    assert client.post(f"/v1/verifications/{vid}/check", json={"code": "482914"}).get_json()["valid"] is False
    assert client.post(f"/v1/verifications/{vid}/check", json={"code": "482913"}).get_json()["valid"] is True
