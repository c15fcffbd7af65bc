"""Shared fixtures: the emulator served for real on loopback, and SDK clients pointed at it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest

from cloudgate.emulator import EmulatorApp, EmulatorConfig, create_emulator_app
from cloudgate.util.server import BackgroundServer, serving

TOKEN = "static-test-token"
PROJECT = "emulated-project"
REGION = "us-east5"
MODEL = "claude-sonnet-4-5@20250929"

Emulator = tuple[EmulatorApp, BackgroundServer]


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    """`make_emulator(config)` serves a fresh emulator; all are stopped at the end of the test."""
    stack = contextlib.ExitStack()

    def make(config: EmulatorConfig | None = None) -> Emulator:
        app = create_emulator_app(config or EmulatorConfig(static_tokens=[TOKEN]))
        srv = stack.enter_context(serving(app))
        app.state.base_url = srv.url
        return app, srv

    with stack:
        yield make


@pytest.fixture
def emulator(make_emulator: Callable[..., Emulator]) -> Emulator:
    """An emulator with default settings that accepts the static token TOKEN."""
    return make_emulator()


def vertex_client(
    srv: BackgroundServer, *, region: str = REGION, token: str = TOKEN, **kw: Any
) -> anthropic.AnthropicVertex:
    """The official SDK's Vertex client aimed at the emulator, retries off."""
    kw.setdefault("max_retries", 0)
    return anthropic.AnthropicVertex(
        region=region, project_id=PROJECT, access_token=token, base_url=f"{srv.url}/v1", **kw
    )
