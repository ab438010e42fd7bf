"""Abuse protection in-process on a real Redis: send caps, limits on every axis, breakers, budgets."""
from __future__ import annotations

import dataclasses
import time

import phonenumbers
import pytest

from config.prices import Price, PriceList
from gateway import abuse, create_app, deliveries, keys, verifications
from gateway.models import AttemptStatus, Status
from gateway.services import Services
from tests.conftest import ADMIN_KEY, API_KEY
from tests.test_api import give_code

PL = "+48600100200"


@pytest.fixture
def make(settings):  # type: ignore[no-untyped-def]
    """An app and client with some abuse settings (and plain settings) changed."""

    def build(settings_changes: dict | None = None, **abuse_changes):  # type: ignore[no-untyped-def]
        app = create_app(settings.replace(
            abuse=dataclasses.replace(settings.abuse, **abuse_changes), **(settings_changes or {})
        ))
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
        return app, client

    return build


def start(client, to: str = PL, **body):  # type: ignore[no-untyped-def]
    return client.post("/v1/verifications", json={"to": to, "channel": "sms", **body})


def refused(r, reason: str) -> bool:  # type: ignore[no-untyped-def]
    """A 429 rate_limited with the reason and a Retry-After."""
    error = r.get_json()["error"]
    return (r.status_code == 429 and error["code"] == "rate_limited" and error["reason"] == reason
            and int(r.headers["Retry-After"]) > 0)


