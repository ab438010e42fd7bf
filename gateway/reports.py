"""Usage reports from the day counters that the ending script keeps (prelude.lua count_usage)."""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import Enum
from typing import Protocol

from gateway import keys
from gateway.errors import InvalidRequest
from gateway.services import Services

# Upper bounds (seconds) of the seconds-to-approve buckets; keep in step with USAGE_BOUNDS in
# gateway/lua/prelude.lua. Bucket len(BOUNDS) + 1 holds everything slower.
BOUNDS = (1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800)
OUTCOMES = ("approved", "denied", "expired", "failed", "canceled")
BLOCK = keys.USAGE_BLOCK  # days summed together for dims and x
MAX_DAYS = 3660
DEFAULT_DAYS = 30
TOP_ERRORS = 10
UNKNOWN_COUNTRY = "unknown"


class GroupBy(str, Enum):
    DAY = "day"
    COUNTRY = "country"
    CHANNEL = "channel"


class Price(Protocol):
    sms: float
    call_minute: float


class PriceList(Protocol):
    currency: str

    def for_country(self, country: str) -> Price: ...


@dataclass(frozen=True)
class Query:
    """A validated report request: whole UTC days from first to last, inclusive."""

    first: date
    last: date
    group_by: GroupBy


@dataclass
class Tally:
    """Counts of one row (or the totals) before they are shown."""

    counts: Counter[str]

    def to_json(self, key: str | None) -> dict[str, object]:
        """The row fields of the contract."""
        c = self.counts
        started = c["started"]
        row: dict[str, object] = {"key": key} if key is not None else {}
        row.update({"started": started, **{name: c[name] for name in OUTCOMES}})
        row["conversion_rate"] = round(c["approved"] / started, 4) if started else 0.0
        row["rescued_by_fallback"] = c["rescued"]
        row["median_seconds_to_approve"] = median([c[f"t{i}"] for i in range(1, len(BOUNDS) + 2)])
        return row


def median(buckets: list[int]) -> float | None:
    """The median seconds to approve, interpolated within the histogram bucket that holds it."""
    total = sum(buckets)
    if total == 0:
        return None
    half, seen = total / 2, 0
    for i, count in enumerate(buckets):
        if count and seen + count >= half:
            low = BOUNDS[i - 1] if i > 0 else 0
            if i >= len(BOUNDS):
                return float(low)  # slower than the last bound: the bound is all we know
            return round(low + (BOUNDS[i] - low) * (half - seen) / count, 1)
        seen += count
    return None


def _day(name: str, raw: str) -> date:
    text = raw.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        value = datetime.fromisoformat(text.replace("z", "Z"))
        if value.tzinfo is None:
            raise ValueError
        return value.astimezone(timezone.utc).date()
    except ValueError:
        raise InvalidRequest(f"'{name}' must be an RFC 3339 time (2026-11-25T00:00:00Z) or a date (2026-11-25).") from None


def parse_query(args: Mapping[str, str], today: date | None = None) -> Query:
    """Validate the report parameters; a bad one is InvalidRequest naming it."""
    raw = args.get("group_by") or GroupBy.DAY.value
    if raw not in [g.value for g in GroupBy]:
        raise InvalidRequest(f"'group_by' must be one of {', '.join(g.value for g in GroupBy)}.")
    last = _day("until", args["until"]) if args.get("until") else (today or datetime.now(timezone.utc).date())
    first = _day("since", args["since"]) if args.get("since") else last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise InvalidRequest("'since' must not be later than 'until'.")
    if (last - first).days >= MAX_DAYS:
        raise InvalidRequest(f"'since' to 'until' may span at most {MAX_DAYS} days.")
    return Query(first, last, GroupBy(raw))


EPOCH = date(1970, 1, 1)


def _epoch_day(day: date) -> int:
    return (day - EPOCH).days


def _date(epoch_day: int) -> date:
    return EPOCH + timedelta(days=epoch_day)


def usage(svc: Services, q: Query) -> dict[str, object]:
    """Rows by day, country or channel, the totals, top carrier errors and the estimated spend."""
    first, last = _epoch_day(q.first), _epoch_day(q.last)
    days = list(range(first, last + 1))
    blocks = range(-(-first // BLOCK), (last + 1) // BLOCK)  # the blocks wholly inside the range
    edges = [d for d in days if not (blocks and blocks[0] * BLOCK <= d < (blocks[-1] + 1) * BLOCK)]
    detail = [":dims", ":x"] if q.group_by is not GroupBy.DAY else [":x"]
    names = [str(d) for d in days] + [f"{d}{p}" for d in edges for p in detail] + [
        f"b{b}{p}" for b in blocks for p in detail]
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    errors: Counter[int] = Counter()
    sends: Counter[tuple[str, str]] = Counter()
    dims = {"ch": GroupBy.CHANNEL, "cc": GroupBy.COUNTRY}
    for name, fields in zip(names, svc.store.usage_counters(names)):
        if ":" not in name:  # a day's totals
            totals.update(fields)
            if q.group_by is GroupBy.DAY:
                rows[_date(int(name)).isoformat()].update(fields)  # empty days are rows too
            continue
        for field, value in fields.items():
            head, _, rest = field.partition(":")
            if head == "err":
                errors[int(rest)] += value
            elif head == "send":
                country, _, kind = rest.partition(":")
                sends[(country, kind)] += value
            elif dims.get(head) is q.group_by:
                key, _, metric = rest.partition("|")
                rows[key or UNKNOWN_COUNTRY][metric] += value
    ordered = sorted(rows) if q.group_by is GroupBy.DAY else sorted(rows, key=lambda k: (-rows[k]["started"], k))
    return {
        "since": q.first.isoformat(),
        "until": q.last.isoformat(),
        "group_by": q.group_by.value,
        "rows": [Tally(rows[key]).to_json(key) for key in ordered],
        "totals": Tally(totals).to_json(None),
        "carrier_errors": [{"code": code, "count": n} for code, n in errors.most_common(TOP_ERRORS)],
        "estimated_spend": spend(sends, price_list(svc)),
    }


def price_list(svc: Services) -> PriceList:
    """The price file's prices (PRICE_FILE, loaded with the abuse controls' settings)."""
    return svc.settings.abuse.prices


def spend(sends: Counter[tuple[str, str]], prices: PriceList | None) -> dict[str, object] | None:
    """Charged sends times the price file: one segment per SMS, one minute per answered call."""
    if prices is None:
        return None
    by_country: Counter[str] = Counter()
    for (country, kind), count in sends.items():
        price = prices.for_country(country)
        by_country[country or UNKNOWN_COUNTRY] += count * (price.call_minute if kind == "call" else price.sms)
    return {
        "currency": prices.currency,
        "amount": round(sum(by_country.values()), 4),
        "by_country": {k: round(v, 4) for k, v in by_country.most_common()},
        "sms_sent": sum(n for (_, kind), n in sends.items() if kind == "sms"),
        "calls_answered": sum(n for (_, kind), n in sends.items() if kind == "call"),
    }
