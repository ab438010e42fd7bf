"""Users' own methods: authenticator apps (TOTP), recovery codes and imported OATH hardware tokens."""
from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyotp

from gateway import abuse, codes, oath
from gateway.errors import (
    InvalidRequest, NoActiveMethod, NoPendingAuthenticator, NotFound, ProofRequired,
)
from gateway.models import iso
from gateway.schemas import RECOVERY_CODE, USER_ID, ConfirmRequest
from gateway.user_store import Proof

if TYPE_CHECKING:
    from gateway.models import Verification
    from gateway.services import Services

log = logging.getLogger(__name__)
audit_log = logging.getLogger("gateway.audit")
CIPHER = "totp-cipher"
RECOVERY_HMAC = "recovery-hmac"
RECOVERY_CODES = 10
# NIST SP 800-63B §6.1.2.1: binding a new authenticator needs the subscriber to authenticate
# first; the contract takes a verification of the user approved within the last 5 minutes.
PROOF_MAX_AGE = 300
_RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32: no 0/O or 1/l to misread


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


def totp_verify(svc: "Services", v: "Verification | None", code: str, *, now: float) -> bool:
    """Whether a TOTP code is right for the verification's user (and not replayed) at `now` (Redis's time)."""
    if v is None or not v.user_id:
        return False
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
        step = oath.matched_step(secret, candidate.params, code, now)
        # The step is consumed atomically: a code replayed (same or earlier step) is refused,
        # even by another gateway instance checking at the same moment.
        if step is not None and svc.store.use_step(v.user_id, candidate.serial, candidate.secret_encrypted, step):
            return True
    return False


@dataclass(frozen=True)
class Enrolment:
    """A pending authenticator as shown once: its secret, the URI to scan, when it expires."""

    secret: str
    otpauth_uri: str
    expires_at: float

    def to_json(self) -> dict[str, object]:
        """The answer of POST /v1/users/<id>/totp."""
        return {"secret": self.secret, "otpauth_uri": self.otpauth_uri, "status": "pending",
                "expires_at": iso(self.expires_at)}


@dataclass(frozen=True)
class Confirmation:
    """What a confirmation did: activated (with the new recovery codes), or a wrong code."""

    status: str  # active | pending (wrong code) | denied (too many wrong codes: enrol again)
    recovery_codes: list[str]
    remaining_attempts: int = 0
    how: str = ""  # for an activation: first | proof | admin

    def to_json(self) -> dict[str, object]:
        """The answer of POST /v1/users/<id>/totp/confirm."""
        if self.status == "active":
            return {"status": "active", "recovery_codes": self.recovery_codes}
        return {"status": self.status, "valid": False, "remaining_attempts": self.remaining_attempts}


def enrol_totp(svc: "Services", user_id: str) -> Enrolment:
    """Create a pending authenticator app for a user; it approves nothing until confirmed."""
    user_id = valid_user_id(user_id)
    secret = pyotp.random_base32()
    expires = svc.store.enrol_pending(user_id, codes.encrypt(svc.key(CIPHER), secret), svc.settings.totp_enrolment_ttl)
    uri = oath.provisioning_uri(secret, user_id, svc.settings.organization_name)
    log.info("pending authenticator for user %s until %s", user_id, iso(expires))
    return Enrolment(secret, uri, expires)


def confirm_totp(
    svc: "Services", user_id: str, req: ConfirmRequest, admin: bool, *, now: float | None = None
) -> Confirmation:
    """Activate the user's pending authenticator with its first code (replacing one only with proof)."""
    user_id = valid_user_id(user_id)
    found = svc.store.user_methods(user_id)
    if not found.known:
        raise NotFound(f"No user {user_id} is known to the gateway.")
    pending = found.pending_secret_encrypted
    secret = codes.decrypt(svc.keys(CIPHER), pending) if pending else None
    if pending is None or secret is None:
        raise NoPendingAuthenticator(f"User {user_id} has no pending authenticator; enrol one first.")
    # Every confirmation code counts toward the user's check allowance, like a verification's;
    # the code is matched at Redis's time, like a check's (now: a test's own time).
    redis_now = abuse.admit_confirmation(svc, user_id)
    step = oath.matched_step(secret, oath.Params(), req.code, redis_now if now is None else now)
    recovery = new_recovery_codes()
    outcome = svc.store.confirm_app(
        user_id, pending, step, svc.settings.max_check_attempts,
        Proof(req.verification_id, admin, PROOF_MAX_AGE), [recovery_digests(svc, user_id, c)[0] for c in recovery],
    )
    _refused(outcome.kind, user_id)
    if outcome.kind in ("invalid", "denied"):
        log.info("wrong confirmation code for user %s (%s)", user_id, outcome.kind)
        return Confirmation("pending" if outcome.kind == "invalid" else "denied", [], int(outcome.value))
    _audited(outcome.kind, user_id, outcome.value, req.verification_id)
    if svc.settings.authenticator_notice_sms:
        from gateway import jobs

        jobs.enqueue_authenticator_notice(svc, user_id, req.verification_id if outcome.value == "proof" else None)
    return Confirmation("active", recovery, how=outcome.value)


