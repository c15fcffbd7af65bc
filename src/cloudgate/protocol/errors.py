"""Error shapes of the three wire formats, and the one internal error that maps onto all of them.

Shapes:
- Anthropic: `{"type":"error","error":{"type":"rate_limit_error","message":"..."}}`
- Google (Vertex transport errors): `{"error":{"code":429,"message":"...","status":"RESOURCE_EXHAUSTED"}}`,
  sometimes wrapped in a one-element array on streaming endpoints.
- AWS (Bedrock): header `x-amzn-ErrorType: ThrottlingException`, body `{"message":"..."}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

# Anthropic error type -> HTTP status.
ANTHROPIC_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# HTTP status -> the Anthropic error type the API uses for it.
_TYPE_FOR_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    409: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# HTTP status -> Google canonical status name.
GOOGLE_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}

# Google canonical status name -> HTTP status (for envelopes whose `code` is missing).
_STATUS_FOR_GOOGLE: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


# Anthropic error type -> (HTTP status, AWS exception name) as Bedrock reports that failure.
AWS_ERROR_FOR_TYPE: dict[str, tuple[int, str]] = {
    "invalid_request_error": (400, "ValidationException"),
    "request_too_large": (400, "ValidationException"),
    "authentication_error": (403, "UnrecognizedClientException"),
    "permission_error": (403, "AccessDeniedException"),
    "billing_error": (403, "AccessDeniedException"),
    "not_found_error": (404, "ResourceNotFoundException"),
    "timeout_error": (408, "ModelTimeoutException"),
    "rate_limit_error": (429, "ThrottlingException"),
    "api_error": (500, "InternalServerException"),
    "overloaded_error": (503, "ServiceUnavailableException"),
}

# AWS exception name -> Anthropic error type (reading Bedrock's errors).
ANTHROPIC_TYPE_FOR_AWS: dict[str, str] = {
    "ValidationException": "invalid_request_error",
    "AccessDeniedException": "permission_error",
    "UnrecognizedClientException": "authentication_error",
    "InvalidSignatureException": "authentication_error",
    "ExpiredTokenException": "authentication_error",
    "IncompleteSignatureException": "authentication_error",
    "MissingAuthenticationTokenException": "authentication_error",
    "ResourceNotFoundException": "not_found_error",
    "ThrottlingException": "rate_limit_error",
    "ServiceQuotaExceededException": "rate_limit_error",
    "ModelNotReadyException": "overloaded_error",
    "ModelTimeoutException": "timeout_error",
    "ModelErrorException": "api_error",
    "ModelStreamErrorException": "api_error",
    "InternalServerException": "api_error",
    "ServiceUnavailableException": "overloaded_error",
}


def aws_exception_name(header_value: str) -> str:
    """`ThrottlingException` from an `x-amzn-ErrorType` value such as `ThrottlingException:http://...`."""
    return header_value.split(":", 1)[0].strip()


def aws_stream_exception_type(name: str) -> str:
    """The `:exception-type` spelling of an exception name in a stream (`throttlingException`)."""
    return name[:1].lower() + name[1:]


def aws_error_body(message: str) -> bytes:
    """An AWS-shape error body."""
    return orjson.dumps({"message": message})


def anthropic_type_for_status(status: int) -> str:
    """The Anthropic error type for an HTTP status."""
    if status in _TYPE_FOR_STATUS:
        return _TYPE_FOR_STATUS[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def google_status_for(status: int) -> str:
    """The Google canonical status name for an HTTP status."""
    if status in GOOGLE_STATUS:
        return GOOGLE_STATUS[status]
    return "FAILED_PRECONDITION" if 400 <= status < 500 else "UNKNOWN"


def anthropic_error_body(error_type: str, message: str) -> bytes:
    """An Anthropic-shape error body."""
    return orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})


def google_error_body(code: int, message: str, status: str | None = None) -> bytes:
    """A Google-shape error envelope."""
    return orjson.dumps(
        {"error": {"code": code, "message": message, "status": status or google_status_for(code)}}
    )


class GatewayError(Exception):
    """An error a caller sees, independent of wire format; front doors render it in theirs.

    `status` is the HTTP status; `error_type` the Anthropic error type; `google_status` the
    Google canonical name (derived from the status unless given). `raw_body`, when set, is an
    upstream error body whose shape (`raw_shape`: "anthropic", "google" or "aws") a front door
    passes through unchanged when that shape is native to its wire format, because clients'
    retry logic reads the upstream's exact wording. `headers` carries headers worth keeping
    (`retry-after`, `x-amzn-errortype`), names lower-cased.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        google_status: str | None = None,
        raw_body: bytes | None = None,
        raw_shape: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or anthropic_type_for_status(status)
        self.google_status = google_status or google_status_for(status)
        self.raw_body = raw_body
        self.raw_shape = raw_shape
        self.headers = headers or {}

    def anthropic_body(self) -> bytes:
        """This error in Anthropic shape."""
        return anthropic_error_body(self.error_type, self.message)

    def google_body(self) -> bytes:
        """This error in Google shape."""
        return google_error_body(self.status, self.message, self.google_status)

    def aws_error(self) -> tuple[int, str]:
        """The HTTP status and AWS exception name Bedrock would use for this error."""
        if self.status in (405, 413):  # a wrong method or an oversized body keep their status
            return self.status, "ValidationException"
        return AWS_ERROR_FOR_TYPE.get(self.error_type, (self.status, "InternalServerException"))

    def __repr__(self) -> str:
        return f"GatewayError({self.status}, {self.error_type!r}, {self.message!r})"


