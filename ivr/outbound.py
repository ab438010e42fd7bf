"""Outbound calls (placeholder until the IVR flows land)."""
from __future__ import annotations

from gateway.carrier import Action, CarrierError
from gateway.models import Verification
from gateway.services import Services


def place_call(svc: Services, v: Verification, attempt: int, code: str) -> str:
    """Place a verification call."""
    raise CarrierError(None, None, "voice calls are not available yet", Action.FALLBACK)
