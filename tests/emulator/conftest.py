"""Shared fixtures: the emulator served for real on loopback, and SDK clients pointed at it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import boto3
import pytest
from botocore.config import Config

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


def aws_client(
    srv: BackgroundServer,
    service: str = "bedrock-runtime",
    *,
    region: str,
    key: str,
    secret: str,
    token: str | None = None,
) -> Any:
    """A boto3 client of `service` aimed at the emulator, signing for `region`, retries off."""
    return boto3.client(
        service,
        endpoint_url=srv.url,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def bedrock_body(text: str = "hello there", **kw: Any) -> dict[str, Any]:
    """An InvokeModel body: one user message, plus any other fields given."""
    return {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
        **kw,
    }
