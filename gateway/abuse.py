"""Abuse and toll-fraud protection: send caps, limits on every axis, pumping breakers, spend caps.

Every send (a start, a resend, a fallback) is admitted by one Lua call (lua/admit.lua) that
checks and counts every limit at once; see docs/abuse.md for the policy and its reasons.
"""
from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

import phonenumbers
import redis

from gateway import keys
from gateway.abuse_store import CLOCK_TRIES, Admission, admission_of
from gateway.errors import DestinationBlocked, RateLimited, Unavailable
from gateway.models import Channel, Verification
from gateway.phone import NumberType, PhoneNumber
from gateway.services import Services
from gateway.store import Allowance, Outcome

log = logging.getLogger(__name__)

BUCKETS = 6  # the pumping window is summed over this many buckets: sliding to 1/6 of it
FOLD_BATCH = 200  # queued conversions counted per call (three keys each)
FOLD_CALLS = 50  # calls per fold_conversions() at most, so that one supervisor pass stays short
MICRO = 1_000_000  # spend is counted in millionths of the currency, as Redis integers
# Spend is estimated before sending: codes fit one segment (GSM-7 or UCS-2), and a call
# (greeting, menu, code read twice) is billed as one minute by most carriers.
SMS_SEGMENTS, CALL_MINUTES = 1, 1
MESSAGES = {
    "number": "Too many verifications for this number; try again later.",
    "client_ip": "Too many verifications from this client address; try again later.",
    "user": "Too many verifications or checks for this user; try again later.",
    "country": "Too many verifications to this country right now; try again later.",
    "global": "The gateway is at its global sending limit; try again shortly.",
    "max_sends": "This verification has used all its sends; start a new one later.",
    "fraud_suspected": "Sending to this number range is suspended: its traffic looks like SMS pumping.",
    "spend_cap": "Today's sending budget is used up.",
}


# Seconds a start refused for the send backlog (SEND_BACKLOG_MAX) is told to wait: senders
# work through thousands of entries in that time.
BACKLOG_RETRY_AFTER = 5


def refusal(reason: str, retry_after: int) -> RateLimited:
    """The 429 for an abuse refusal, with its machine-readable reason."""
    return RateLimited(MESSAGES[reason], retry_after=max(retry_after, 1), reason=reason)


def client_key(client_ip: str | None) -> str:
    """The limit key of a client address: IPv4 as is, IPv6 by its /64 (one subscriber's block)."""
    if not client_ip:
        return ""
    address = ipaddress.ip_address(client_ip)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


