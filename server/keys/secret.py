"""API key secrets: `tw_<handle>_<secret>`, stored only as a SHA-256 hash.

    tw_3f9a1c0b7d2e_Vb0C…(43 characters, 256 random bits)
    └──── prefix ──┘      shown to identify the key; the handle finds its row

The handle is random and public: it lets the store fetch one row by an index
without any secret-dependent lookup, and the hash of the whole key is then
compared in constant time. A fast hash is right here: the secret has 256
bits of entropy, so there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

SCHEME = "tw"
_HANDLE_BYTES = 6  # 12 hex characters
_SECRET_BYTES = 32  # 43 URL-safe characters
_KEY = re.compile(rf"{SCHEME}_([0-9a-f]{{{_HANDLE_BYTES * 2}}})_[A-Za-z0-9_-]{{43}}")
MAX_LENGTH = 256  # longer bearer tokens are refused before any parsing


@dataclass(frozen=True, slots=True)
class NewSecret:
    """A freshly generated key: the secret (shown once) and what is stored."""

    secret: str = ""
    handle: str = ""
    hash: str = ""

    @property
    def prefix(self) -> str:
        return prefix_of(self.handle)


def generate() -> NewSecret:
    handle = secrets.token_hex(_HANDLE_BYTES)
    secret = f"{SCHEME}_{handle}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    return NewSecret(secret, handle, digest(secret))


def prefix_of(handle: str) -> str:
    return f"{SCHEME}_{handle}"


def handle_of(secret: str) -> str | None:
    """The handle of a well-formed key, else None (garbage is refused without a lookup)."""
    if len(secret) > MAX_LENGTH:
        return None
    match = _KEY.fullmatch(secret)
    return match.group(1) if match else None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented key with a stored hash."""
    return hmac.compare_digest(digest(secret), stored_hash)
