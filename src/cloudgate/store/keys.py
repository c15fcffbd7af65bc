"""API key material: generating keys and hashing them for storage and lookup."""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass

KEY_PREFIX = "cg-"
KEY_RANDOM_CHARS = 40  # base62: ~238 bits of entropy
VISIBLE_PREFIX_CHARS = 10  # "cg-" and 7 random characters: enough to tell keys apart in a list
_BASE62 = string.digits + string.ascii_letters


@dataclass(slots=True, frozen=True)
class NewKey:
    """A freshly generated key. `plaintext` is shown to its owner once and never stored."""

    plaintext: str
    prefix: str
    key_hash: str

    def __repr__(self) -> str:
        # Keeps the secret out of logs and tracebacks that print the object.
        return f"NewKey(prefix={self.prefix!r}, key_hash={self.key_hash!r})"


def generate_key() -> NewKey:
    """A new random key (`cg-` + 40 base62 characters), its visible prefix and its hash."""
    plaintext = KEY_PREFIX + "".join(secrets.choice(_BASE62) for _ in range(KEY_RANDOM_CHARS))
    return NewKey(plaintext=plaintext, prefix=key_prefix(plaintext), key_hash=hash_key(plaintext))


def key_prefix(plaintext: str) -> str:
    """The first characters of a key, safe to show and log."""
    return plaintext[:VISIBLE_PREFIX_CHARS]


def hash_key(plaintext: str) -> str:
    """The SHA-256 hex digest under which a key is stored and looked up.

    A fast unsalted hash is right here, unlike for passwords: the keys are 238 random bits, so
    nothing can be guessed or precomputed however fast each guess is, and the gateway hashes
    the presented key on every request (a slow KDF would cost milliseconds each time). No salt
    also means the hash is a direct index lookup.
    """
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()
