"""The Anthropic Messages API front door: `/v1/messages`, `/v1/messages/count_tokens`, `/v1/models`.

Also served under `/anthropic/v1/...`, the prefix proxies commonly give it, so
`ANTHROPIC_BASE_URL=<gateway>/anthropic` works as well as `ANTHROPIC_BASE_URL=<gateway>`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson

from cloudgate.catalog import Catalog
from cloudgate.gateway.frontdoors.validation import check_fields, parse_object, split_betas
from cloudgate.gateway.http import JSON_HEADERS
from cloudgate.gateway.types import Headers
from cloudgate.protocol.errors import GatewayError
from cloudgate.protocol.messages import MessagesCall, Operation, WireFormat

WIRE = WireFormat.ANTHROPIC

ROUTES: dict[str, str] = {}
for _prefix in ("", "/anthropic"):
    ROUTES[f"{_prefix}/v1/messages"] = "messages"
    ROUTES[f"{_prefix}/v1/messages/count_tokens"] = "count_tokens"
    ROUTES[f"{_prefix}/v1/models"] = "models"

_TRANSPORT_FIELDS = ("model", "stream")


def parse_call(raw: bytes, headers: dict[str, str], operation: Operation) -> MessagesCall:
    """Decode and check an Anthropic-format request."""
    doc = parse_object(raw)
    problems = check_fields(doc, need_model=True, need_max_tokens=operation is Operation.MESSAGES)
    if problems:
        raise GatewayError(400, "; ".join(problems), error_type="invalid_request_error")
    model = doc["model"].strip()
    stream = bool(doc.get("stream", False)) if operation is Operation.MESSAGES else False
    body = {k: v for k, v in doc.items() if k not in _TRANSPORT_FIELDS}
    if operation is Operation.COUNT_TOKENS:
        body.pop("max_tokens", None)
    return MessagesCall(
        operation=operation,
        model=model,
        body=body,
        stream=stream,
        betas=split_betas(headers.get("anthropic-beta")),
        anthropic_version=headers.get("anthropic-version"),
        frontdoor=WIRE,
        raw_body=raw,
    )


def error_response(err: GatewayError) -> tuple[int, bytes, Headers]:
    """The error as the Anthropic API would send it (upstream Anthropic-shape bodies verbatim)."""
    native = err.raw_body is not None and err.raw_shape == "anthropic"
    body = err.raw_body if native and err.raw_body is not None else err.anthropic_body()
    headers = list(JSON_HEADERS)
    for name, value in err.headers.items():  # names are lower-case (providers.base)
        if name == "retry-after" or name.startswith("anthropic-ratelimit-"):
            headers.append((name.encode(), value.encode("latin-1")))
    return err.status, body, headers


_DATE_IN_ID = re.compile(r"(\d{4})(\d{2})(\d{2})")


def models_body(catalog: Catalog, aliases: dict[str, str]) -> bytes:
    """`GET /v1/models`: catalog models plus configured aliases, newest first."""
    data: list[dict[str, Any]] = []
    for entry in catalog.entries:
        data.append(
            {
                "type": "model",
                "id": entry.id,
                "display_name": entry.name,
                "created_at": _created_at(entry.id, entry.extra.get("released")),
            }
        )
    data.sort(key=lambda m: m["created_at"], reverse=True)
    known = {m["id"] for m in data}
    for alias, target in sorted(aliases.items()):
        if alias not in known:
            data.append(
                {
                    "type": "model",
                    "id": alias,
                    "display_name": f"{alias} ({target})",
                    "created_at": "1970-01-01T00:00:00Z",
                }
            )
    return orjson.dumps(
        {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )


def _created_at(model_id: str, released: Any) -> str:
    if released is not None:
        text = str(released)
        return text if "T" in text else f"{text}T00:00:00Z"
    match = _DATE_IN_ID.search(model_id)
    if match:
        try:
            day = datetime(int(match[1]), int(match[2]), int(match[3]), tzinfo=UTC)
        except ValueError:
            day = None
        if day is not None:
            return day.strftime("%Y-%m-%dT%H:%M:%SZ")
    return "1970-01-01T00:00:00Z"
