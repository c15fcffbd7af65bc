"""Verifying AWS Signature Version 4 on requests that arrive (Bedrock-format callers, the emulator).

botocore computes the canonical request, string to sign and signature, so whatever botocore
signs (boto3, `anthropic.AnthropicBedrock`) verifies byte for byte. The one rule to respect is
that the path must be the raw path as it arrived: botocore signs `quote(path)` of the path it
sent, so a model id sent as `...-v1%3A0` is signed as `...-v1%253A0`, and one sent with a
bare `:` (the anthropic SDK) as `...-v1%3A0`. Rebuilding from the raw path reproduces both.

Errors carry the exception name and message the real service answers with. Expired and
not-yet-valid signatures are `InvalidSignatureException` with AWS's "Signature expired"
wording, which is what JSON-protocol AWS services return.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_PARAM = re.compile(r"(\w+)=([^,\s]*)")

MISSING_TOKEN_MESSAGE = "Missing Authentication Token"  # noqa: S105 (an error text)
INVALID_SIGNATURE_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
UNRECOGNIZED_CLIENT_MESSAGE = "The security token included in the request is invalid."

# AWS exception name -> HTTP status, as JSON-protocol services answer them.
SIGV4_STATUS: dict[str, int] = {
    "MissingAuthenticationTokenException": 403,
    "IncompleteSignatureException": 400,
    "InvalidSignatureException": 403,
    "UnrecognizedClientException": 403,
}


class SigV4Error(Exception):
    """A request whose SigV4 authentication fails; `code` is the AWS exception name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        """The HTTP status AWS answers this failure with."""
        return SIGV4_STATUS.get(self.code, 403)


@dataclass(slots=True, frozen=True)
class SigV4Identity:
    """Who signed a request that verified."""

    access_key_id: str
    region: str
    service: str
    session_token: str | None = None


@dataclass(slots=True, frozen=True)
class _Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


class _FixedHeadersSigV4(SigV4Auth):  # type: ignore[misc]
    """botocore's signer, told exactly which headers the caller signed."""

    def __init__(self, credentials: Credentials, service: str, region: str, signed: Sequence[str]) -> None:
        super().__init__(credentials, service, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest):  # type: ignore[no-untyped-def]
        """Only the headers named in the caller's SignedHeaders, in the caller's values."""
        # Not botocore's selection: other signers (the AWS SDK for JavaScript) may sign headers
        # botocore never would, such as user-agent.
        header_map = HTTPHeaders()
        for name in self._signed:
            if name in request.headers:
                header_map[name] = request.headers[name]
        return header_map


def has_sigv4(headers: dict[str, str], query: str = "") -> bool:
    """Whether a request carries SigV4 authentication (header or presigned query)."""
    return headers.get("authorization", "").startswith(ALGORITHM) or "X-Amz-Signature=" in query


