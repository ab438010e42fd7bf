"""Operators' actions (resets, unblocks, token assignments): each one recorded with the key id."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from gateway import abuse, breakers, phone
from gateway.auth import Caller
from gateway.models import iso
from gateway.services import Services

log = logging.getLogger("gateway.operators")
SHOWN_ACTIONS = 2000  # how far back a page looks for the actions on one user or number


@dataclass(frozen=True)
class Action:
    """One recorded operator action."""

    at: float
    key_id: str
    action: str
    target: str
    detail: str
    via: str

    def to_json(self) -> dict[str, str | None]:
        """The action as pages and exports show it."""
        return {"at": iso(self.at), "key_id": self.key_id, "action": self.action, "target": self.target,
                "detail": self.detail, "via": self.via}


def record(svc: Services, caller: Caller, action: str, target: str, detail: str = "", via: str = "api") -> None:
    """Record an operator's action by the key's id (never the key itself)."""
    fields = {"at": f"{time.time():.3f}", "key_id": caller.key_id, "action": action, "target": target,
              "detail": detail, "via": via}
    svc.store.record_action(fields)
    log.info("operator %s: %s %s %s", caller.key_id, action, target, detail)


def recent(svc: Services, target: str | None = None, limit: int = 20) -> list[Action]:
    """The newest actions (on one target when given), newest first."""
    found = []
    for _, f in svc.store.actions(SHOWN_ACTIONS if target else limit):
        if target is None or f.get("target") == target:
            found.append(Action(float(f["at"]), f["key_id"], f["action"], f["target"], f.get("detail", ""),
                                f.get("via", "api")))
            if len(found) >= limit:
                break
    return found


@dataclass(frozen=True)
class Mark:
    """A mark on a number, why it is there, and how long it stays (None: until lifted)."""

    kind: str
    why: str
    seconds_left: int | None


@dataclass(frozen=True)
class Counter:
    """One of the abuse limits' start counters of a number."""

    name: str
    count: int
    limit: int
    seconds_left: int

    @property
    def reached(self) -> bool:
        """Whether it refuses starts now."""
        return self.count >= self.limit


@dataclass(frozen=True)
class NumberState:
    """What holds a number back: SMS opt-out, fraud block, start limits, pumping breakers."""

    number: str
    opted_out: Mark | None
    blocked: Mark | None
    counters: list[Counter]
    breakers: list[dict[str, object]]

    @property
    def limited(self) -> bool:
        """Whether a start limit refuses starts to the number now."""
        return any(c.reached for c in self.counters)


def _mark(kind: str, found: tuple[str, int] | None) -> Mark | None:
    if found is None:
        return None
    value, ttl = found
    return Mark(kind, "" if value == "1" else value, ttl if ttl >= 0 else None)


def number_state(svc: Services, number: str) -> NumberState:
    """The marks, counters and breakers on a number, with their reasons."""
    s, a = svc.settings, svc.settings.abuse
    limits = {"number": ("all clients", a.per_number_any_client), "confirm": ("confirm calls", a.confirm_calls_per_hour),
              "pair": ("one client", s.rate_limit_per_number)}
    counters = []
    for found in svc.store.limit_counters(number, s.rate_limit_window):
        label, limit = limits[found.kind]
        if found.kind == "pair":
            label = f"client {found.client or 'unknown'}"
        counters.append(Counter(label, found.count, limit, found.seconds_left))
    prefix, country = abuse.prefix_of(number), phone.parse(number, None).country
    tripped = [breakers.to_json(b) for b in breakers.tripped(svc)
               if (b.scope, b.id) in (("prefix", prefix), ("country", country))]
    return NumberState(number, _mark("optout", svc.store.flag("optout", number)),
                       _mark("block", svc.store.flag("block", number)), counters, tripped)


def unblock(svc: Services, caller: Caller, number: str, via: str = "api") -> bool:
    """Lift a fraud block; whether there was one."""
    had = svc.store.flag("block", number)
    svc.store.clear_flag("block", number)
    record(svc, caller, "unblock_number", number, f"was: {had[0]}" if had else "no block", via)
    return had is not None


def clear_rate_limit(svc: Services, caller: Caller, number: str, via: str = "api") -> int:
    """Reset the number's start counters; how many there were."""
    counters = svc.store.clear_limit_counters(number, svc.settings.rate_limit_window)
    detail = ", ".join(f"{c.kind} {c.count}" for c in counters) or "nothing counted"
    record(svc, caller, "clear_rate_limit", number, detail, via)
    return len(counters)


def reset_breaker(svc: Services, caller: Caller, scope: str, breaker_id: str, via: str = "api") -> bool:
    """Close a pumping breaker (the abuse controls audit it too); whether it was tripped."""
    was = breakers.reset(svc, scope, breaker_id, caller.key_id)
    record(svc, caller, "reset_breaker", f"{scope}:{breaker_id}", "was tripped" if was else "was not tripped", via)
    return was