def prefix_of(e164: str) -> str:
    """A number's range: its country calling code and the next 3 digits ('48600' for +48 600…)."""
    # Every start and check asks this of a number already in E.164: its calling code is the
    # first of its 1-3 leading digits that is one (the codes are prefix-free) and the national
    # number the digits after it, so it is read without a second parse (phonenumbers' gives the same:
    # tests/test_abuse.py holds the two to each other for every region's example numbers).
    digits = e164[1:]
    for size in (1, 2, 3):
        if digits[:size].isdigit() and int(digits[:size]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return digits[:size + 3]
    number = phonenumbers.parse(e164)
    return f"{number.country_code}{phonenumbers.national_significant_number(number)[:3]}"


def check_number_type(svc: Services, number: PhoneNumber) -> None:
    """Refuse VoIP and unknown number types unless the settings allow them."""
    a = svc.settings.abuse
    if (number.type is NumberType.VOIP and not a.allow_voip) or (
        number.type is NumberType.UNKNOWN and not a.allow_unknown_type
    ):
        raise DestinationBlocked(f"Numbers of type {number.type.value} are not allowed here.")


def _timed(svc: Services, payload: dict[str, Any]) -> Callable[[float], dict[str, Any]]:
    """The request with the keys that depend on the time (the spend day, the limits hashes of this
    window generation and the last) chosen at a given time. The script checks them against Redis's
    clock, and the store chooses again at Redis's time when they disagree (AbuseStore._clocked):
    Redis's clock decides. (The pumping windows' buckets are fields the scripts choose at Redis's
    time: conversion_lib.lua.)"""
    window = svc.settings.rate_limit_window
    # Each counter's hash is its own field's shard, but a pair's is its number's (admit.lua): the
    # console finds a number's pairs beside it.
    shards = {name: field for name, field in payload["fields"].items() if name != "pair"}

    def at(now: float) -> dict[str, Any]:
        day, generation = int(now // keys.DAY), int(now // window)
        chosen = {"spend": keys.spend(day)}
        for name, identity in shards.items():
            chosen[name] = keys.limits(generation, identity)
            chosen[f"{name}_prev"] = keys.limits(generation - 1, identity)
        return payload | {"keys": payload["keys"] | chosen,
                          "clock": {"day": day, "generation": generation, "window": window}}
    return at


def _cost(svc: Services, country: str, channel: Channel) -> int:
    price = svc.settings.abuse.prices.for_country(country)
    amount = price.sms * SMS_SEGMENTS if channel is not Channel.CALL else price.call_minute * CALL_MINUTES
    return round(amount * MICRO)


def _payload(
    svc: Services, kind: str, e164: str, country: str, channel: Channel, ivr_mode: str,
    user_id: str | None, client_ip: str | None, verification_id: str = "", idem: str = "",
) -> dict[str, Any]:
    s, a = svc.settings, svc.settings.abuse
    ip = client_key(client_ip)
    client = ip or (f"u:{user_id}" if user_id else "")
    window = s.rate_limit_window
    limits: dict[str, list[object]] = {
        "pair": [s.rate_limit_per_number, window],
        "number": [a.per_number_any_client, window],
        "country": [a.per_country, window],
        "global": [a.global_per_minute, 60],
        "confirm": [a.confirm_calls_per_hour, 3600],
    }
    named = {"country": keys.limit("country", country), "global": keys.GLOBAL_LIMIT, "confirm": keys.limit("confirm", e164)}
    # The counters kept in the shared limits hashes (keys.limits, chosen by _timed): their fields.
    fields = {"pair": keys.limit_field("pair", e164, client), "number": keys.limit_field("number", e164)}
    if ip:
        limits["ip"], fields["ip"] = [a.per_ip, window], keys.limit_field("ip", ip)
    if user_id:
        limits["user"], fields["user"] = [a.per_user, window], keys.limit_field("user", user_id)
    paid = channel is not Channel.TOTP
    prefix = prefix_of(e164)
    named |= {  # and the time-chosen ones: _timed
        "idem": idem or keys.converted(e164),  # without one, a key declared anyway (p.idem says none)
        "converted": keys.converted(e164), "audit": keys.AUDIT, "refused": keys.metrics("refused"),
        "trips": keys.metrics("breaker_trips"), "warnings": keys.metrics("spend_warnings"), "breakers": keys.BREAKERS,
        "breaker_prefix": keys.breaker(f"prefix:{prefix}"), "breaker_country": keys.breaker(f"country:{country}"),
        "window_prefix": keys.window("prefix", prefix), "window_country": keys.window("country", country),
    }
    return {
        "keys": named, "kind": kind, "idem": bool(idem), "number": e164, "user": user_id or "", "country": country,
        "prefix": prefix, "limited": kind != "fallback", "paid": paid,
        "confirm_call": channel is Channel.CALL and ivr_mode == "confirm", "limits": limits,
        "fields": fields,
        "pump": {
            "window": a.pumping_window, "buckets": BUCKETS, "cooloff": a.pumping_cooloff,
            "min_sends": a.pumping_min_sends, "country_min_sends": a.pumping_country_min_sends,
            "min_conversion": a.pumping_min_conversion,
        },
        "spend": {
            "cost": _cost(svc, country, channel) if paid else 0,
            "budget": round(a.daily_budget * MICRO), "country_budget": round(a.daily_budget_per_country * MICRO),
        },
        "audit_retention_ms": s.audit_retention * 1000,
        "record": {
            "event": "refused", "action": kind, "status": "refused", "result": "denied",
            "verification_id": verification_id, "user_id": user_id or "", "phone_number": e164,
            "country": country, "channel": channel.value, "client_ip": client_ip or "",
            "server_name": s.server_name,
        },
    }


def _admit(svc: Services, payload: dict[str, Any]) -> Admission:
    try:
        admission = svc.abuse.admit(_timed(svc, payload))
    except redis.exceptions.RedisError as exc:
        # Fail closed: without the counters nothing is sent.
        log.warning("abuse limits unavailable, refusing: %s", exc)
        raise Unavailable("The gateway's limits cannot be checked; try again shortly.") from exc
    return _logged(payload, admission)


def _logged(payload: dict[str, Any], admission: Admission) -> Admission:
    if admission.tripped:
        log.warning("breaker tripped: %s (sms pumping suspected)", admission.tripped)
    for scope in admission.warned:
        log.warning("spend has reached 80%% of today's %s budget", "global" if scope == "*" else scope)
    if admission.refused:
        log.info("refused %s to %s: %s", payload["kind"], payload["prefix"], admission.refused)
    return admission


# Store.create for one start, given the time its keys are chosen at and its admission (the
# admission's keys and request, given how many keys of the create script come before them).
Created = Callable[[float, Callable[[int], tuple[list[str], bytes]]], Outcome]


def admit_start(
    svc: Services, number: PhoneNumber, channel: Channel, ivr_mode: str,
    user_id: str | None, client_ip: str | None, idempotency_key: str | None, create: Created,
) -> Outcome:
    """Admit a new verification's first send in the call that creates it (create: Store.create
    given the admission), or raise the 503 (send backlog) or 429 that says why not."""
    check_number_type(svc, number)
    idem = keys.idempotency(idempotency_key) if idempotency_key else ""  # a replay sends nothing: not counted
    payload = _payload(svc, "start", number.e164, number.country, channel, ivr_mode, user_id, client_ip, idem=idem)
    payload["backlog"] = svc.settings.send_backlog_max
    payload["keys"]["outbox"] = keys.OUTBOX
    build = _timed(svc, payload)
    for _ in range(CLOCK_TRIES):
        now = svc.abuse.now()
        try:
            outcome = create(now, lambda before: svc.abuse.placed(build(now), before))
        except redis.exceptions.RedisError as exc:
            # Fail closed: without the counters nothing is sent.
            log.warning("abuse limits unavailable, refusing: %s", exc)
            raise Unavailable("The gateway's limits cannot be checked; try again shortly.") from exc
        if outcome.kind != "clock":
            break
        svc.abuse.learn(float(outcome.value))  # the keys chosen by time were off: choose again at Redis's time
    else:
        raise Unavailable("The gateway's limits cannot be checked; try again shortly.")
    if outcome.now:
        # Redis's time, for what this node still chooses by its clock (the spend day, the
        # breakers shown): a day boundary alone would teach it too seldom.
        svc.abuse.learn(outcome.now)
    admission = _logged(payload, admission_of(outcome.admission))
    if admission.refused == "backlog":
        raise Unavailable("The gateway's send queue is over its bound; try again shortly.",
                          retry_after=BACKLOG_RETRY_AFTER)
    if admission.refused:
        raise refusal(admission.refused, admission.retry_after)
    return outcome


def _max_sends_left(svc: Services, v: Verification) -> bool:
    return len(v.attempts) < svc.settings.abuse.max_sends_per_verification


def admit_resend(svc: Services, v: Verification, channel: Channel, now: float) -> None:
    """Admit a resend: within the verification's send cap and every limit of a start (now: Redis's time)."""
    if not _max_sends_left(svc, v):
        _count_max_sends(svc, v, "resend", channel)
        raise refusal("max_sends", int(v.expires_at - now) + 1)
    admission = _admit(svc, _payload(svc, "resend", v.to, v.country, channel, v.ivr_mode, v.user_id, v.client_ip, v.id))
    if admission.refused:
        raise refusal(admission.refused, admission.retry_after)


def fallback_allowed(svc: Services, v: Verification, channel: Channel) -> bool:
    """Whether a fallback send may go: send cap, breakers (so no call follows a pumped SMS), budgets."""
    if not _max_sends_left(svc, v):
        _count_max_sends(svc, v, "fallback", channel)
        return False
    payload = _payload(svc, "fallback", v.to, v.country, channel, v.ivr_mode, v.user_id, v.client_ip, v.id)
    return _admit(svc, payload).refused is None


def _count_max_sends(svc: Services, v: Verification, kind: str, channel: Channel) -> None:
    """Count and audit a max_sends refusal (the cap needs no counter: attempts are in the record)."""
    record = _payload(svc, kind, v.to, v.country, channel, v.ivr_mode, v.user_id, v.client_ip, v.id)["record"]
    record.update(reason="max_sends")  # the times are Redis's (refused.lua)
    svc.abuse.refused(record, svc.settings.audit_retention)


def check_allowance(svc: Services, user_id: str | None, known: bool = True) -> Allowance | None:
    """The allowance a code check (TOTP included) of this user counts against; None: off, or no
    user. The check script counts it and answers 'refused' when it is used up (raise
    refusal('user')). known=False: the caller has not read the verification, so an allowance
    without a key; the script answers 'subject' (the user) when the verification names one."""
    s = svc.settings
    if s.abuse.checks_per_user <= 0 or (known and not user_id):
        return None
    return Allowance(keys.limit("checks", user_id) if user_id else "", s.abuse.checks_per_user, s.rate_limit_window)


def admit_confirmation(svc: Services, user_id: str) -> float:
    """Count a new authenticator's confirmation code against the user's check allowance, or raise
    429 user; Redis's time, to match the code against."""
    try:
        outcome = svc.store.count_confirmation(user_id, check_allowance(svc, user_id))
    except redis.exceptions.RedisError as exc:
        raise Unavailable("The gateway's limits cannot be checked; try again shortly.") from exc
    if outcome.kind == "refused":
        raise refusal("user", int(outcome.value))
    return float(outcome.value)


def fold_conversions(svc: Services) -> int:
    """Count the conversions that approvals queued (keys.CONVERSIONS), oldest first, in the pumping
    windows at each approval's second, and remember the numbers as converted; how many."""
    # Run by the workers' supervisor every pass (gateway/scheduler.py): the approving script cannot
    # count them itself, as the windows are named by the number and its caller does not know it.
    a = svc.settings.abuse
    counted = 0
    for _ in range(FOLD_CALLS):
        entries = svc.abuse.queued_conversions(FOLD_BATCH)
        if not entries:
            break
        named, keyed = {"queue": keys.CONVERSIONS}, []
        for i, entry in enumerate(entries, 1):
            named.update(_conversion_keys(i, entry))
            keyed.append(f"c{i}" in named)
        if not svc.abuse.fold({"keys": named, "entries": entries, "keyed": keyed, "window": a.pumping_window,
                               "buckets": BUCKETS, "memory": a.converted_memory}):
            continue  # another supervisor counted this head first: read the queue again
        counted += len(entries)
        if len(entries) < FOLD_BATCH:
            break
    return counted


def _conversion_keys(i: int, entry: str) -> dict[str, str]:
    """Queued entry i's keys (its number's mark, its range's and country's windows); none for an
    entry not in finish()'s form, which convert.lua then drops rather than let it stop the queue."""
    parts = entry.split("|", 3)
    if len(parts) != 4 or not parts[0].isdigit() or not parts[1]:
        return {}
    try:
        prefix = prefix_of(parts[1])
    except phonenumbers.NumberParseException:
        return {}
    return {f"c{i}": keys.converted(parts[1]), f"p{i}": keys.window("prefix", prefix),
            f"n{i}": keys.window("country", parts[2])}


def latest_expiry(v: Verification, first_ttl: int, ttl: int) -> float:
    """A verification never outlives its first code's lifetime plus one TTL, however often resent."""
    return v.created_at + first_ttl + ttl