def metric(client, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    text = client.get("/metrics").get_data(as_text=True)
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def audit(redis_db, event: str) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    records = [{k.decode(): v.decode() for k, v in f.items()} for _, f in redis_db.xrange("gw:audit")]
    return [r for r in records if r.get("event") == event]


def numbers(prefix: str, count: int) -> list[str]:
    """Distinct valid mobiles in one range (+48 600…, +48 601…)."""
    return [f"{prefix}{n:06d}" for n in range(100200, 100200 + count)]


def approve(app, client, verification_id: str) -> None:  # type: ignore[no-untyped-def]
    """Approve with the right code; then the workers' supervisor counts the conversion."""
    give_code(app, verification_id)
    assert client.post(f"/v1/verifications/{verification_id}/check", json={"code": "123456"}).get_json()["valid"]
    assert abuse.fold_conversions(app.extensions["gateway"]) == 1


# -- send caps ----------------------------------------------------------------------------
def test_sends_per_verification_are_capped_with_max_sends(make, redis_db) -> None:
    app, client = make({"resend_interval": 0, "rate_limit_per_number": 100})
    vid = start(client).get_json()["id"]
    for _ in range(4):  # the first send and four resends: five sends
        assert client.post(f"/v1/verifications/{vid}/resend", json={"channel": "sms"}).status_code == 200
    r = client.post(f"/v1/verifications/{vid}/resend", json={"channel": "sms"})
    assert refused(r, "max_sends")
    assert len(client.get(f"/v1/verifications/{vid}").get_json()["attempts"]) == 5
    assert redis_db.zrange("gw:outbox", 0, -1) == [f"{vid}:5".encode()]  # one send due: the newest attempt's
    assert metric(client, "gateway_abuse_refusals_total", reason="max_sends") == 1
    [record] = audit(redis_db, "refused")
    assert record["reason"] == "max_sends" and record["verification_id"] == vid and record["phone_number"] == PL


def test_fallbacks_count_toward_the_send_cap(make, redis_db) -> None:
    app, client = make({"fallback_channels": ("call",)}, max_sends_per_verification=1)
    svc: Services = app.extensions["gateway"]
    vid = start(client).get_json()["id"]
    deliveries.record_status(svc, vid, 1, AttemptStatus.UNDELIVERED, 30003)
    body = client.get(f"/v1/verifications/{vid}").get_json()
    assert body["status"] == "failed" and [a["channel"] for a in body["attempts"]] == ["sms"]
    assert audit(redis_db, "refused")[0]["reason"] == "max_sends"


def test_resends_count_toward_the_number_limit(make) -> None:
    app, client = make({"resend_interval": 0, "rate_limit_per_number": 3})
    vid = start(client).get_json()["id"]
    for _ in range(2):
        assert client.post(f"/v1/verifications/{vid}/resend", json={"channel": "sms"}).status_code == 200
    assert refused(start(client), "number")


def test_resends_never_extend_past_the_first_code_plus_one_ttl(make, redis_db) -> None:
    app, client = make({"resend_interval": 0, "sms_code_ttl": 300})
    vid = start(client).get_json()["id"]
    now = time.time()  # as if started 400 s ago and resent since: 200 s left of its cap
    redis_db.hset(f"gw:vf:{vid}", mapping={"created": f"{now - 400:.6f}", "expires": f"{now + 100:.6f}"})
    body = client.post(f"/v1/verifications/{vid}/resend", json={"channel": "sms"}).get_json()
    svc: Services = app.extensions["gateway"]
    expires = svc.store.load(vid).expires_at
    assert body["status"] == "pending" and expires <= now - 400 + 600 + 1 and expires < now + 250


# -- limits on every axis -----------------------------------------------------------------
def test_client_ip_limit_counts_ipv6_per_64(make) -> None:
    app, client = make(per_ip=2)
    a, b, c, d = numbers("+48600", 4)
    assert start(client, a, client_ip="2001:db8::1").status_code == 201
    assert start(client, b, client_ip="2001:db8::ffff:2").status_code == 201
    assert refused(start(client, c, client_ip="2001:db8:0:0:1::3"), "client_ip")  # same /64
    assert start(client, c, client_ip="2001:db8:0:1::1").status_code == 201  # the next /64
    assert start(client, d, client_ip="192.0.2.1").status_code == 201
    assert metric(client, "gateway_abuse_refusals_total", reason="client_ip") == 1


def test_user_country_and_global_limits(make) -> None:
    app, client = make(per_user=1, per_country=3, global_per_minute=4)
    a, b, c, d = numbers("+48600", 4)
    assert start(client, a, user_id="mallory").status_code == 201
    assert refused(start(client, b, user_id="mallory"), "user")
    assert start(client, b).status_code == 201 and start(client, c).status_code == 201
    assert refused(start(client, d), "country")
    assert start(client, "+12015550123").status_code == 201
    assert refused(start(client, "+12015550124"), "global")


def counters(redis_db) -> dict[str, tuple[int, int, int]]:  # type: ignore[no-untyped-def]
    """Every start counter in the limits hashes: field -> (count, its window's end, its hash's TTL)."""
    found = {}
    for key in redis_db.scan_iter("gw:limits:*"):
        for field, value in redis_db.hgetall(key).items():
            count, ends = value.decode().split(":")
            found[field.decode()] = (int(count), int(ends), redis_db.ttl(key))
    return found


def number_counters(redis_db, number: str) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    """Every field of a number's start counters in the limits hashes and its confirm counter: (key, field, value)."""
    found = [(k.decode(), f.decode(), v.decode()) for k in redis_db.scan_iter("gw:limits:*")
             for f, v in redis_db.hgetall(k).items() if number in f.decode()]
    confirm = redis_db.get(keys.limit("confirm", number))
    return sorted(found + ([(keys.limit("confirm", number), "", confirm.decode())] if confirm else []))


def test_start_counters_are_fields_of_shared_hashes_with_a_window_from_their_first_send(make, redis_db) -> None:
    app, client = make({"rate_limit_window": 600})
    for _ in range(2):
        assert start(client, PL, user_id="ann", client_ip="192.0.2.7").status_code == 201
    now, _ = redis_db.time()
    found = counters(redis_db)
    assert set(found) == {f"n{PL}", f"p{PL}|192.0.2.7", "i192.0.2.7", "uann"}
    for count, ends, ttl in found.values():
        assert count == 2 and now < ends <= now + 600
        assert ends - now <= ttl <= 2 * 600  # a hash lives until the last of its counters ends
    assert {k.decode() for k in redis_db.scan_iter("gw:lim:*")} == {"gw:lim:country:PL", "gw:lim:global"}  # no key of its own


def test_a_counter_begun_in_the_last_generation_counts_until_its_window_ends(make, redis_db) -> None:
    app, client = make({"rate_limit_window": 86400, "rate_limit_per_number": 5}, per_number_any_client=5)
    a, b = numbers("+48600", 2)
    now, _ = redis_db.time()
    last = now // 86400 - 1
    # Five sends each, begun in the last generation: a's window runs 100 s more, b's ended.
    redis_db.hset(keys.limits(last, f"n{a}"), f"n{a}", f"5:{now + 100}")
    redis_db.hset(keys.limits(last, f"n{b}"), f"n{b}", f"5:{now}")
    r = start(client, a)
    assert refused(r, "number") and 99 <= int(r.headers["Retry-After"]) <= 101
    assert start(client, b).status_code == 201
    assert redis_db.hget(keys.limits(now // 86400, f"n{b}"), f"n{b}").decode().startswith("1:")  # a new window


def test_malformed_client_ip_is_invalid_request(make, redis_db) -> None:
    app, client = make()
    r = start(client, client_ip="2001:db8::/64")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_request"
    assert redis_db.zcard("gw:outbox") == 0


def test_a_flood_from_other_clients_does_not_lock_out_the_owner(make) -> None:
    """18F's lesson: per (number, client) first, per number alone only for clients not yet let through."""
    app, client = make({"rate_limit_per_number": 2}, per_number_any_client=3)
    assert start(client, client_ip="198.51.100.7").status_code == 201  # the owner
    assert start(client, client_ip="203.0.113.1").status_code == 201  # an attacker …
    assert start(client, client_ip="203.0.113.1").status_code == 201
    assert refused(start(client, client_ip="203.0.113.1"), "number")  # … capped per (number, client)
    assert refused(start(client, client_ip="203.0.113.2"), "number")  # a new client: the number is full
    assert start(client, client_ip="198.51.100.7").status_code == 201  # the owner's retry still goes
    assert refused(start(client, client_ip="198.51.100.7"), "number")


def test_a_user_who_verified_the_number_before_is_not_locked_out(make) -> None:
    app, client = make({"rate_limit_per_number": 5}, per_number_any_client=1)
    approve(app, client, start(client, user_id="owner", client_ip="198.51.100.7").get_json()["id"])
    assert refused(start(client, client_ip="203.0.113.1"), "number")
    assert start(client, user_id="owner", client_ip="192.0.2.99").status_code == 201


def test_checks_are_limited_per_user_across_numbers(make, redis_db) -> None:
    """Rotating `to` gives new verifications, not new guesses."""
    app, client = make(checks_per_user=6)
    guesses = 0
    for to in numbers("+48600", 3):
        vid = start(client, to, user_id="victim").get_json()["id"]
        give_code(app, vid)
        for _ in range(2):
            r = client.post(f"/v1/verifications/{vid}/check", json={"code": "000000"})
            guesses += r.status_code == 200
    assert guesses == 6
    vid = start(client, "+48600999999", user_id="victim").get_json()["id"]
    give_code(app, vid)
    r = client.post(f"/v1/verifications/{vid}/check", json={"code": "123456"})
    assert refused(r, "user")
    assert client.get(f"/v1/verifications/{vid}").get_json()["status"] == "pending"
    assert audit(redis_db, "refused")[-1]["action"] == "check"


def test_confirm_calls_are_capped_per_number_and_hour(make) -> None:
    app, client = make(confirm_calls_per_hour=2)
    for ip in ("192.0.2.1", "192.0.2.2"):
        assert start(client, channel="call", client_ip=ip).status_code == 201
    assert refused(start(client, channel="call", client_ip="192.0.2.3"), "number")
    assert start(client, channel="call", ivr_mode="code", client_ip="192.0.2.4").status_code == 201
    assert start(client, channel="sms", client_ip="192.0.2.5").status_code == 201


# -- SMS-pumping breakers -----------------------------------------------------------------
def test_pumped_prefix_trips_and_converted_numbers_stay_allowed(make, redis_db) -> None:
    app, client = make(pumping_min_sends=6, pumping_min_conversion=0.2)
    first, *rest = numbers("+48600", 7)
    approve(app, client, start(client, first).get_json()["id"])  # one real user, before the attack
    for to in rest[:5]:
        assert start(client, to).status_code == 201
    assert refused(start(client, rest[5]), "fraud_suspected")  # 1 of 6 converted: below 20 %
    assert start(client, first).status_code == 201  # the real user still signs in
    assert start(client, "+48601100200").status_code == 201  # the next range is unaffected
    [b] = client.application.extensions["gateway"].abuse.breakers(time.time())
    assert (b.scope, b.id, b.sends, b.conversions) == ("prefix", "48600", 6, 1)
    assert metric(client, "gateway_breaker_open", scope="prefix", id="48600") == 1
    assert metric(client, "gateway_breaker_trips_total", scope="prefix") == 1
    assert audit(redis_db, "breaker_trip")[0]["breaker"] == "48600"
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert client.get("/v1/breakers").status_code == 403  # a verify key may not see or reset them
    assert client.delete("/v1/breakers/prefix/48600").status_code == 403
    [shown] = client.get("/v1/breakers", headers=admin).get_json()["breakers"]
    assert shown["scope"] == "prefix" and shown["label"] == "+48 600" and shown["conversion_rate"] == round(1 / 6, 4)
    assert client.delete("/v1/breakers/prefix/48600", headers=admin).status_code == 204
    assert start(client, rest[5]).status_code == 201  # the window starts afresh
    assert client.get("/v1/breakers", headers=admin).get_json()["breakers"] == []
    [reset] = audit(redis_db, "breaker_reset")
    assert reset["breaker"] == "48600" and reset["operator"].startswith("key_")
    assert client.delete("/v1/breakers/prefix/48600", headers=admin).status_code == 404
    assert client.delete("/v1/breakers/galaxy/1", headers=admin).status_code == 400
    refusals = client.get("/v1/audit?status=refused", headers=admin).get_json()["records"]
    assert [(r["event"], r["reason"], r["phone_number"]) for r in refusals] == [("refused", "fraud_suspected", rest[5])]
    events = [r.get("event") for r in client.get("/v1/audit", headers=admin).get_json()["records"]]
    assert events[:3] == ["breaker_reset", "refused", "breaker_trip"] and events.count(None) == 1  # the approval


def conversions_in(redis_db, window: str) -> int:  # type: ignore[no-untyped-def]
    return sum(int(n) for f, n in redis_db.hgetall(window).items() if f.startswith(b"c"))


def test_an_approval_outside_a_check_counts_its_conversion_and_trusts_the_number(make, redis_db) -> None:
    # A keypress or a reply approves through verifications.end (finish.lua), not the check script.
    app, client = make()
    svc = app.extensions["gateway"]
    vid = start(client, PL, user_id="ann").get_json()["id"]
    assert verifications.end(svc, vid, 1, Status.APPROVED, None).kind == "ended"
    assert redis_db.llen(keys.CONVERSIONS) == 1 and not redis_db.exists(keys.converted(PL))  # queued, not counted
    assert metric(client, "gateway_conversions_queued") == 1
    assert abuse.fold_conversions(svc) == 1
    assert metric(client, "gateway_conversions_queued") == 0
    assert {b"at", b"u:ann"} <= set(redis_db.hkeys(keys.converted(PL)))
    for window in (keys.window("prefix", "48600"), keys.window("country", "PL")):
        assert conversions_in(redis_db, window) == 1
    assert redis_db.llen(keys.CONVERSIONS) == 0 and abuse.fold_conversions(svc) == 0  # counted once


def test_queued_conversions_count_at_their_approval_s_second_once_in_batches(make, redis_db) -> None:
    app, client = make()
    svc = app.extensions["gateway"]
    window = keys.window("prefix", "48600")
    bucket = svc.settings.abuse.pumping_window // abuse.BUCKETS
    now = int(redis_db.time()[0])
    # Queued as finish() queues them: an approval two buckets ago, one now (no user), a user with a '|'.
    queued = [f"{now - 2 * bucket}|{PL}|PL|ann", f"{now}|+48600100201|PL|", f"{now}|+48600100202|PL|a|b"]
    queued += [f"{now}|+4860010{i:04d}|PL|" for i in range(1000, 1000 + 2 * abuse.FOLD_BATCH)]
    # Three malformed (none is written so) are dropped, not left to stop the queue; one approved two
    # windows ago (no supervisor ran) marks its number but is past every window.
    late = now - 2 * svc.settings.abuse.pumping_window
    redis_db.rpush(keys.CONVERSIONS, "not an approval", *queued, f"{now}||PL|", f"{now}|+0|PL|",
                   f"{late}|+48600100203|PL|")
    assert abuse.fold_conversions(svc) == len(queued) + 4
    assert redis_db.hget(keys.converted("+48600100203"), "at") == str(late).encode()
    fields = redis_db.hgetall(window)
    assert f"c{late // bucket}".encode() not in fields
    assert fields[f"c{now // bucket - 2}".encode()] == b"1"  # in its own bucket, not the fold's
    assert conversions_in(redis_db, window) == len(queued)
    assert redis_db.hget(keys.converted(PL), "u:ann") == str(now - 2 * bucket).encode()
    assert redis_db.hkeys(keys.converted("+48600100201")) == [b"at"]
    assert redis_db.hexists(keys.converted("+48600100202"), "u:a|b")
    assert redis_db.llen(keys.CONVERSIONS) == 0


def test_a_fold_of_a_head_another_supervisor_took_counts_nothing(make, redis_db) -> None:
    app, client = make()
    svc = app.extensions["gateway"]
    now = int(redis_db.time()[0])
    redis_db.rpush(keys.CONVERSIONS, f"{now}|{PL}|PL|", f"{now}|+48600100201|PL|")
    entries = svc.abuse.queued_conversions(abuse.FOLD_BATCH)
    redis_db.lpop(keys.CONVERSIONS)  # another supervisor counted the first one meanwhile
    payload = {"keys": {"queue": keys.CONVERSIONS, "c1": keys.converted(PL), "p1": keys.window("prefix", "48600"),
                        "n1": keys.window("country", "PL"), "c2": keys.converted("+48600100201"),
                        "p2": keys.window("prefix", "48600"), "n2": keys.window("country", "PL")},
               "entries": entries, "window": 600, "buckets": abuse.BUCKETS, "memory": 3600}
    assert svc.abuse.fold(payload) is False
    assert conversions_in(redis_db, keys.window("prefix", "48600")) == 0 and redis_db.llen(keys.CONVERSIONS) == 1
    assert abuse.fold_conversions(svc) == 1 and conversions_in(redis_db, keys.window("prefix", "48600")) == 1


def test_pumping_spread_over_ranges_trips_the_country(make) -> None:
    app, client = make(pumping_min_sends=0, pumping_country_min_sends=4)
    for prefix in ("+48600", "+48601", "+48602", "+48603"):
        assert start(client, numbers(prefix, 1)[0]).status_code == 201
    assert refused(start(client, numbers("+48604", 1)[0]), "fraud_suspected")
    assert start(client, "+12015550123").status_code == 201


def test_no_fallback_call_after_an_sms_to_a_tripped_prefix(make, redis_db) -> None:
    app, client = make({"fallback_channels": ("call",)}, pumping_min_sends=3)
    svc: Services = app.extensions["gateway"]
    victim, *others = numbers("+48600", 4)
    vid = start(client, victim).get_json()["id"]
    for to in others[:2]:
        start(client, to)
    assert refused(start(client, others[2]), "fraud_suspected")
    deliveries.record_status(svc, vid, 1, AttemptStatus.UNDELIVERED, 30003)
    body = client.get(f"/v1/verifications/{vid}").get_json()
    assert body["status"] == "failed" and [a["channel"] for a in body["attempts"]] == ["sms"]


def test_the_pumping_window_slides_by_bucket_and_prunes_what_left_it(make, redis_db) -> None:
    # One hash per range: sends in 's<bucket>', buckets of PUMPING_WINDOW / 6 seconds by Redis's
    # clock. Sends five buckets back still count; six back they have left the window, and a send
    # deletes them (and any to twelve back), so the hash never grows past the window.
    app, client = make(pumping_min_sends=3, pumping_window=6000)  # buckets of 1000 s
    window = "gw:window:prefix:48600"
    for _ in range(3):  # a bucket boundary passing mid-test: take it again
        redis_db.delete(window)
        now = redis_db.time()[0] // 1000
        redis_db.hset(window, mapping={f"s{now - 6}": 100, f"c{now - 6}": 0, f"s{now - 12}": 50, f"s{now - 5}": 2})
        first = start(client, numbers("+48600", 1)[0]).status_code
        if redis_db.time()[0] // 1000 == now:
            break
    assert first == 201  # 2 sends in the window, not 152
    assert set(redis_db.hkeys(window)) == {f"s{now - 5}".encode(), f"s{now}".encode()}
    assert 0 < redis_db.ttl(window) <= 7000
    assert refused(start(client, numbers("+48600", 2)[1]), "fraud_suspected")  # 3 sends, none converted


# -- spend caps -----------------------------------------------------------------------------
def test_daily_budget_warns_at_80_percent_and_refuses_at_100(make) -> None:
    app, client = make(daily_budget=0.1, daily_budget_per_country=0)  # PL SMS: 0.04 each
    a, b, c = numbers("+48600", 3)
    approve(app, client, start(client, a).get_json()["id"])
    assert start(client, b).status_code == 201  # 0.08: 80 %
    assert metric(client, "gateway_spend_warnings_total", budget="global") == 1
    assert metric(client, "gateway_spend_today", budget="global") == pytest.approx(0.08)
    assert refused(start(client, c), "spend_cap")
    assert start(client, a).status_code == 201  # a converted number still gets its code


def test_a_days_spend_lives_three_days_from_its_first_send(make, redis_db) -> None:
    app, client = make(daily_budget=100.0)
    for to in numbers("+48600", 2):
        assert start(client, to).status_code == 201
    [key] = redis_db.scan_iter("gw:spend:*")
    assert int(redis_db.hget(key, "*")) == 2 * 40000  # two PL SMS at 0.04
    assert 3 * 86400 - 60 < redis_db.ttl(key) <= 3 * 86400


@pytest.mark.parametrize("budgets, label", [
    ({"daily_budget": 1.0, "daily_budget_per_country": 0}, "global"),
    ({"daily_budget": 0, "daily_budget_per_country": 1.0}, "PL"),
])
def test_the_spend_warning_comes_at_exactly_80_percent_and_once(make, caplog, budgets, label) -> None:
    prices = PriceList(countries={"PL": Price(sms=0.79, call_minute=0.01)})  # a call: 1 % of the budget
    app, client = make(prices=prices, **budgets)
    a, b, c, d = numbers("+48600", 4)

    def warnings() -> tuple[float, int]:
        said = [r for r in caplog.records if "spend has reached 80%" in r.getMessage()]
        return metric(client, "gateway_spend_warnings_total", budget=label), len(said)

    assert start(client, a).status_code == 201
    assert metric(client, "gateway_spend_today", budget=label) == pytest.approx(0.79)
    assert warnings() == (0, 0)  # 79 %: no warning yet
    assert start(client, b, channel="call", ivr_mode="code").status_code == 201
    assert metric(client, "gateway_spend_today", budget=label) == pytest.approx(0.80)
    assert warnings() == (1, 1)  # exactly 80 %: one warning, counted and logged
    for to in (c, d):  # 81 %, 82 %: still under the cap, no second warning
        assert start(client, to, channel="call", ivr_mode="code").status_code == 201
    assert metric(client, "gateway_spend_today", budget=label) == pytest.approx(0.82)
    assert warnings() == (1, 1)


def test_country_budget_refuses_only_that_country(make) -> None:
    app, client = make(daily_budget=0, daily_budget_per_country=0.05)
    assert start(client, numbers("+48600", 1)[0]).status_code == 201
    assert refused(start(client, numbers("+48600", 2)[1]), "spend_cap")
    assert start(client, "+12015550123").status_code == 201


# -- risky destinations and failures --------------------------------------------------------
def test_personal_numbers_refused_voip_configurable(make) -> None:
    app, client = make()
    r = start(client, "+447012345678")
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "destination_blocked"
    assert start(client, "+445612345678").status_code == 201
    app, client = make(allow_voip=False)
    assert start(client, "+445612345678").status_code == 403


def test_limits_fail_closed_on_a_redis_error(make, redis_db) -> None:
    app, client = make()
    redis_db.hset("gw:lim:global", "not", "a counter")  # every admission now errors inside Redis
    r = start(client)
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "unavailable" and r.headers["Retry-After"]
    assert redis_db.zcard("gw:outbox") == 0 and not redis_db.keys("gw:vf:*")


def test_a_numbers_range_is_read_as_phonenumbers_parses_it() -> None:
    # prefix_of reads the range from the E.164 digits without parsing; phonenumbers is the yardstick.
    numbers = [phonenumbers.example_number_for_type(region, kind) for region in phonenumbers.SUPPORTED_REGIONS
               for kind in phonenumbers.PhoneNumberType.values()]
    numbers += [phonenumbers.example_number_for_non_geo_entity(cc) for cc in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS]
    found = [n for n in numbers if n is not None]
    assert len(found) > 1000
    for number in found:
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        assert abuse.prefix_of(e164) == f"{number.country_code}{phonenumbers.national_significant_number(number)[:3]}"
