"""The emulator's tiny HTTP layer over raw ASGI: a parsed request and the responses it sends."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from cloudgate.util.tasks import spawn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(slots=True)
class Request:
    """One HTTP request, fully read: headers lower-cased, path percent-decoded."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    # The path exactly as sent (still percent-encoded): SigV4 signs this form, not `path`.
    raw_path: str = ""

    def json(self) -> Any:
        """The body parsed as JSON (raises orjson.JSONDecodeError)."""
        return orjson.loads(self.body)

    def query_params(self) -> dict[str, str]:
        """Query parameters, last value winning."""
        return dict(urllib.parse.parse_qsl(self.query, keep_blank_values=True))

    def form(self) -> dict[str, str]:
        """The body parsed as application/x-www-form-urlencoded."""
        return dict(urllib.parse.parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def bearer_token(self) -> str | None:
        """The token of an `Authorization: Bearer` header, if any."""
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return (token.strip() or None) if scheme.lower() == "bearer" else None


@dataclass(slots=True)
class Response:
    """A complete response. `cut_at` sends only that many body bytes, then drops the connection."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    cut_at: int | None = None


@dataclass(slots=True)
class StreamResponse:
    """A server-sent-events response: `events` go out one by one, `delay` seconds apart.

    `cut_after` stops after that many events and drops the connection without finishing.
    """

    events: list[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    delay: float = 0.0
    cut_after: int | None = None


@dataclass(slots=True, frozen=True)
class DropConnection:
    """No response at all: the connection closes, as an unreachable or crashing upstream looks."""


DROP = DropConnection()

AnyResponse = Response | StreamResponse | DropConnection


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response."""
    body = data if isinstance(data, bytes) else orjson.dumps(data)
    return Response(status, body, {"content-type": "application/json", **(headers or {})})


async def read_request(scope: Scope, receive: Receive) -> Request:
    """Read the whole request body and build a Request."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return Request(
        method=scope["method"].upper(),
        path=scope["path"],
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        body=b"".join(chunks),
        raw_path=_raw_path(scope),
    )


def _raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.decode("latin-1").partition("?")[0]
    return urllib.parse.quote(scope["path"])


def _raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def send_response(send: Send, response: AnyResponse, receive: Receive | None = None) -> bool:
    """Send a response; return whether it was completed.

    A cut response returns without completing it, which makes uvicorn close the socket. A
    stream stops early when the client disconnects (watched through `receive`), as a real
    server stops generating for a caller that is gone.
    """
    if isinstance(response, DropConnection):
        await _drop(send, receive)
        return False
    if isinstance(response, StreamResponse):
        return await _send_stream(send, response, receive)
    headers = {"content-length": str(len(response.body)), **response.headers}
    await send({"type": "http.response.start", "status": response.status, "headers": _raw_headers(headers)})
    if response.cut_at is not None:
        await send(
            {"type": "http.response.body", "body": response.body[: response.cut_at], "more_body": True}
        )
        return False
    await send({"type": "http.response.body", "body": response.body})
    return True


async def _send_stream(send: Send, response: StreamResponse, receive: Receive | None) -> bool:
    headers = {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        **response.headers,
    }
    await send({"type": "http.response.start", "status": response.status, "headers": _raw_headers(headers)})
    gone = asyncio.Event()
    watcher = spawn(_watch_disconnect(receive, gone), name="emulator-disconnect") if receive else None
    try:
        for index, event in enumerate(response.events):
            if response.cut_after is not None and index >= response.cut_after:
                return False
            if index and response.delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gone.wait(), response.delay)
            if gone.is_set():
                return False
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return True
    finally:
        if watcher is not None:
            watcher.cancel()


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    await _wait_disconnect(receive)
    gone.set()


async def _drop(send: Send, receive: Receive | None) -> None:
    # ASGI has no message for "close without answering": returning before
    # http.response.start makes the server answer 500 itself. uvicorn's `send` is a method of
    # its per-request cycle, which holds the connection's transport; closing that sends FIN
    # with no byte of response.
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    close = getattr(transport, "close", None)
    if not callable(close):
        # Another server: the nearest portable thing, a status line and then nothing.
        await send({"type": "http.response.start", "status": 502, "headers": []})
        return
    close()
    if receive is not None:
        # Wait for the server to see the close, so it does not answer 500 for us.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_wait_disconnect(receive), 5)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