@dataclass(slots=True, frozen=True)
class ParsedError:
    """What an upstream error body says, whichever shape it came in."""

    status: int
    message: str
    error_type: str  # Anthropic error type
    google_status: str | None  # set when the body was a Google envelope
    shape: str  # "anthropic", "google", "aws" or "unknown"


def parse_error_body(status: int, body: bytes, aws_error_type: str | None = None) -> ParsedError:
    """Read an upstream error body of any known shape; unknown bodies keep their text.

    `aws_error_type` is Bedrock's `x-amzn-ErrorType` header: its presence marks the AWS shape,
    and its exception name, not the status, decides the error type.
    """
    if aws_error_type:
        name = aws_exception_name(aws_error_type)
        try:
            aws_doc: Any = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            aws_doc = {}
        text = ""
        if isinstance(aws_doc, dict):
            text = str(aws_doc.get("message") or aws_doc.get("Message") or "")
        etype = ANTHROPIC_TYPE_FOR_AWS.get(name) or anthropic_type_for_status(status)
        return ParsedError(status, text or name, etype, None, "aws")
    try:
        doc: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, list) and len(doc) == 1:
        doc = doc[0]
    if isinstance(doc, dict):
        err = doc.get("error")
        if doc.get("type") == "error" and isinstance(err, dict):
            raw_type = err.get("type")
            return ParsedError(
                status,
                str(err.get("message", "")),
                raw_type if isinstance(raw_type, str) and raw_type else anthropic_type_for_status(status),
                None,
                "anthropic",
            )
        if isinstance(err, dict) and ("status" in err or "code" in err):
            gstatus = err.get("status") if isinstance(err.get("status"), str) else None
            code = err.get("code") if isinstance(err.get("code"), int) else None
            http = status or code or (_STATUS_FOR_GOOGLE.get(gstatus or "", 500))
            return ParsedError(
                http,
                str(err.get("message", "")),
                anthropic_type_for_status(http),
                gstatus or google_status_for(http),
                "google",
            )
        if isinstance(doc.get("message"), str):
            return ParsedError(status, doc["message"], anthropic_type_for_status(status), None, "unknown")
    text = body.decode("utf-8", "replace").strip() if body else ""
    return ParsedError(
        status, text or f"upstream returned HTTP {status}", anthropic_type_for_status(status), None, "unknown"
    )
