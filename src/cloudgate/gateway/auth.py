"""Who is calling: the gateway key, read from the headers Claude Code and the SDKs use.

Keys arrive as `x-api-key` (ANTHROPIC_API_KEY), `Authorization: Bearer` (ANTHROPIC_AUTH_TOKEN,
AWS_BEARER_TOKEN_BEDROCK), or a configurable header such as `Proxy-Authorization` for clients
whose `Authorization` carries their own cloud token. Comparisons take constant time.

Bedrock-format callers may also sign with AWS SigV4 (boto3, `AnthropicBedrock` with AWS keys):
the secret access key is a gateway key, and the access key id is either that key's id
(`key-...`) or anything at all.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cloudgate.config.settings import GatewaySettings
from cloudgate.gateway.types import Scope
from cloudgate.protocol.sigv4 import SigV4Error, verify_sigv4


@dataclass(slots=True, frozen=True)
class Caller:
    """An authenticated caller. `key_id` names the key without revealing it."""

    key_id: str


ANONYMOUS = Caller(key_id="anonymous")


class AuthError(Exception):
    """Missing or wrong gateway key; the message says which.

    `aws_code` is the AWS exception name a SigV4 failure maps to (InvalidSignatureException...).
    """

    def __init__(self, message: str, aws_code: str | None = None) -> None:
        super().__init__(message)
        self.aws_code = aws_code


def key_id(key: str) -> str:
    """A short, stable, non-secret name for a key (for logs and records)."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


class KeyAuthenticator:
    """Checks the gateway key of each request against the configured keys."""

    def __init__(
        self, settings: GatewaySettings, *, admin_key: str | None = None, store_keys: bool = False
    ) -> None:
        self._keys = [(k.encode(), key_id(k)) for k in settings.keys]
        if admin_key:
            self._keys.append((admin_key.encode(), "admin"))
        # Keyless only when asked for: with keys in the store, an empty list here is normal.
        self.keyless = settings.allow_keyless and not self._keys
        if settings.allow_keyless and not settings.is_loopback:
            raise ValueError("gateway.allow_keyless is only allowed with a loopback host")
        if not self._keys and not store_keys and not self.keyless:
            raise ValueError(
                "no gateway keys are configured: set gateway.keys (or CLOUDGATE_KEYS), "
                "or gateway.allow_keyless with a loopback host for local use"
            )
        extra = settings.auth_header
        self._extra_header = extra.lower().encode("latin-1") if extra else None

    def authenticate(self, scope: Scope) -> Caller:
        """The caller behind this request, or `AuthError`."""
        caller = self.match(scope)
        if caller is not None:
            return caller
        if not _candidates(scope, self._extra_header):
            raise AuthError("missing gateway key: send it as x-api-key or Authorization: Bearer")
        raise AuthError("invalid gateway key")

    def match(self, scope: Scope) -> Caller | None:
        """The caller if the request carries a configured key (or none is needed), else None.

        Raises nothing: with keys in the store, a key not configured here is the usual case.
        """
        if self.keyless:
            return ANONYMOUS
        for candidate in _candidates(scope, self._extra_header):
            found: str | None = None
            for key, kid in self._keys:  # every key compared, in constant time
                if hmac.compare_digest(candidate, key):
                    found = kid
            if found is not None:
                return Caller(key_id=found)
        return None

    def authenticate_sigv4(self, scope: Scope, body: bytes) -> Caller:
        """The caller behind a SigV4-signed request whose secret is a gateway key."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        args = (scope["method"], raw_path.decode("latin-1"), scope.get("query_string", b"").decode("latin-1"))
        by_id = {kid: key.decode() for key, kid in self._keys}
        try:
            identity = verify_sigv4(*args, headers, body, secret_for=by_id.get)
            return Caller(key_id=identity.access_key_id)
        except SigV4Error as exc:
            if exc.code != "UnrecognizedClientException":
                raise AuthError(exc.message, exc.code) from None
        for key, kid in self._keys:  # an access key id of the caller's choosing
            try:
                verify_sigv4(*args, headers, body, secret_for=[key.decode()])
            except SigV4Error as exc:
                last = exc
                continue
            return Caller(key_id=kid)
        if not self._keys:
            raise AuthError(
                "this gateway has no keys to check a signature against", "UnrecognizedClientException"
            )
        raise AuthError(last.message, last.code)


def presented_keys(scope: Scope, extra_header: str | None) -> list[str]:
    """The key candidates a request carries, in the headers `authenticate` reads."""
    extra = extra_header.lower().encode("latin-1") if extra_header else None
    return [key.decode("latin-1") for key in _candidates(scope, extra)]


def _candidates(scope: Scope, extra: bytes | None) -> list[bytes]:
    """Values of `x-api-key`, `Authorization` (without `Bearer `) and the extra header."""
    found: list[bytes] = []
    for name, value in scope["headers"]:
        if name in (b"x-api-key", b"authorization") or (extra is not None and name == extra):
            found.append(_strip_bearer(value))
    return found


def is_sigv4(scope: Scope) -> bool:
    """Whether the request carries an AWS SigV4 `Authorization` header."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bool(value.startswith(b"AWS4-HMAC-SHA256"))
    return False


def _strip_bearer(value: bytes) -> bytes:
    value = value.strip()
    if value[:7].lower() == b"bearer ":
        return value[7:].strip()
    return value
