"""OATH TOTP (RFC 6238) as the gateway uses it: secrets, parameters and step matching; no I/O."""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from enum import Enum

import pyotp

# NIST SP 800-63B-4 (and pyotp itself) refuse shorter shared secrets.
MIN_SECRET_BYTES = 14
DIGITS = (6, 7, 8)
MAX_PERIOD = 3600
WINDOW = 1  # steps either side of now: covers a code typed at a step boundary and mild clock skew
APP_DIGITS, APP_PERIOD = 6, 30
# \A…\Z: $ would also match before a final newline.
SERIAL = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}\Z")


class Algorithm(str, Enum):
    SHA1 = "sha1"
    SHA256 = "sha256"
    SHA512 = "sha512"


class SecretError(ValueError):
    """A shared secret that cannot be used (not base32, or too short)."""


@dataclass(frozen=True)
class Params:
    """How a TOTP generator turns a secret and a time into a code."""

    digits: int = APP_DIGITS
    period: int = APP_PERIOD
    algorithm: Algorithm = Algorithm.SHA1
    drift: int = 0  # steps the device's clock is known to be off (PSKC TimeDrift)


@dataclass(frozen=True)
class Token:
    """A hardware token as read from an import file; the secret is base32, in memory only."""

    serial: str
    secret: str
    params: Params
    user_id: str | None
    source: str  # where it came from in the file ("line 3", "key 12345"), for messages


@dataclass(frozen=True)
class StoredToken:
    """A hardware token as kept in Redis: the secret encrypted."""

    serial: str
    secret_encrypted: str
    params: Params
    user_id: str | None
    last_step: int | None


@dataclass(frozen=True)
class UserMethods:
    """What the gateway keeps for one user: the app secret (encrypted) and assigned tokens."""

    user_id: str
    app_secret_encrypted: str | None
    app_last_step: int | None
    tokens: tuple[StoredToken, ...]
    known: bool = False  # the gateway keeps anything for the user (even only a pending enrolment)
    pending_secret_encrypted: str | None = None  # an enrolment awaiting its first code; approves nothing
    pending_expires: float = 0.0
    recovery_codes: int = 0  # unused recovery codes left

    @property
    def enrolled(self) -> bool:
        """True when the user has an authenticator app or at least one token."""
        return bool(self.app_secret_encrypted or self.tokens)


def normalise_secret(raw: str) -> str:
    """A base32 secret in canonical form (upper case, no spaces or padding); SecretError if unusable."""
    secret = re.sub(r"[\s-]", "", raw).upper().rstrip("=")
    if not secret or not re.fullmatch(r"[A-Z2-7]+", secret):
        raise SecretError("the secret is not base32 (letters A-Z and digits 2-7)")
    try:
        decoded = base64.b32decode(secret + "=" * (-len(secret) % 8))
    except (binascii.Error, ValueError):
        raise SecretError("the secret is not valid base32 (wrong length)") from None
    if len(decoded) < MIN_SECRET_BYTES:
        raise SecretError(f"the secret has {len(decoded) * 8} bits; at least {MIN_SECRET_BYTES * 8} are needed")
    return secret


def secret_from_bytes(raw: bytes) -> str:
    """The base32 form of a binary secret (as PSKC carries it); SecretError if too short."""
    return normalise_secret(base64.b32encode(raw).decode())


def generator(secret: str, params: Params) -> pyotp.TOTP:
    """A pyotp generator for a secret with the given parameters."""
    return pyotp.TOTP(
        secret, digits=params.digits, interval=params.period, digest=getattr(hashlib, params.algorithm.value)
    )


def step_at(now: float, params: Params) -> int:
    """The time step (RFC 6238 T) the device shows at the given time."""
    return int(now // params.period) + params.drift


def matched_step(secret: str, params: Params, code: str, now: float, window: int = WINDOW) -> int | None:
    """The latest time step within ±window of now whose code is the given one, else None."""
    if len(code) != params.digits:
        return None
    totp = generator(secret, params)
    current = step_at(now, params)
    # Compare every step of the window (no early exit) so timing does not tell which one matched.
    hits = [
        step for step in range(current - window, current + window + 1)
        if pyotp.utils.strings_equal(code, totp.generate_otp(step))
    ]
    return max(hits) if hits else None


def provisioning_uri(secret: str, user_id: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app scans (Key URI Format)."""
    return generator(secret, Params()).provisioning_uri(name=user_id, issuer_name=issuer)