def regenerate_recovery_codes(
    svc: "Services", user_id: str, verification_id: str | None, admin: bool
) -> tuple[list[str], str]:
    """New recovery codes for a user with an active method (the old set stops working); (codes, how: proof | admin)."""
    user_id = valid_user_id(user_id)
    recovery = new_recovery_codes()
    outcome = svc.store.regenerate_recovery(
        user_id, Proof(verification_id, admin, PROOF_MAX_AGE), [recovery_digests(svc, user_id, c)[0] for c in recovery]
    )
    _refused(outcome.kind, user_id)
    if outcome.kind == "no_method":
        raise NoActiveMethod(f"User {user_id} has no active authenticator or token.")
    _audited("recovery_codes_regenerated", user_id, outcome.value, verification_id)
    return recovery, outcome.value


def _refused(kind: str, user_id: str) -> None:
    """Raise the API error for a refused change to a user's methods."""
    if kind == "not_found":
        raise NotFound(f"No user {user_id} is known to the gateway.")
    if kind in ("no_pending", "changed"):
        raise NoPendingAuthenticator(f"User {user_id} has no pending authenticator (or it expired); enrol again.")
    if kind == "proof_required":
        raise ProofRequired(
            f"User {user_id} has an active method: pass 'verification_id', a verification of this user "
            f"approved within the last {PROOF_MAX_AGE // 60} minutes."
        )


def _audited(event: str, user_id: str, how: str, verification_id: str | None) -> None:
    """Log the change as the stream recorded it (never a secret or a code)."""
    audit_log.info(json.dumps({"event": event, "user_id": user_id, "how": how,
                               "proof_verification_id": verification_id if how == "proof" else ""}))


def new_recovery_codes() -> list[str]:
    """RECOVERY_CODES fresh codes, xxxxx-xxxxx from base32 (50 bits each), made with secrets."""
    raw = ("".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10)) for _ in range(RECOVERY_CODES))
    return [f"{c[:5]}-{c[5:]}" for c in raw]


def recovery_digests(svc: "Services", user_id: str, code: str) -> list[str]:
    """The keyed hashes a recovery code may be stored as (bound to the user), one per server key,
    the current key's first; [] when the code is not shaped like one."""
    if not RECOVERY_CODE.match(code):
        return []
    normal = code.replace("-", "").lower()
    return [codes.digest(key, user_id, normal) for key in svc.keys(RECOVERY_HMAC)]


@dataclass(frozen=True)
class NoticeTarget:
    """Where to tell a user about a change to their sign-in: the number on file and its language."""

    to: str
    locale: str


def number_on_file(svc: "Services", user_id: str, verification_id: str | None) -> NoticeTarget | None:
    """The user's number: of the proving verification, else of their newest approved one still audited."""
    from gateway import audit

    v = svc.store.load(verification_id) if verification_id else None
    if v is None or v.user_id != user_id:
        page = audit.search(svc, audit.Filters(user_id=user_id, status="approved", limit=1))
        if not page.records:
            return None
        found = page.records[0]
        v = svc.store.load(str(found["verification_id"]))
        if v is None:
            return NoticeTarget(str(found["phone_number"]), "en")
    return NoticeTarget(v.to, v.locale)


def has_recovery_codes(svc: "Services", user_id: str | None) -> bool:
    """Whether the user has unused recovery codes."""
    if not user_id or not USER_ID.match(user_id):
        return False
    return svc.store.user_methods(user_id).recovery_codes > 0


def reset_user(svc: "Services", user_id: str) -> int:
    """Remove every method the gateway keeps for a user (audited); how many went."""
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
