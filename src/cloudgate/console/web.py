"""Requests and answers of the console, shared by the dispatcher (app.py) and the pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from cloudgate.console.auth import ConsoleSession
from cloudgate.gateway.types import Scope


@dataclass(slots=True)
class Request:
    """One console request, decoded."""

    scope: Scope
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    session: ConsoleSession | None = None
    form: dict[str, str] = field(default_factory=dict)
    json: dict[str, Any] = field(default_factory=dict)

    @property
    def csrf(self) -> str:
        """The session's CSRF token (for forms on the page being rendered)."""
        assert self.session is not None
        return self.session.csrf_token

    @property
    def secure(self) -> bool:
        """Whether the browser reached us over https (the cookie is then marked Secure)."""
        return self.scope.get("scheme") == "https"

    @property
    def client(self) -> str:
        """The caller's address, for throttling sign-ins."""
        client = self.scope.get("client")
        return str(client[0]) if client else "?"


@dataclass(slots=True)
class Response:
    """What a handler answers."""

    status: int
    body: bytes = b""
    content_type: bytes = b"text/html; charset=utf-8"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def html(body: str, status: int = 200) -> Response:
    """An HTML page."""
    return Response(status, body.encode())


def json(payload: Any, status: int = 200) -> Response:
    """A JSON answer."""
    return Response(status, orjson.dumps(payload), b"application/json")


def redirect(location: str, status: int = 303) -> Response:
    """See other (after a POST) or found."""
    return Response(status, b"", b"text/plain", [(b"location", location.encode("latin-1"))])


def safe_next(value: str | None, default: str = "/ui/overview") -> str:
    """A console path to go back to, never another site (`//host`, `/\\host`, `https:`)."""
    if not value or not value.startswith("/ui") or value.startswith(("//", "/\\")) or "\\" in value:
        return default
    return value