def _parse_authorization(value: str) -> _Authorization:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SigV4Error("IncompleteSignatureException", f"Unsupported AWS 'algorithm': '{algorithm}'.")
    params = {k: v for k, v in _PARAM.findall(rest)}
    missing = [p for p in ("Credential", "Signature", "SignedHeaders") if not params.get(p)]
    if missing:
        text = " ".join(f"Authorization header requires '{p}' parameter." for p in missing)
        raise SigV4Error("IncompleteSignatureException", f"{text} Authorization={value}")
    parts = params["Credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
        raise SigV4Error(
            "IncompleteSignatureException",
            f"Credential should be scoped to a valid region. Authorization={value}"
            if len(parts) == 5
            else f"Authorization header requires 'Credential' parameter. Authorization={value}",
        )
    return _Authorization(
        access_key_id=parts[0],
        date=parts[1],
        region=parts[2],
        service=parts[3],
        signed_headers=tuple(h for h in params["SignedHeaders"].lower().split(";") if h),
        signature=params["Signature"].lower(),
    )


def _parse_amz_date(text: str) -> datetime:
    try:
        return datetime.strptime(text, _AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise SigV4Error(
            "IncompleteSignatureException",
            f"Date must be in ISO-8601 'basic format'. Got '{text}'. See "
            "http://en.wikipedia.org/wiki/ISO_8601",
        ) from None


def _check_skew(signed_at: datetime, now: datetime, max_skew: int) -> None:
    skew = (now - signed_at).total_seconds()
    minutes = max_skew // 60
    if skew > max_skew:
        earliest = datetime.fromtimestamp(now.timestamp() - max_skew, UTC)
        raise SigV4Error(
            "InvalidSignatureException",
            f"Signature expired: {signed_at.strftime(_AMZ_DATE)} is now earlier than "
            f"{earliest.strftime(_AMZ_DATE)} ({now.strftime(_AMZ_DATE)} - {minutes} min.)",
        )
    if -skew > max_skew:
        latest = datetime.fromtimestamp(now.timestamp() + max_skew, UTC)
        raise SigV4Error(
            "InvalidSignatureException",
            f"Signature not yet current: {signed_at.strftime(_AMZ_DATE)} is still later than "
            f"{latest.strftime(_AMZ_DATE)} ({now.strftime(_AMZ_DATE)} + {minutes} min.)",
        )


def _expected_signature(
    secret: str,
    auth: _Authorization,
    amz_date: str,
    request: AWSRequest,
) -> str:
    signer = _FixedHeadersSigV4(
        Credentials(auth.access_key_id, secret), auth.service, auth.region, auth.signed_headers
    )
    request.context["timestamp"] = amz_date
    canonical = signer.canonical_request(request)
    return str(signer.signature(signer.string_to_sign(request, canonical), request))


def _rebuild(
    method: str, path: str, query: str, headers: dict[str, str], body: bytes, signed: Sequence[str]
) -> AWSRequest:
    host = headers.get("host", "localhost")
    url = f"http://{host}{path or '/'}" + (f"?{query}" if query else "")
    kept = {name: headers[name] for name in signed if name in headers}
    return AWSRequest(method=method.upper(), url=url, headers=kept, data=body)


def verify_sigv4(
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    *,
    secret_for: Callable[[str], str | None] | Sequence[str],
    service: str = "bedrock",
    region: str | None = None,
    now: datetime | float | None = None,
    max_skew: int = 300,
) -> SigV4Identity:
    """Check a SigV4-signed request (header form); return who signed it or raise SigV4Error.

    `path` is the raw path as received (still percent-encoded), `headers` have lower-case
    names. `secret_for` maps an access key id to its secret (None = unknown key), or is a
    list of candidate secrets any of which may have signed it, whatever the key id.
    """
    value = headers.get("authorization")
    if not value:
        raise SigV4Error("MissingAuthenticationTokenException", MISSING_TOKEN_MESSAGE)
    auth = _parse_authorization(value)
    amz_date = headers.get("x-amz-date")
    if not amz_date:
        raise SigV4Error(
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
            f"Authorization={value}",
        )
    signed_at = _parse_amz_date(amz_date)
    if auth.date != amz_date[:8]:
        raise SigV4Error(
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
            f"HTTP: '{auth.date}' != '{amz_date[:8]}', from '{amz_date}'.",
        )
    if auth.service != service:
        raise SigV4Error(
            "InvalidSignatureException", f"Credential should be scoped to correct service: '{service}'. "
        )
    if region is not None and auth.region != region:
        raise SigV4Error(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{auth.region}'. ",
        )
    if "host" not in auth.signed_headers:
        raise SigV4Error(
            "InvalidSignatureException",
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        )
    token = headers.get("x-amz-security-token")
    if token is not None and "x-amz-security-token" not in auth.signed_headers:
        raise SigV4Error("InvalidSignatureException", INVALID_SIGNATURE_MESSAGE)
    current = (
        now if isinstance(now, datetime) else datetime.fromtimestamp(time.time() if now is None else now, UTC)
    )
    _check_skew(signed_at, current, max_skew)
    declared = headers.get("x-amz-content-sha256")
    if (
        declared is not None
        and declared != UNSIGNED_PAYLOAD
        and not hmac.compare_digest(declared.lower(), hashlib.sha256(body).hexdigest())
    ):
        raise SigV4Error(
            "InvalidSignatureException",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )

    if callable(secret_for):
        secret = secret_for(auth.access_key_id)
        if secret is None:
            raise SigV4Error("UnrecognizedClientException", UNRECOGNIZED_CLIENT_MESSAGE)
        candidates: Sequence[str] = (secret,)
    else:
        candidates = secret_for
    request = _rebuild(method, path, query, headers, body, auth.signed_headers)
    matched = False
    for candidate in candidates:
        expected = _expected_signature(candidate, auth, amz_date, request)
        # Check every candidate, so timing says nothing about which one matched.
        matched |= hmac.compare_digest(expected, auth.signature)
    if not matched:
        raise SigV4Error("InvalidSignatureException", INVALID_SIGNATURE_MESSAGE)
    return SigV4Identity(auth.access_key_id, auth.region, auth.service, token)


def sign_request(
    method: str, url: str, headers: dict[str, str], body: bytes, *, key: str, secret: str, region: str
) -> dict[str, str]:
    """Headers botocore would add to sign a request (for tests and tools)."""
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    SigV4Auth(Credentials(key, secret), "bedrock", region).add_auth(request)
    return {k.lower(): str(v) for k, v in request.headers.items()}


__all__ = [
    "ALGORITHM",
    "INVALID_SIGNATURE_MESSAGE",
    "MISSING_TOKEN_MESSAGE",
    "UNRECOGNIZED_CLIENT_MESSAGE",
    "SigV4Error",
    "SigV4Identity",
    "has_sigv4",
    "sign_request",
    "verify_sigv4",
]
