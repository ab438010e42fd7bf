"""Reading the audit stream back: filters, newest-first pages, CSV and JSON lines exports."""
from __future__ import annotations

import csv
import heapq
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from gateway.errors import InvalidRequest
from gateway.models import Channel, Status, iso
from gateway.schemas import USER_ID
from gateway.services import Services
from gateway.store import AUDIT_STREAM, USER_AUDIT_STREAM

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
BATCH = 500
# Entries one request may examine before it answers with what it found and a cursor to go
# on from: a filter that matches nothing in a month of records still answers promptly.
SCAN_BUDGET = 20_000
# \A…\Z and ASCII digits: $ also matches before a final newline, \d also matches other scripts' digits.
# A cursor is the last entry a page examined: its stream id, plus "-u" when it was in gw:audit:users.
CURSOR = re.compile(r"\A[0-9]{1,15}-[0-9]{1,10}(-u)?\Z")
E164 = re.compile(r"\A\+[1-9][0-9]{6,14}\Z")
ENDED = tuple(s.value for s in Status if s is not Status.PENDING)
# Abuse refusals share the stream (docs/abuse.md): `status=refused` finds them.
STATUSES = (*ENDED, "refused")
FIELDS = (  # abuse records (docs/abuse.md) fill event, action, breaker, operator; changes to methods event, how, proof
    "event", "action", "breaker", "operator", "how", "proof_verification_id", "verification_id", "user_id",
    "first_name", "last_name", "email", "phone_number", "country", "device_token", "mode", "channel", "channels",
    "result", "status", "reason", "client_ip", "server_name", "server_ip", "created_at", "ended_at", "attempts",
)
# OWASP "CSV injection": a spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Filters:
    """A validated audit query."""

    user_id: str | None = None
    to: str | None = None
    status: str | None = None
    channel: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None
    cursor: str | None = None

    def matches(self, record: Mapping[str, object]) -> bool:
        """Whether a record passes the field filters (the time range is applied by the stream ids)."""
        if self.channel is not None and self.channel not in {
            a.get("channel") for a in record["attempts"]  # type: ignore[attr-defined]
        } | {record.get("channel")}:
            return False  # the channel filter finds verifications that used the channel at all
        return all(
            want is None or record.get(name) == want
            for name, want in (("user_id", self.user_id), ("phone_number", self.to), ("status", self.status))
        )


@dataclass(frozen=True)
class Page:
    """Records newest first, and where the next page starts (None: nothing older): the last entry
    examined, in either stream."""

    records: list[dict[str, object]]
    next_cursor: str | None


def _time(name: str, raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.strip().replace("z", "Z"))
    except ValueError:
        value = None
    # RFC 3339 needs a date, a time and an offset; a bare date or a local time is refused.
    if value is None or value.tzinfo is None or "T" not in raw.upper():
        raise InvalidRequest(f"'{name}' must be an RFC 3339 time like 2026-11-25T09:14:00Z.")
    return value.astimezone(timezone.utc)


