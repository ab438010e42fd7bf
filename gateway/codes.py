"""One-time codes: generated with secrets, kept only as keyed hashes or encrypted."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# Marks the compact format; Fernet tokens (the format before it) start with "gAAAAA", and
# urlsafe base64 has no ".".
COMPACT = "1."
NONCE_BYTES = 12
LABEL = b"gateway-secret-v1"  # associated data: a value opens only as one of these secrets


def generate(length: int) -> str:
    """A uniformly random numeric code of the given length."""
    return "".join(secrets.choice("0123456789") for _ in range(length))


def digest(key: bytes, verification_id: str, code: str) -> str:
    """The keyed hash stored in place of a code, bound to its verification (hex; also recovery codes)."""
    return hmac.new(key, f"{verification_id}:{code}".encode(), hashlib.sha256).hexdigest()


def code_digest(key: bytes, verification_id: str, code: str) -> str:
    """digest() in urlsafe base64 without padding: 43 characters instead of 64 in every pending
    verification's hash (checks also try digest(), the form stored before)."""
    return check_digests(key, verification_id, code)[0]


def check_digests(key: bytes, verification_id: str, code: str) -> tuple[str, str]:
    """The two forms a stored code may have, code_digest() and digest(), from one HMAC."""
    mac = hmac.new(key, f"{verification_id}:{code}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode(), mac.hex()


def derive_key(secret: str, purpose: str) -> bytes:
    """A sub-key for one purpose, so the HMAC and the cipher never share a key."""
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()


@lru_cache(maxsize=16)
def _aead(key: bytes) -> AESGCM:
    # A sub-key of its own: the same 32 bytes never key both Fernet (still read) and AES-GCM.
    return AESGCM(hmac.new(key, b"aes-256-gcm", hashlib.sha256).digest())


def encrypt(key: bytes, plaintext: str) -> str:
    """Authenticated encryption for the codes (and secrets) a later flow must say again.

    AES-256-GCM with a random 12-byte nonce, urlsafe base64 without padding: 48 characters for
    a 6-digit code, where a Fernet token took 100 and pushed the whole verification hash out of
    Redis's compact encoding (hash-max-listpack-value, 64 bytes) into one several times larger.
    """
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = _aead(key).encrypt(nonce, plaintext.encode(), LABEL)
    return COMPACT + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()


def decrypt(keys: Sequence[bytes], token: str) -> str | None:
    """The plaintext under any of the keys (current, then previous), or None when none fits.

    Fernet tokens written before the compact format still decrypt, so an upgrade in flight
    keeps every stored code and secret.
    """
    if not token.startswith(COMPACT):
        try:
            return MultiFernet([Fernet(base64.urlsafe_b64encode(k)) for k in keys]).decrypt(token.encode()).decode()
        except (InvalidToken, ValueError):
            return None
    text = token[len(COMPACT):]
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    for key in keys:
        try:
            return _aead(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], LABEL).decode()
        except (InvalidTag, ValueError):
            continue
    return None
