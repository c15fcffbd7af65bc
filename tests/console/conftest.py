"""A gateway with governance, an admin key and the console, served on loopback; a signed-in client."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import requests

from tests.conftest import Stack

ADMIN_KEY = "cg-admin-console-" + "k" * 24


@dataclass
class Signed:
    """A requests session signed in to the console, with its CSRF token."""

    http: requests.Session
    base: str
    csrf: str

    def post(self, path: str, data: dict[str, str] | None = None, **kwargs: object) -> requests.Response:
        form = {"csrf_token": self.csrf, **(data or {})}
        return self.http.post(self.base + path, data=form, allow_redirects=False, timeout=10, **kwargs)  # type: ignore[arg-type]

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return self.http.get(self.base + path, allow_redirects=False, timeout=10, **kwargs)  # type: ignore[arg-type]


def sign_in(base: str, key: str = ADMIN_KEY) -> Signed:
    http = requests.Session()
    resp = http.post(base + "/ui/login", data={"key": key}, allow_redirects=False, timeout=10)
    assert resp.status_code == 303, resp.text
    page = http.get(base + "/ui/overview", timeout=10)
    assert page.status_code == 200, page.text
    found = re.search(r'data-csrf="([^"]+)"', page.text)
    assert found is not None
    return Signed(http, base, found[1])


@pytest.fixture
def console(make_stack: Callable[..., Stack]) -> Stack:
    """Emulator + gateway with governance, the activity log and an admin key."""
    stack = make_stack(settings={"admin_key": ADMIN_KEY, "activity": {"flush_interval": 0.1}})
    stack.gateway.state.governor.cache_seconds = 0.2  # type: ignore[union-attr]  # production: 5 s
    return stack


@pytest.fixture
def admin(console: Stack) -> Signed:
    """A client signed in with the admin key."""
    return sign_in(console.url)
