"""Usage reports from the counters the ending script keeps."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from gateway import create_app, deliveries, reports, verifications
from gateway.models import AttemptStatus, Status
from tests.conftest import ADMIN_KEY, API_KEY
from tests.test_audit import ANNA, BOB, ended

TODAY = datetime.now(timezone.utc).date().isoformat()
US = "+12025550123"


def rescued(app, client) -> str:  # type: ignore[no-untyped-def]
    """An SMS that the carrier could not deliver (30003), approved on the fallback call."""
    v = client.post("/v1/verifications", json={"to": ANNA, "channel": "sms", "fallback": ["call"]}).get_json()
    svc = app.extensions["gateway"]
    deliveries.record_status(svc, v["id"], 1, AttemptStatus.UNDELIVERED, error_code=30003)
    assert verifications.get(svc, v["id"]).attempt.channel.value == "call"
    assert verifications.end(svc, v["id"], 2, Status.APPROVED, None).kind == "ended"
    return v["id"]  # type: ignore[no-any-return]


@pytest.fixture
def usage(app, client, redis_db):  # type: ignore[no-untyped-def]
    ended(app, client, ANNA, "approved")
    ended(app, client, BOB, "denied")
    ended(app, client, US, "canceled")
    rescued(app, client)
    client.post("/v1/verifications", json={"to": BOB, "channel": "sms"})  # still pending: not counted yet


def test_rows_by_day_carry_every_field_and_the_totals(admin, usage) -> None:
    r = admin.get(f"/v1/reports/usage?since={TODAY}&until={TODAY}T23:59:59Z&group_by=day")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    [row] = body["rows"]
    assert row["key"] == TODAY
    assert {k: row[k] for k in ("started", "approved", "denied", "expired", "failed", "canceled")} == {
        "started": 4, "approved": 2, "denied": 1, "expired": 0, "failed": 0, "canceled": 1}
    assert row["conversion_rate"] == 0.5 and row["rescued_by_fallback"] == 1
    assert 0 < row["median_seconds_to_approve"] <= 1
    assert body["totals"] == {k: v for k, v in row.items() if k != "key"}
    assert body["carrier_errors"] == [{"code": 30003, "count": 1}]
    # only the rescued verification's SMS reached the carrier (undelivered: still charged)
    spend = body["estimated_spend"]
    assert (spend["sms_sent"], spend["calls_answered"], spend["currency"]) == (1, 0, "USD")
    assert spend["by_country"] == {"PL": 0.04} and spend["amount"] == 0.04


def test_rows_by_channel_and_country(admin, usage) -> None:
    by_channel = admin.get("/v1/reports/usage?group_by=channel").get_json()["rows"]
    assert [(r["key"], r["started"], r["approved"], r["rescued_by_fallback"]) for r in by_channel] == [
        ("sms", 4, 2, 1)]  # by the first channel: the rescued one started on SMS
    by_country = admin.get("/v1/reports/usage?group_by=country").get_json()["rows"]
    assert [(r["key"], r["started"], r["canceled"]) for r in by_country] == [("PL", 3, 0), ("US", 1, 1)]


def test_days_without_verifications_are_rows_of_zeros(admin, usage) -> None:
    body = admin.get("/v1/reports/usage?since=2026-01-01&until=2026-01-03").get_json()
    assert [r["key"] for r in body["rows"]] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert all(r["started"] == 0 and r["conversion_rate"] == 0.0 and r["median_seconds_to_approve"] is None
               for r in body["rows"])


def test_a_verification_is_counted_once_however_often_it_is_ended(app, admin, client) -> None:
    vid = ended(app, client, ANNA, "canceled")
    client.post(f"/v1/verifications/{vid}/cancel")
    assert verifications.end(app.extensions["gateway"], vid, 1, Status.APPROVED, None).kind == "noop"
    assert admin.get("/v1/reports/usage").get_json()["totals"]["started"] == 1


@pytest.mark.parametrize("query, field", [
    ("group_by=week", "group_by"), ("since=last-monday", "since"), ("until=2026-11-25T10:00:00", "until"),
    ("since=2026-11-26&until=2026-11-25", "since"), ("since=2000-01-01&until=2026-01-01", "since"),
])
def test_bad_parameters_are_refused_naming_them(admin, query, field) -> None:
    r = admin.get(f"/v1/reports/usage?{query}")
    assert r.status_code == 400 and f"'{field}'" in r.get_json()["error"]["message"]


def test_verify_keys_are_forbidden(client) -> None:
    assert client.get("/v1/reports/usage").status_code == 403


def test_median_interpolates_within_the_bucket() -> None:
    buckets = [0] * (len(reports.BOUNDS) + 1)
    assert reports.median(buckets) is None
    buckets[3] = 4  # four approvals between 3 and 5 seconds
    assert reports.median(buckets) == 4.0
    buckets[-1] = 10  # most slower than the last bound
    assert reports.median(buckets) == float(reports.BOUNDS[-1])


def test_ranges_read_whole_blocks_or_single_days_alike(admin, usage) -> None:
    today = datetime.now(timezone.utc).date()

    def countries(first: int, last: int) -> list[tuple[str, int]]:
        since, until = (today + timedelta(days=first)).isoformat(), (today + timedelta(days=last)).isoformat()
        body = admin.get(f"/v1/reports/usage?group_by=country&since={since}&until={until}").get_json()
        return [(r["key"], r["started"]) for r in body["rows"]]

    expected = [("PL", 3), ("US", 1)]
    for first, last in ((0, 0), (-20, 0), (0, 20), (-30, 30), (-9, 9), (-1, 1)):
        assert countries(first, last) == expected, (first, last)
    assert countries(-40, -1) == [] and countries(1, 40) == []


def test_spend_is_charged_sends_times_the_price_file() -> None:
    @dataclass
    class Price:
        sms: float
        call_minute: float

    @dataclass
    class Prices:
        currency: str = "EUR"

        def for_country(self, country: str) -> Price:
            return Price(0.04, 0.07) if country == "PL" else Price(0.01, 0.02)

    sends = Counter({("PL", "sms"): 3, ("PL", "call"): 1, ("US", "sms"): 2})
    assert reports.spend(sends, Prices()) == {
        "currency": "EUR", "amount": 0.21, "by_country": {"PL": 0.19, "US": 0.02}, "sms_sent": 5, "calls_answered": 1}
    assert reports.spend(sends, None) is None


def test_every_usage_counter_keeps_a_lifetime_of_three_years(app, client, redis_db) -> None:  # type: ignore[no-untyped-def]
    """The counters are renewed on the day's first end and when a field is new (a key is new with
    its first field), not on every end: each must still carry its ~1100-day life, the error and
    charge counters too, which first appear at a later end of the day (the rescued one)."""
    ended(app, client, ANNA, "approved")
    ended(app, client, BOB, "denied")
    rescued(app, client)  # the day's first carrier error and charged send: new fields, new keys
    found = [k.decode() for k in redis_db.scan_iter("gw:usage:*")]
    assert any(k.endswith(":x") for k in found) and any(":b" in k for k in found), found
    for key in found:
        ttl = redis_db.ttl(key)
        assert 1099 * 86400 < ttl <= 1100 * 86400, (key, ttl)


def test_two_charged_sends_of_one_verification_count_twice(settings) -> None:  # type: ignore[no-untyped-def]
    """A field an end adds to twice (two sent SMS: 'send:PL:sms') counts two, not one."""
    app = create_app(settings.replace(resend_interval=0))
    client, admin = app.test_client(), app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"], admin.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}", f"Bearer {ADMIN_KEY}"
    svc = app.extensions["gateway"]
    vid = client.post("/v1/verifications", json={"to": ANNA, "channel": "sms"}).get_json()["id"]
    deliveries.record_status(svc, vid, 1, AttemptStatus.SENT)
    assert client.post(f"/v1/verifications/{vid}/resend", json={"channel": "sms"}).status_code == 200
    assert deliveries.code_for(svc, verifications.get(svc, vid), 2, "482913") == "482913"
    deliveries.record_status(svc, vid, 2, AttemptStatus.SENT)
    assert client.post(f"/v1/verifications/{vid}/check", json={"code": "482913"}).get_json()["valid"]
    spend = admin.get("/v1/reports/usage").get_json()["estimated_spend"]
    assert (spend["sms_sent"], spend["by_country"]) == (2, {"PL": 0.08})