def parse_filters(args: Mapping[str, str], paged: bool = True) -> Filters:
    """Validate query parameters; a bad one is InvalidRequest naming it."""
    user_id = args.get("user_id") or None
    if user_id is not None and not USER_ID.match(user_id):
        raise InvalidRequest("'user_id' must be 1 to 128 letters, digits and . _ @ + - characters.")
    to = args.get("to") or None
    if to is not None:
        # A '+' left unencoded in a query string arrives as a space.
        to = "+" + to[1:] if to.startswith(" ") else to
        if not E164.match(to):
            raise InvalidRequest("'to' must be an E.164 number like +48600100200 (encode + as %2B).")
    status = args.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"'status' must be one of {', '.join(STATUSES)}.")
    channel = args.get("channel") or None
    if channel is not None and channel not in [c.value for c in Channel]:
        raise InvalidRequest(f"'channel' must be one of {', '.join(c.value for c in Channel)}.")
    since = _time("since", args["since"]) if args.get("since") else None
    until = _time("until", args["until"]) if args.get("until") else None
    if since and until and since > until:
        raise InvalidRequest("'since' must not be later than 'until'.")
    limit = None
    if args.get("limit"):
        raw = args["limit"]
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:  # isdigit alone takes "²"
            raise InvalidRequest(f"'limit' must be a whole number from 1 to {MAX_LIMIT}.")
        limit = int(raw)
    elif paged:
        limit = DEFAULT_LIMIT
    cursor = args.get("cursor") or None
    if cursor is not None and not CURSOR.match(cursor):
        raise InvalidRequest("'cursor' must be a next_cursor from an earlier answer.")
    return Filters(user_id, to, status, channel, since, until, limit, cursor)


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def record_from(fields: Mapping[str, str]) -> dict[str, object]:
    """An audit stream entry as the API shows it: the seed's fields plus the attempts."""
    attempts = json.loads(fields.get("attempts") or "[]") or []
    return {
        "verification_id": fields.get("verification_id"),
        "user_id": fields.get("user_id") or None,
        "first_name": fields.get("first_name") or None,
        "last_name": fields.get("last_name") or None,
        "email": fields.get("email") or None,
        "phone_number": fields.get("phone_number"),
        "country": fields.get("country") or None,
        "device_token": None,  # no push-notification app: there is never a device token
        "mode": fields.get("mode"),
        "channel": fields.get("channel"),
        "channels": json.loads(fields.get("channels") or "[]") or [],
        "result": fields.get("result"),
        "status": fields.get("status"),
        "reason": fields.get("reason") or None,
        "client_ip": fields.get("client_ip") or None,
        "server_name": fields.get("server_name"),
        "server_ip": fields.get("server_ip") or None,
        "created_at": iso(float(fields["created_at"])) if fields.get("created_at") else None,
        "ended_at": iso(float(fields["ended_at"])) if fields.get("ended_at") else None,
        "attempts": [
            {"channel": a.get("channel"), "status": a.get("status"), "error_code": a.get("error_code"),
             "started_at": iso(a["started_at"]) if a.get("started_at") else None,
             "ended_because": a.get("ended_because")}
            for a in attempts
        ],
        **_abuse_event(fields),
    }


def user_record_from(fields: Mapping[str, str]) -> dict[str, object]:
    """A gw:audit:users entry (a change to a user's methods) in the record's shape: the change's
    time as created_at and ended_at, what no verification gave as null."""
    at = fields.get("at", "")
    shared = {name: fields[name] for name in ("user_id", "server_name", "server_ip") if name in fields}
    return {**record_from({**shared, "created_at": at, "ended_at": at}), "event": fields.get("event"),
            "how": fields.get("how") or None, "proof_verification_id": fields.get("proof_verification_id") or None}


def _abuse_event(fields: Mapping[str, str]) -> dict[str, object]:
    """What an abuse record adds (docs/abuse.md): the event, and for breakers which one and who reset it."""
    if not fields.get("event"):
        return {}
    extra = {"event": fields["event"], "action": fields.get("action") or None}
    if fields.get("breaker"):
        extra.update(breaker=f"{fields.get('scope')}:{fields['breaker']}", operator=fields.get("operator") or None)
    return extra


_Tagged = tuple[tuple[tuple[int, int], int], str, dict[str, str]]


