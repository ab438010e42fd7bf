"""Users' own methods (authenticator apps and OATH tokens): placeholders until enrolled."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.models import Verification
    from gateway.services import Services


def totp_enrolled(svc: "Services", user_id: str | None) -> bool:
    """Whether the user has an authenticator app or a hardware token."""
    return False


def totp_verify(svc: "Services", v: "Verification | None", code: str) -> bool:
    """Whether a TOTP code is right for the verification's user (and not replayed)."""
    return False


def enrol_totp(svc: "Services", user_id: str) -> dict[str, str]:
    """Enrol an authenticator app for a user: the provisioning URI and the secret."""
    from gateway.errors import GatewayError

    raise GatewayError("Authenticator enrolment is not available yet.")


def reset_user(svc: "Services", user_id: str) -> None:
    """Remove every method the gateway keeps for a user."""
