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
