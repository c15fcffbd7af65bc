"""Checks shared by the front doors: the body is a JSON object and its key fields have the right types.

Only what the gateway itself relies on is checked here (the upstream validates the rest and its
answer passes through); messages follow the Messages API's own wording (`field: problem`).
"""

from __future__ import annotations

from typing import Any

import orjson

from cloudgate.protocol.errors import GatewayError


class InvalidJSON(GatewayError):
    """The body is not a JSON object."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message, error_type="invalid_request_error")


def parse_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or `InvalidJSON`."""
    if not raw:
        raise InvalidJSON("request body is empty: expected a JSON object")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidJSON(f"request body must be a JSON object, not {_kind(doc)}")
    return doc


def check_fields(doc: dict[str, Any], *, need_model: bool, need_max_tokens: bool) -> list[str]:
    """Problems with the fields the gateway reads, in the API's `field: message` form."""
    problems: list[str] = []
    if need_model:
        model = doc.get("model")
        if model is None:
            problems.append("model: Field required")
        elif not isinstance(model, str) or not model.strip():
            problems.append("model: Input should be a non-empty string")
    messages = doc.get("messages")
    if messages is None:
        problems.append("messages: Field required")
    elif not isinstance(messages, list):
        problems.append("messages: Input should be a valid list")
    else:
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                problems.append(f"messages.{i}: Input should be a valid dictionary")
            elif not isinstance(message.get("role"), str):
                problems.append(f"messages.{i}.role: Field required")
            elif "content" not in message:
                problems.append(f"messages.{i}.content: Field required")
            elif not isinstance(message["content"], str | list):
                problems.append(f"messages.{i}.content: Input should be a valid string or list")
    max_tokens = doc.get("max_tokens")
    if max_tokens is None:
        if need_max_tokens:
            problems.append("max_tokens: Field required")
    elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        problems.append("max_tokens: Input should be a valid integer")
    elif max_tokens < 1:
        problems.append("max_tokens: Input should be greater than or equal to 1")
    stream = doc.get("stream")
    if stream is not None and not isinstance(stream, bool):
        problems.append("stream: Input should be a valid boolean")
    for key in ("system",):
        value = doc.get(key)
        if value is not None and not isinstance(value, str | list):
            problems.append(f"{key}: Input should be a valid string or list")
    tools = doc.get("tools")
    if tools is not None and not isinstance(tools, list):
        problems.append("tools: Input should be a valid list")
    return problems


def _kind(doc: Any) -> str:
    if isinstance(doc, list):
        return "an array"
    if isinstance(doc, str):
        return "a string"
    if doc is None:
        return "null"
    return f"a {type(doc).__name__}"


def split_betas(value: str | None) -> list[str]:
    """An `anthropic-beta` header value as a list (comma separated, blanks dropped)."""
    if not value:
        return []
    return [b.strip() for b in value.split(",") if b.strip()]
