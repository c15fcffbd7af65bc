"""The request being served, for code that runs inside it but is not handed the record.

`gateway/app.py` enters a `RequestContext` for the duration of each Messages call. Log lines
read the request id from it (`observability.logging`), and the metrics and trace sinks read the
moments and request fields the `RequestRecord` does not carry. A `ContextVar` rather than an
argument because logging happens deep in code that must not know about requests; tasks spawned
inside a request copy the context, so their log lines carry the id too.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass


@dataclass(slots=True)
class RequestContext:
    """One request's id and the timings and fields the sinks need beyond its record."""

    request_id: str
    started: float  # time.perf_counter() when the request arrived
    upstream_at: float | None = None  # perf_counter() when it was handed to the upstream path
    # Filled only when tracing is on: the caller's W3C trace parent and the asked-for max_tokens.
    traceparent: str | None = None
    max_tokens: int | None = None


_current: ContextVar[RequestContext | None] = ContextVar("cloudgate_request", default=None)


def enter_request(context: RequestContext) -> Token[RequestContext | None]:
    """Make `context` the current request; give the token back to `leave_request`."""
    return _current.set(context)


def leave_request(token: Token[RequestContext | None]) -> None:
    """End the request entered with `token`."""
    _current.reset(token)


def current_request() -> RequestContext | None:
    """The request being served in this context, or None outside any request."""
    return _current.get()


def current_request_id() -> str | None:
    """The id of the request being served in this context, or None."""
    context = _current.get()
    return None if context is None else context.request_id
