"""Fixtures shared across the suite: the emulator and the gateway, both served for real on loopback."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cloudgate.config import load_settings
from cloudgate.emulator import EmulatorApp, EmulatorConfig, create_emulator_app, write_service_account_key
from cloudgate.gateway import GatewayApp, create_gateway_app
from cloudgate.gateway.records import MemorySink
from cloudgate.store.engine import database_url
from cloudgate.util.server import BackgroundServer, serving

GATEWAY_KEY = "cg-test-key-0123456789"
UPSTREAM_PROJECT = "upstream-project"
BEDROCK_API_KEY = "emulated-bedrock-api-key"
ANTHROPIC_API_KEY = "sk-ant-emulated-0123456789"


@dataclass
class Stack:
    """An emulator (playing Vertex AI, Bedrock and the Anthropic API) with a gateway in front."""

    emulator: EmulatorApp
    emulator_server: BackgroundServer
    gateway: GatewayApp
    gateway_server: BackgroundServer
    sink: MemorySink
    db_url: str = ""
    key: str = GATEWAY_KEY

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return self.gateway_server.url

    def records(self, count: int, timeout: float = 5.0) -> list[Any]:
        """The request records once there are `count` of them (each is written just after its
        response is sent, so a client can see the answer a moment before the record exists)."""
        deadline = time.monotonic() + timeout
        while len(self.sink.records) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.sink.records) == count, [r.as_dict() for r in self.sink.records]
        return list(self.sink.records)

    @property
    def upstream_calls(self) -> list[Any]:
        """Requests that reached the emulator's model endpoints (token and metadata calls left out)."""
        return [
            r
            for r in self.emulator.state.requests
            if r.path != "/token" and not r.path.startswith("/computeMetadata")
        ]


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """`make_stack(emulator=EmulatorConfig(...), settings={...})` serves emulator + gateway.

    Every back end points at the emulator; `settings={"provider": ...}` picks the one in use.
    For Vertex the gateway authenticates with a service-account key file through the real
    google-auth flow (the emulator's token endpoint verifies the signed JWT); for Bedrock and
    the Anthropic API with keys the emulator accepts.
    """
    stack = contextlib.ExitStack()

    def make(emulator: EmulatorConfig | None = None, settings: dict[str, Any] | None = None) -> Stack:
        config = emulator or EmulatorConfig()
        config.bedrock_api_keys.append(BEDROCK_API_KEY)
        config.anthropic_api_keys.append(ANTHROPIC_API_KEY)
        emu_app = create_emulator_app(config)
        emu_srv = stack.enter_context(serving(emu_app))
        emu_app.state.base_url = emu_srv.url
        key_file = tmp_path / f"sa-{emu_srv.port}.json"
        emu_app.state.trust_key(write_service_account_key(key_file, token_uri=f"{emu_srv.url}/token"))
        overrides = _merge(
            {
                "gateway": {"keys": [GATEWAY_KEY], "log_requests": False},
                "data_dir": str(tmp_path / f"data-{emu_srv.port}"),
                # Spend rows sooner than by default (1 s), so tests see them soon; activity
                # writes at the size its tests were written for. Written from the gateway's
                # own loop: a writer process per gateway would double these tests' time (its
                # start-up imports); tests/store/test_writer_process.py and every test that
                # runs `cloudgate serve` cover the default.
                "store": {"spend_flush_interval": 0.5, "writer": "inline"},
                "activity": {"flush_interval": 1.0, "batch_size": 500},
                "vertex": {
                    "project_id": UPSTREAM_PROJECT,
                    "region": "us-east5",
                    "base_url": f"{emu_srv.url}/v1",
                    "credentials_file": str(key_file),
                },
                "bedrock": {"base_url": emu_srv.url, "api_key": BEDROCK_API_KEY, "region": "us-east-1"},
                "anthropic": {"base_url": emu_srv.url, "api_key": ANTHROPIC_API_KEY},
            },
            settings or {},
        )
        sink = MemorySink()
        settings = load_settings(env={}, overrides=overrides)
        gw_app = create_gateway_app(settings, sinks=[sink])
        gw_srv = stack.enter_context(serving(gw_app))
        return Stack(emu_app, emu_srv, gw_app, gw_srv, sink, database_url(settings))

    with stack:
        yield make


@pytest.fixture
def gw(make_stack: Callable[..., Stack]) -> Stack:
    """Emulator + gateway with default settings."""
    return make_stack()


# One upstream attempt per request: for tests of how a single upstream answer (an error
# above all) reaches the caller, which failover would otherwise absorb.
NO_FAILOVER: dict[str, Any] = {"routing": {"max_attempts": 1, "fallback": "none"}}


@pytest.fixture
def gw_single(make_stack: Callable[..., Stack]) -> Stack:
    """Emulator + gateway that makes one upstream attempt per request (no failover, no retry)."""
    return make_stack(settings=NO_FAILOVER)
