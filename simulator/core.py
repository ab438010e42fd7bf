"""The Simulator object: config, state, webhook sender, worker pools and the SMS/voice engines."""
from __future__ import annotations

from typing import Callable

from .config import SimulatorConfig
from .models import Behaviour, Rule
from .state import SimState
from .webhooks import WebhookSender
from .workers import WorkerPool


class Simulator:
    """Holds everything one simulated carrier needs; the Flask app keeps it in app.extensions."""

    def __init__(self, config: SimulatorConfig) -> None:
        """Create state, pools and engines (threads start lazily)."""
        from .sms import SmsEngine
        from .voice import VoiceEngine

        self.config = config
        self.state = SimState(config)
        self.webhooks = WebhookSender(config, self.state)
        self.jobs = WorkerPool("sim-job", config.job_workers)
        self.call_pool = WorkerPool("sim-call", config.call_workers)
        self.sms = SmsEngine(self)
        self.voice = VoiceEngine(self)

    def submit(self, fn: Callable[[int], None], pool: WorkerPool | None = None) -> None:
        """Run fn(generation) in the background; it should stop when the generation changes."""
        generation = self.state.generation
        target = pool or self.jobs

        def job() -> None:
            if self.state.alive(generation):
                fn(generation)

        target.submit(job)

    def set_behaviour(self, number: str, behaviour: Behaviour | None) -> None:
        """Set (or with None, clear) the explicit behaviour of one handset number."""
        if behaviour is not None:
            behaviour.validate()
        with self.state.lock:
            if behaviour is None:
                self.state.behaviours.pop(number, None)
            else:
                self.state.behaviours[number] = behaviour

    def set_rules(self, rules: list[Rule]) -> None:
        """Replace the rule list (first match wins; explicit per-number behaviours beat rules)."""
        for rule in rules:
            rule.behaviour.validate()
        with self.state.lock:
            self.state.rules = list(rules)

    def reset(self) -> None:
        """Forget all state and stop background jobs at their next check."""
        self.state.reset()

    def shutdown(self) -> None:
        """Stop background work (idempotent)."""
        self.state.close()
        self.jobs.close()
        self.call_pool.close()
