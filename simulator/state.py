"""Shared simulator state behind one lock: handsets, behaviours, rules, resources, opt-outs, records."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from . import numbering
from .config import SimulatorConfig
from .models import (Behaviour, CallRecord, Handset, MessageRecord, RestRequestRecord, Rule, WebhookRecord,
                     default_rules, utcnow)


class SimState:
    """All mutable state; every access goes through `lock` (an RLock shared with `cond`)."""

    def __init__(self, config: SimulatorConfig) -> None:
        """Empty state with the default rules."""
        self.config = config
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.generation = 0
        self.closed = False
        self._init()

    def _init(self) -> None:
        """(Re)initialise every store; caller holds the lock or is the constructor."""
        self.handsets: dict[str, Handset] = {}
        self.behaviours: dict[str, Behaviour] = {}
        self.rules: list[Rule] = default_rules()
        self.messages: dict[str, MessageRecord] = {}
        self.calls: dict[str, CallRecord] = {}
        self.optouts: set[tuple[str, str]] = set()
        self.requests: list[RestRequestRecord] = []
        self.webhooks: list[WebhookRecord] = []
        self.request_counter = 0
        self.webhook_counter = 0

    def reset(self) -> None:
        """Forget everything and cancel running jobs (they notice the generation change)."""
        with self.cond:
            self.generation += 1
            self._init()
            self.cond.notify_all()

    def close(self) -> None:
        """Mark the simulator closed and wake every waiter."""
        with self.cond:
            self.closed = True
            self.generation += 1
            self.cond.notify_all()

    def alive(self, generation: int) -> bool:
        """True while no reset/close happened since `generation` was captured."""
        return not self.closed and self.generation == generation

    def sleep(self, seconds: float, generation: int) -> bool:
        """Wait up to seconds; return False early if the state was reset or closed."""
        if seconds <= 0:
            return self.alive(generation)
        deadline = time.monotonic() + seconds
        with self.cond:
            while self.alive(generation):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return True
                self.cond.wait(remaining)
        return False

    def wait_until(self, predicate: Callable[[], bool], seconds: float, generation: int) -> bool:
        """Wait (holding the condition) until predicate() or timeout; False when reset/closed."""
        deadline = time.monotonic() + max(0.0, seconds)
        with self.cond:
            while self.alive(generation):
                if predicate():
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return True
                self.cond.wait(remaining)
        return False

    def notify(self) -> None:
        """Wake every waiter (after keys were pressed or a call was ended)."""
        with self.cond:
            self.cond.notify_all()

    # -- handsets and behaviours -------------------------------------------------
    def handset(self, number: str) -> Handset:
        """The handset for a number, created on first use."""
        with self.lock:
            handset = self.handsets.get(number)
            if handset is None:
                handset = Handset(number=number, number_type=numbering.number_type(number),
                                  country=numbering.country(number))
                self.handsets[number] = handset
            return handset

    def touch(self, number: str) -> Handset:
        """Get/create a handset and mark it as recently active."""
        with self.lock:
            handset = self.handset(number)
            handset.last_activity = utcnow()
            return handset

    def behaviour_for(self, number: str) -> tuple[Behaviour, str]:
        """Effective behaviour and its source: 'number', 'rule:<i>' or 'default'."""
        with self.lock:
            if number in self.behaviours:
                return self.behaviours[number], "number"
            kind = numbering.number_type(number)
            for index, rule in enumerate(self.rules):
                if rule.matches(number, kind):
                    return rule.behaviour, f"rule:{index}"
            return Behaviour(), "default"

    # -- opt-outs --------------------------------------------------------------------
    def is_blocked(self, sender: str | None, handset: str, via_service: bool) -> bool:
        """True when the handset opted out of this sender (or, for a service, of any owned number)."""
        with self.lock:
            if via_service:
                return any((number, handset) in self.optouts for number in self.config.numbers)
            return sender is not None and (sender, handset) in self.optouts

    # -- records ---------------------------------------------------------------------
    def add_request(self, **fields: Any) -> RestRequestRecord:
        """Append a REST request record (bounded)."""
        with self.lock:
            record = RestRequestRecord(index=self.request_counter, **fields)
            self.request_counter += 1
            self.requests.append(record)
            del self.requests[:-self.config.max_records]
            return record

    def add_webhook(self, **fields: Any) -> WebhookRecord:
        """Append a webhook record (bounded) and return it for later updates."""
        with self.lock:
            record = WebhookRecord(index=self.webhook_counter, **fields)
            self.webhook_counter += 1
            self.webhooks.append(record)
            del self.webhooks[:-self.config.max_records]
            return record
