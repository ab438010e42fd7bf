"""Operators' actions (resets, unblocks, token assignments): each one recorded with the key id."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

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
class NumberState:
    """What holds a number back: SMS opt-out, fraud block, the start rate limit."""

    number: str
    opted_out: Mark | None
    blocked: Mark | None
    rate: Mark | None
    starts_in_window: int


def _mark(kind: str, found: tuple[str, int] | None, why: str | None = None) -> Mark | None:
    if found is None:
        return None
    value, ttl = found
    return Mark(kind, why or ("" if value == "1" else value), ttl if ttl >= 0 else None)


def number_state(svc: Services, number: str) -> NumberState:
    """The marks on a number, with their reasons."""
    s = svc.settings
    rate = svc.store.flag("rate", number)
    starts = int(rate[0]) if rate else 0
    limited = rate if rate and starts >= s.rate_limit_per_number else None
    return NumberState(
        number,
        _mark("optout", svc.store.flag("optout", number)),
        _mark("block", svc.store.flag("block", number)),
        _mark("rate", limited, f"{starts} starts within {s.rate_limit_window} s (limit {s.rate_limit_per_number})"),
        starts,
    )


def unblock(svc: Services, caller: Caller, number: str, via: str = "api") -> bool:
    """Lift a fraud block; whether there was one."""
    had = svc.store.flag("block", number)
    svc.store.clear_flag("block", number)
    record(svc, caller, "unblock_number", number, f"was: {had[0]}" if had else "no block", via)
    return had is not None


def clear_rate_limit(svc: Services, caller: Caller, number: str, via: str = "api") -> bool:
    """Reset the number's start counter; whether there was one."""
    had = svc.store.flag("rate", number)
    svc.store.clear_flag("rate", number)
    record(svc, caller, "clear_rate_limit", number, f"{had[0]} starts counted" if had else "nothing counted", via)
    return had is not None
