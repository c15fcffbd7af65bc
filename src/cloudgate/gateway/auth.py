"""Who is calling: the gateway key, read from the headers Claude Code and the SDKs use.

Keys arrive as `x-api-key` (ANTHROPIC_API_KEY), `Authorization: Bearer` (ANTHROPIC_AUTH_TOKEN,
AWS_BEARER_TOKEN_BEDROCK), or a configurable header such as `Proxy-Authorization` for clients
whose `Authorization` carries their own cloud token. Comparisons take constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cloudgate.config.settings import GatewaySettings
from cloudgate.gateway.types import Scope


@dataclass(slots=True, frozen=True)
class Caller:
    """An authenticated caller. `key_id` names the key without revealing it."""

    key_id: str


ANONYMOUS = Caller(key_id="anonymous")


class AuthError(Exception):
    """Missing or wrong gateway key; the message says which."""


def key_id(key: str) -> str:
    """A short, stable, non-secret name for a key (for logs and records)."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


class KeyAuthenticator:
    """Checks the gateway key of each request against the configured keys."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._keys = [(k.encode(), key_id(k)) for k in settings.keys]
        self.keyless = not self._keys
        if self.keyless and not (settings.allow_keyless and settings.is_loopback):
            raise ValueError(
                "no gateway keys are configured: set gateway.keys (or CLOUDGATE_KEYS), "
                "or gateway.allow_keyless with a loopback host for local use"
            )
        extra = settings.auth_header
        self._extra_header = extra.lower().encode("latin-1") if extra else None

    def authenticate(self, scope: Scope) -> Caller:
        """The caller behind this request, or `AuthError`."""
        if self.keyless:
            return ANONYMOUS
        candidates: list[bytes] = []
        extra = self._extra_header
        for name, value in scope["headers"]:
            if name in (b"x-api-key", b"authorization") or (extra is not None and name == extra):
                candidates.append(_strip_bearer(value))
        if not candidates:
            raise AuthError("missing gateway key: send it as x-api-key or Authorization: Bearer")
        for candidate in candidates:
            found: str | None = None
            for key, kid in self._keys:
                if hmac.compare_digest(candidate, key):
                    found = kid
            if found is not None:
                return Caller(key_id=found)
        raise AuthError("invalid gateway key")


def _strip_bearer(value: bytes) -> bytes:
    value = value.strip()
    if value[:7].lower() == b"bearer ":
        return value[7:].strip()
    return value