def _id(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


def _stream(svc: Services, stream: str, newest: str, oldest: str) -> Iterator[tuple[str, dict[str, str]]]:
    """One stream's entries from newest down to oldest (XREVRANGE bounds), in batches."""
    # Stream ids start at 0-0 (1970): nothing lies before them, and Redis refuses a bound
    # below them (an exclusive "(0-0" or a negative time) instead of answering an empty range.
    if newest.startswith("(") and _id(newest[1:]) == (0, 0):
        return
    while True:
        batch = svc.store.audit_entries(newest, oldest, BATCH, stream)
        yield from batch
        if len(batch) < BATCH:
            return
        newest = f"({batch[-1][0]}"


def _tagged(entries: Iterator[tuple[str, dict[str, str]]], rank: int, suffix: str) -> Iterator[_Tagged]:
    """A stream's entries with their merge order (id, then rank) and cursor."""
    for entry_id, fields in entries:
        yield (_id(entry_id), rank), entry_id + suffix, fields


def _entries(svc: Services, f: Filters, users: bool = True) -> Iterator[tuple[str, dict[str, str]]]:
    """Entries in the time range and after the cursor, newest first, each with its cursor:
    gw:audit merged with gw:audit:users (cursors ending in -u; see to_record)."""
    if f.until and _ms(f.until) < 0:
        return
    oldest = str(_ms(f.since)) if f.since and _ms(f.since) > 0 else "-"
    top = str(_ms(f.until)) if f.until else "+"
    after = f.cursor.removesuffix("-u") if f.cursor else None
    # The streams may hold the same id; at a tie gw:audit's entry comes first, so after a cursor
    # in gw:audit the users' entry of that very id is still to come (an inclusive bound).
    in_users = bool(f.cursor and f.cursor.endswith("-u"))
    sources = [_tagged(_stream(svc, AUDIT_STREAM, f"({after}" if after else top, oldest), 1, "")]
    if users:
        newest = (f"({after}" if in_users else after) if after else top
        sources.append(_tagged(_stream(svc, USER_AUDIT_STREAM, newest, oldest), 0, "-u"))
    for _, cursor, fields in heapq.merge(*sources, key=lambda e: e[0], reverse=True):
        yield cursor, fields


def to_record(cursor: str, fields: Mapping[str, str]) -> dict[str, object]:
    """An entry of either stream as the API shows it (its cursor tells which stream)."""
    return user_record_from(fields) if cursor.endswith("-u") else record_from(fields)


def search(svc: Services, f: Filters) -> Page:
    """One page of matching records, newest first."""
    limit = f.limit or DEFAULT_LIMIT
    found: list[dict[str, object]] = []
    examined, last_id = 0, None
    for cursor, fields in _entries(svc, f):
        examined += 1
        last_id = cursor
        record = to_record(cursor, fields)
        if f.matches(record):
            found.append(record)
            if len(found) == limit:
                break
        if examined >= SCAN_BUDGET:
            break
    else:
        return Page(found, None)  # the range is used up: nothing older
    return Page(found, last_id)


def iterate(svc: Services, f: Filters) -> Iterator[dict[str, object]]:
    """Every matching record, newest first (up to the limit when one is given)."""
    count = 0
    for cursor, fields in _entries(svc, f):
        record = to_record(cursor, fields)
        if f.matches(record):
            yield record
            count += 1
            if f.limit and count >= f.limit:
                return


def find(svc: Services, verification_id: str) -> dict[str, object] | None:
    """The audit record of one verification, looked for among the newest SCAN_BUDGET entries."""
    for count, (_, fields) in enumerate(_entries(svc, Filters(), users=False)):
        if fields.get("verification_id") == verification_id:
            return record_from(fields)
        if count >= SCAN_BUDGET:
            break
    return None


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return "'" + text if text.startswith(FORMULA_START) else text


def _attempts_text(attempts: object) -> str:
    parts = []
    for a in attempts if isinstance(attempts, list) else []:
        error = f" error {a['error_code']}" if a.get("error_code") is not None else ""
        parts.append(f"{a.get('started_at')} {a.get('channel')} {a.get('status')}{error}")
    return "; ".join(parts)


def csv_lines(records: Iterator[dict[str, object]]) -> Iterator[str]:
    """CSV text, a header row first, one line at a time; formula-like cells neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(cells: list[object]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([_cell(c) for c in cells])
        return buffer.getvalue()

    yield line(list(FIELDS))
    for record in records:
        row = {**record, "channels": " ".join(record["channels"]),  # type: ignore[arg-type]
               "attempts": _attempts_text(record["attempts"])}
        yield line([row.get(name) for name in FIELDS])


def jsonl_lines(records: Iterator[dict[str, object]]) -> Iterator[str]:
    """One JSON object per line."""
    for record in records:
        yield json.dumps(record, separators=(",", ":")) + "\n"
