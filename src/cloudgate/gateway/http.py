"""Small ASGI helpers: reading a bounded body, reading headers, sending a whole response."""

from __future__ import annotations

from cloudgate.gateway.types import Headers, Receive, Scope, Send

JSON_HEADERS: Headers = [(b"content-type", b"application/json")]


class BodyTooLarge(Exception):
    """The request body is larger than the configured limit."""


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lower-case bytes), decoded as latin-1."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def headers_dict(scope: Scope) -> dict[str, str]:
    """All request headers, lower-cased names, later duplicates joined with commas."""
    out: dict[str, str] = {}
    for key, value in scope["headers"]:
        name = key.decode("latin-1")
        text = value.decode("latin-1")
        out[name] = f"{out[name]},{text}" if name in out else text
    return out


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing more than `limit` bytes (by header or as it streams)."""
    length = header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyTooLarge
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise BodyTooLarge
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        parts.append(chunk)
    return b"".join(parts)


async def send_response(send: Send, status: int, body: bytes, headers: Headers | None = None) -> None:
    """Send a complete response with a content-length."""
    out = list(headers) if headers is not None else list(JSON_HEADERS)
    out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body, "more_body": False})
