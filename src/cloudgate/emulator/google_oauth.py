"""Google's OAuth token endpoint and the GCE metadata server, as google-auth talks to them.

The token endpoint verifies service-account JWT assertions (RS256, signed with a key whose public
half the emulator trusts) and authorized-user refresh tokens, then issues `ya29.emu-...` access
tokens that the platform modules accept until they expire.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cloudgate.emulator.config import EmulatorConfig
from cloudgate.emulator.wire import Request, Response, json_response

if TYPE_CHECKING:
    from cloudgate.emulator.app import EmulatorState

log = logging.getLogger("cloudgate.emulator")

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth always puts Google's own endpoint in `aud`, whatever token_uri the key names.
_WELL_KNOWN_AUDIENCES = frozenset(
    {
        GOOGLE_TOKEN_URI,
        "https://accounts.google.com/o/oauth2/token",
        "https://www.googleapis.com/oauth2/v4/token",
    }
)
_CLOCK_SKEW = 300
_MAX_ASSERTION_LIFETIME = 3600


def write_service_account_key(
    path: str | Path,
    *,
    token_uri: str,
    client_email: str = "cloudgate-test@emulated-project.iam.gserviceaccount.com",
    project_id: str = "emulated-project",
) -> dict[str, Any]:
    """Generate an RSA-2048 key, write it as a real service-account JSON key file, and return its data."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": client_email,
        "client_id": str(secrets.randbelow(10**20)).rjust(21, "1"),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
        + client_email.replace("@", "%40"),
        "universe_domain": "googleapis.com",
    }
    path = Path(path)
    path.write_text(json.dumps(info, indent=2), encoding="utf-8")
    os.chmod(path, 0o600)
    return info


# ---------------------------------------------------------------------------------------------
# Tokens and keys


class TokenStore:
    """Access tokens this emulator issued, with their expiry (wall-clock seconds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}

    def issue(self, ttl: int) -> str:
        """Issue a fresh token valid for `ttl` seconds."""
        token = "ya29.emu-" + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.time() + ttl
        return token

    def is_valid(self, token: str) -> bool:
        """Whether `token` was issued here and has not expired."""
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > time.time()


@dataclass(slots=True, frozen=True)
class TrustedKey:
    """The public half of a trusted service-account key."""

    key_id: str
    email: str
    token_uri: str
    public_key: rsa.RSAPublicKey


class KeyRing:
    """Service-account keys the token endpoint trusts: config files (read lazily), dicts, runtime adds."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._parsed: dict[str, TrustedKey] = {}  # private_key_id -> key
        self._file_mtimes: dict[str, float] = {}

    def trust(self, info: dict[str, Any]) -> None:
        """Trust a key given as parsed key-file JSON."""
        key = _trusted_key(info)
        with self._lock:
            self._parsed[key.key_id] = key

    def find(self, key_id: str | None, email: str | None) -> TrustedKey | None:
        """The trusted key with this id, else the first one for this email."""
        self._refresh()
        with self._lock:
            if key_id and key_id in self._parsed:
                return self._parsed[key_id]
            if not key_id:
                return next((k for k in self._parsed.values() if k.email == email), None)
        return None

    def _refresh(self) -> None:
        for info in list(self._config.trusted_keys):
            kid = str(info.get("private_key_id", ""))
            if kid not in self._parsed:
                self._add_quietly(info, "trusted_keys entry")
        for path in list(self._config.service_account_files):
            try:
                mtime = os.stat(path).st_mtime
            except OSError:
                continue  # Not written yet: tests often create the app before the key file.
            if self._file_mtimes.get(path) == mtime:
                continue
            self._file_mtimes[path] = mtime
            try:
                info = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.warning("cannot read service-account file %s: %s", path, exc)
                continue
            self._add_quietly(info, path)

    def _add_quietly(self, info: Any, where: str) -> None:
        try:
            self.trust(info)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring untrustable service-account key (%s): %s", where, exc)


