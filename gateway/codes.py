"""One-time codes: generated with secrets, kept only as keyed hashes or encrypted."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


def generate(length: int) -> str:
    """A uniformly random numeric code of the given length."""
    return "".join(secrets.choice("0123456789") for _ in range(length))


def digest(key: bytes, verification_id: str, code: str) -> str:
    """The keyed hash stored in place of a code, bound to its verification."""
    return hmac.new(key, f"{verification_id}:{code}".encode(), hashlib.sha256).hexdigest()


def derive_key(secret: str, purpose: str) -> bytes:
    """A sub-key for one purpose, so the HMAC and the cipher never share a key."""
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()


def encrypt(key: bytes, plaintext: str) -> str:
    """Authenticated encryption for the codes a later flow must say again."""
    return Fernet(base64.urlsafe_b64encode(key)).encrypt(plaintext.encode()).decode()


def decrypt(keys: Sequence[bytes], token: str) -> str | None:
    """The plaintext under any of the keys (current, then previous), or None when none fits."""
    try:
        return MultiFernet([Fernet(base64.urlsafe_b64encode(k)) for k in keys]).decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        return None
