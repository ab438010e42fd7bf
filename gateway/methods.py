"""Users' own methods: authenticator apps (TOTP) and imported OATH hardware tokens."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyotp

from gateway import codes, oath
from gateway.errors import InvalidRequest
from gateway.schemas import USER_ID

if TYPE_CHECKING:
    from gateway.models import Verification
    from gateway.services import Services

log = logging.getLogger(__name__)
CIPHER = "totp-cipher"


class TokenConflict(Exception):
    """An import or assignment that would overwrite or take something it should not."""

    def __init__(self, message: str, serial: str) -> None:
        super().__init__(message)
        self.serial = serial


@dataclass(frozen=True)
class Candidate:
    """One method a code may come from: the app (serial None) or a token."""

    serial: str | None
    secret_encrypted: str
    params: oath.Params


def valid_user_id(user_id: str) -> str:
    """The user id when it has the API's shape, else InvalidRequest."""
    if not isinstance(user_id, str) or not USER_ID.match(user_id):
        raise InvalidRequest("A user id is 1 to 128 letters, digits and . _ @ + - characters.")
    return user_id


def totp_enrolled(svc: "Services", user_id: str | None) -> bool:
    """Whether the user has an authenticator app or a hardware token."""
    if not user_id or not USER_ID.match(user_id):
        return False
    return svc.store.user_methods(user_id).enrolled


def totp_verify(svc: "Services", v: "Verification | None", code: str, *, now: float | None = None) -> bool:
    """Whether a TOTP code is right for the verification's user (and not replayed)."""
    if v is None or not v.user_id:
        return False
    at = time.time() if now is None else now
    found = svc.store.user_methods(v.user_id)
    candidates = [Candidate(s.serial, s.secret_encrypted, s.params) for s in found.tokens]
    if found.app_secret_encrypted:
        candidates.insert(0, Candidate(None, found.app_secret_encrypted, oath.Params()))
    keys = svc.keys(CIPHER)
    for candidate in candidates:
        secret = codes.decrypt(keys, candidate.secret_encrypted)
        if secret is None:
            # Only a key changed without keeping the old one in GATEWAY_SECRET_KEY_PREVIOUS does
            # this; the method must be enrolled again.
            log.warning("cannot decrypt a TOTP secret of user %s (token %s)", v.user_id, candidate.serial or "app")
            continue
        step = oath.matched_step(secret, candidate.params, code, at)
        # The step is consumed atomically: a code replayed (same or earlier step) is refused,
        # even by another gateway instance checking at the same moment.
        if step is not None and svc.store.use_step(v.user_id, candidate.serial, candidate.secret_encrypted, step):
            return True
    return False


def enrol_totp(svc: "Services", user_id: str) -> dict[str, str]:
    """Enrol an authenticator app for a user: the provisioning URI and the secret."""
    user_id = valid_user_id(user_id)
    secret = pyotp.random_base32()
    svc.store.enrol_app(user_id, codes.encrypt(svc.key(CIPHER), secret))
    uri = oath.provisioning_uri(secret, user_id, svc.settings.organization_name)
    return {"otpauth_uri": uri, "secret": secret}


def reset_user(svc: "Services", user_id: str) -> int:
    """Remove every method the gateway keeps for a user; how many went."""
    removed = svc.store.reset_user(valid_user_id(user_id))
    log.info("reset user %s: %d method(s) removed", user_id, removed)
    return removed


def import_tokens(svc: "Services", tokens: list[oath.Token], replace: bool = False) -> int:
    """Store every token (secrets encrypted) and its assignment, all or none; the count stored."""
    key = svc.key(CIPHER)
    stored = [
        oath.StoredToken(t.serial, codes.encrypt(key, t.secret), t.params, t.user_id, None) for t in tokens
    ]
    outcome = svc.store.import_tokens(stored, replace)
    if outcome.kind == "exists":
        source = next((t.source for t in tokens if t.serial == outcome.value), "")
        raise TokenConflict(
            f"{source}: token {outcome.value} is already imported; nothing was imported "
            "(use --replace to overwrite existing tokens)", outcome.value,
        )
    return int(outcome.value)


def assign_token(svc: "Services", serial: str, user_id: str | None) -> str:
    """Assign a token to a user (None: unassign it); what happened, for the operator."""
    if user_id is not None:
        valid_user_id(user_id)
    outcome = svc.store.assign_token(serial, user_id)
    if outcome.kind == "not_found":
        raise TokenConflict(f"no token {serial} has been imported", serial)
    if outcome.kind == "assigned_elsewhere":
        raise TokenConflict(
            f"token {serial} is assigned to {outcome.value}; unassign it (or reset that user) first", serial
        )
    if outcome.kind == "unassigned":
        return f"token {serial} unassigned from {outcome.value}"
    if outcome.kind == "unchanged":
        return f"token {serial} is already {'assigned to ' + outcome.value if outcome.value else 'unassigned'}"
    return f"token {serial} assigned to {outcome.value}"