def _trusted_key(info: dict[str, Any]) -> TrustedKey:
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ValueError("not a service_account key")
    private = serialization.load_pem_private_key(str(info["private_key"]).encode(), password=None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ValueError("service-account keys are RSA keys")
    return TrustedKey(
        key_id=str(info["private_key_id"]),
        email=str(info["client_email"]),
        token_uri=str(info.get("token_uri", GOOGLE_TOKEN_URI)),
        public_key=private.public_key(),
    )


# ---------------------------------------------------------------------------------------------
# The token endpoint


class OAuthError(Exception):
    """A token-endpoint failure: an OAuth `error` code and its description."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> Response:
        """The error as Google's token endpoint sends it."""
        return json_response(self.status, {"error": self.error, "error_description": self.description})


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify_assertion(assertion: str, keys: KeyRing, own_token_uri: str, now: float) -> dict[str, Any]:
    """Check a service-account JWT assertion and return its claims, or raise OAuthError."""
    parts = assertion.split(".")
    if len(parts) != 3:
        raise OAuthError(
            "invalid_grant", "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe"
        )
    try:
        header = orjson.loads(_b64url(parts[0]))
        claims = orjson.loads(_b64url(parts[1]))
        signature = _b64url(parts[2])
    except (ValueError, binascii.Error) as exc:
        raise OAuthError("invalid_grant", "Invalid JWT Signature.") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "RS256":
        raise OAuthError("invalid_grant", "Invalid JWT Signature.")
    key = keys.find(header.get("kid"), claims.get("iss"))
    if key is None:
        raise OAuthError("invalid_grant", "Invalid JWT Signature.")
    try:
        key.public_key.verify(
            signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature as exc:
        raise OAuthError("invalid_grant", "Invalid JWT Signature.") from exc
    if claims.get("iss") != key.email:
        raise OAuthError("invalid_grant", "Invalid JWT: the issuer is not the key's service account.")
    audiences = {*_WELL_KNOWN_AUDIENCES, key.token_uri, own_token_uri}
    if claims.get("aud") not in audiences:
        raise OAuthError(
            "invalid_grant",
            f"Invalid JWT: Failed audience check. The expected value was {GOOGLE_TOKEN_URI} "
            f"but the actual value was {claims.get('aud')}",
        )
    exp, iat = claims.get("exp"), claims.get("iat")
    if (
        not isinstance(exp, int | float)
        or not isinstance(iat, int | float)
        or exp <= now - _CLOCK_SKEW
        or iat > now + _CLOCK_SKEW
        or exp - iat > _MAX_ASSERTION_LIFETIME
    ):
        raise OAuthError(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
            "Check your iat and exp values in the JWT claim.",
        )
    if not claims.get("scope") and not claims.get("target_audience"):
        raise OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
    return claims


def handle_token(req: Request, state: EmulatorState) -> Response:
    """`POST /token`: the jwt-bearer and refresh_token grants."""
    if req.method != "POST":
        return OAuthError("invalid_request", "Method not allowed: use POST.", 405).response()
    form = _token_form(req)
    grant = form.get("grant_type", "")
    config = state.config
    try:
        if grant == JWT_BEARER_GRANT:
            claims = verify_assertion(
                form.get("assertion", ""), state.keys, state.own_url("/token"), time.time()
            )
            scope = str(claims.get("scope", CLOUD_PLATFORM_SCOPE))
        elif grant == "refresh_token":
            if not any(
                u.client_id == form.get("client_id")
                and u.client_secret == form.get("client_secret")
                and u.refresh_token == form.get("refresh_token")
                for u in config.authorized_users
            ):
                raise OAuthError("invalid_grant", "Bad Request")
            scope = form.get("scope") or CLOUD_PLATFORM_SCOPE
        else:
            raise OAuthError("unsupported_grant_type", f"Invalid grant_type: {grant}")
    except OAuthError as exc:
        log.info("token request refused: %s", exc.description)
        return exc.response()
    token = state.tokens.issue(config.token_ttl)
    return json_response(
        200, {"access_token": token, "expires_in": config.token_ttl, "scope": scope, "token_type": "Bearer"}
    )


def _token_form(req: Request) -> dict[str, str]:
    # google-auth sends form data, but some callers (use_json=True paths) send JSON.
    if req.headers.get("content-type", "").startswith("application/json"):
        try:
            data = req.json()
        except orjson.JSONDecodeError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return req.form()


# ---------------------------------------------------------------------------------------------
# The GCE metadata server

_MD_PREFIX = "/computeMetadata/v1/"


def is_metadata_path(path: str) -> bool:
    """Whether a path belongs to the metadata server (its root ping included)."""
    return path == "/" or path.startswith(_MD_PREFIX) or path == _MD_PREFIX.rstrip("/")


def handle_metadata(req: Request, state: EmulatorState) -> Response:
    """The metadata server's answers google-auth needs: ping, token, account info, project id."""
    flavor = {"metadata-flavor": "Google"}
    if req.headers.get("metadata-flavor", "").lower() != "google":
        return Response(
            403, b"Missing required header: Metadata-Flavor\n", {"content-type": "text/plain", **flavor}
        )
    if req.method != "GET":
        return Response(405, b"Method not allowed\n", {"content-type": "text/plain", **flavor})
    config = state.config
    sub = req.path[len(_MD_PREFIX) :] if req.path.startswith(_MD_PREFIX) else ""
    params = req.query_params()
    accounts = "instance/service-accounts/"
    if req.path == "/" or req.path == _MD_PREFIX.rstrip("/") or req.path == _MD_PREFIX:
        return Response(200, b"computeMetadata/\n", {"content-type": "application/text", **flavor})
    if sub == "project/project-id":
        return Response(200, config.metadata_project.encode(), {"content-type": "application/text", **flavor})
    if sub == "universe/universe-domain":
        return Response(200, b"googleapis.com", {"content-type": "application/text", **flavor})
    if sub.startswith(accounts):
        account, _, rest = sub[len(accounts) :].partition("/")
        if account not in ("default", config.metadata_email):
            return Response(404, b"Not Found\n", {"content-type": "text/html", **flavor})
        scopes = [s for s in params.get("scopes", CLOUD_PLATFORM_SCOPE).replace(",", " ").split() if s]
        if rest == "token":
            token = state.tokens.issue(config.token_ttl)
            body = {"access_token": token, "expires_in": config.token_ttl, "token_type": "Bearer"}
            return json_response(200, body, flavor)
        if rest == "email":
            return Response(
                200, config.metadata_email.encode(), {"content-type": "application/text", **flavor}
            )
        if rest == "scopes":
            return Response(200, "\n".join(scopes).encode(), {"content-type": "application/text", **flavor})
        if rest == "":
            info = {"aliases": ["default"], "email": config.metadata_email, "scopes": scopes}
            return json_response(200, info, flavor)
    return Response(404, b"Not Found\n", {"content-type": "text/html", **flavor})
