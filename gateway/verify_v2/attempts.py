"""The Attempts API (/v2/Attempts): delivery attempts of an account's /v2 verifications, read from
the records the gateway keeps (no second bookkeeping)."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from flask import Response, g, jsonify, request

from gateway.models import Verification
from gateway.services import services
from gateway.v2_store import V2Store
from gateway.verify_v2 import forms, render
from gateway.verify_v2.errors import invalid, not_found
from gateway.verify_v2.service import ATTEMPTS_DAYS
from gateway.verify_v2.views import bp

# An attempt starts after its verification, and no verification lives longer than a day
# (CodeLifetime ≤ 86400), so a verification started this much before a window's start has
# no attempt in it.
LONGEST_LIFE = 86400
FILTERS = ("DateCreatedAfter", "DateCreatedBefore", "ChannelData.To", "Country", "Channel",
           "VerifyServiceSid", "VerificationSid", "Status", "DestinationPrefix")


def _date(args: Mapping[str, str], name: str) -> float | None:
    raw = args.get(name)
    if not raw:
        return None
    try:
        return datetime.strptime(raw, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        raise invalid(name, "a date like 2025-01-02T03:04:05Z") from None


def _attempts(args: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every attempt of the account's kept /v2 verifications that passes the filters, newest first."""
    svc = services()
    db = V2Store(svc.redis)
    now = db.now()  # Redis's, as the attempts' own times are: none started "in the future"
    after = _date(args, "DateCreatedAfter") or now - ATTEMPTS_DAYS * 86400
    before = _date(args, "DateCreatedBefore") or now
    ids = db.verification_ids(g.account_sid, after - LONGEST_LIFE, before)
    wanted = {
        "to": args.get("ChannelData.To"), "country": args.get("Country"), "channel": args.get("Channel"),
        "service_sid": args.get("VerifyServiceSid"), "verification_sid": args.get("VerificationSid"),
        "conversion_status": args.get("Status"),
    }
    prefix = args.get("DestinationPrefix") or ""
    found: list[dict[str, Any]] = []
    for verification_id in ids:
        v = svc.store.load(verification_id)
        if v is None or v.tags.get("acct") != g.account_sid or not v.to.startswith(prefix):
            continue
        for a in reversed(v.attempts):
            item = render.attempt(v, a, v.tags.get("svc", ""), g.account_sid)
            facts = {**item, "to": v.to, "country": v.country}
            if after <= a.started_at <= before and all(facts[k] == w for k, w in wanted.items() if w):
                found.append(item)
    return sorted(found, key=lambda item: item["date_created"], reverse=True)


@bp.get("/Attempts")
def list_attempts() -> Response:
    """A page of delivery attempts, with Twilio's filters."""
    number, size = forms.page(request.args)
    found = _attempts(request.args)
    query = urlencode({k: v for k, v in request.args.items() if k in FILTERS})
    return jsonify(attempts=found[number * size:(number + 1) * size],
                   meta=render.page_meta("attempts", "/v2/Attempts", number, size,
                                         len(found) > (number + 1) * size, query))


@bp.get("/Attempts/Summary")
def summary() -> Response:
    """Totals and the conversion rate of the attempts that pass the filters."""
    found = _attempts(request.args)
    converted = sum(1 for item in found if item["conversion_status"] == "converted")
    rate = round(100.0 * converted / len(found), 2) if found else 0
    return jsonify(total_attempts=len(found), total_converted=converted, total_unconverted=len(found) - converted,
                   conversion_rate_percentage=rate, url=f"{render.base()}/v2/Attempts/Summary")


@bp.get("/Attempts/<sid>")
def fetch_attempt(sid: str) -> Response:
    """One attempt by its VL SID."""
    if forms.sid(sid, "VL"):
        svc = services()
        for verification_id, number in render.attempt_candidates(sid):
            v: Verification | None = svc.store.load(verification_id)
            if v is not None and v.tags.get("acct") == g.account_sid and number <= len(v.attempts):
                return jsonify(render.attempt(v, v.attempts[number - 1], v.tags.get("svc", ""), g.account_sid))
    raise not_found(f"/Attempts/{sid}")
