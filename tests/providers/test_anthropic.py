"""AnthropicProvider: request building, zero-copy, and (against the emulator) sending with an API
key, a bearer token and a real key-helper script: TTL expiry, and a rotated key (401) answered
by one helper run and one retry."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from cloudgate.config.settings import AnthropicSettings
from cloudgate.emulator import EmulatorApp, EmulatorConfig, Fault, create_emulator_app
from cloudgate.protocol.errors import GatewayError
from cloudgate.protocol.messages import MessagesCall, Operation, WireFormat
from cloudgate.providers.anthropic import AnthropicProvider
from cloudgate.providers.base import Provider, Target
from cloudgate.providers.transport import Timeouts, Transport
from cloudgate.util.server import serving

USER = [{"role": "user", "content": "hi"}]
MODEL = "claude-sonnet-4-6"


def call(**kw: Any) -> MessagesCall:
    kw.setdefault("operation", Operation.MESSAGES)
    kw.setdefault("model", MODEL)
    kw.setdefault("body", {"max_tokens": 16, "messages": USER})
    return MessagesCall(**kw)


def target(model: str = MODEL) -> Target:
    return Target("anthropic", model)


def provider(url: str = "https://api.anthropic.com", **settings: Any) -> AnthropicProvider:
    transport = Transport(timeouts=Timeouts(connect=2, first_byte=5, idle=5, total=10))
    return AnthropicProvider(AnthropicSettings(base_url=url, **settings), transport)


# -- request building ----------------------------------------------------------------------------


def test_is_a_provider() -> None:
    p: Provider = provider(api_key="k")
    assert (p.name, p.response_format) == ("anthropic", WireFormat.ANTHROPIC)


async def test_messages_and_count_tokens_requests() -> None:
    p = provider("https://proxy.example/", api_key="sk-1")
    c = call(stream=True, body={"max_tokens": 16, "messages": USER, "model": "x", "stream": False})
    req = await p.build_request(c, target())
    assert req.url == "https://proxy.example/v1/messages"
    assert orjson.loads(req.body) == {"model": MODEL, "max_tokens": 16, "messages": USER, "stream": True}
    assert req.headers == {
        "x-api-key": "sk-1",
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
    }

    counting = call(operation=Operation.COUNT_TOKENS, model="sonnet", body={"messages": USER}, stream=True)
    req = await p.build_request(counting, target())
    assert req.url == "https://proxy.example/v1/messages/count_tokens"
    assert orjson.loads(req.body) == {"model": MODEL, "messages": USER}


async def test_betas_pass_and_configured_drops() -> None:
    c = call(
        betas=["context-management-2025-06-27", "oauth-2025-04-20", "files-api-2025-04-14"],
        body={"max_tokens": 16, "messages": USER, "context_management": {"edits": []}},
        anthropic_version="2023-01-01",
    )
    req = await provider(api_key="k", drop_betas=["oauth-2025-04-20"]).build_request(c, target())
    assert req.headers["anthropic-beta"] == "context-management-2025-06-27,files-api-2025-04-14"
    assert req.headers["anthropic-version"] == "2023-01-01"
    assert "context_management" in orjson.loads(req.body)


async def test_passthrough_headers_never_override_auth() -> None:
    c = call(passthrough_headers={"x-claude-code-session-id": "s", "x-api-key": "callers-key"})
    req = await provider(api_key="gateway-key").build_request(c, target())
    assert req.headers["x-api-key"] == "gateway-key"
    assert req.headers["x-claude-code-session-id"] == "s"


async def test_zero_copy_rules() -> None:
    raw = b'{"model":"claude-sonnet-4-6","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
    p = provider(api_key="k")
    same = call(raw_body=raw)
    assert (await p.build_request(same, target())).body is raw
    # Another model, another door, or an edited body: re-serialised.
    for c, t in (
        (call(raw_body=raw), target("claude-opus-4-6")),
        (call(raw_body=raw, frontdoor=WireFormat.VERTEX), target()),
    ):
        assert (await p.build_request(c, t)).body is not raw
    # A configured drop edits the header only: the caller's bytes still go as they are.
    dropped = call(raw_body=raw, betas=["oauth-2025-04-20", "files-api-2025-04-14"])
    req = await provider(api_key="k", drop_betas=["oauth-2025-04-20"]).build_request(dropped, target())
    assert req.body is raw
    assert req.headers["anthropic-beta"] == "files-api-2025-04-14"


# -- against the emulator ------------------------------------------------------------------------


@pytest.fixture
def emulator() -> Iterator[tuple[EmulatorApp, str]]:
    app = create_emulator_app(EmulatorConfig(anthropic_api_keys=["sk-ant-good", "tok-good"]))
    with serving(app) as srv:
        app.state.base_url = srv.url
        yield app, srv.url


def helper_script(tmp_path: Path, key: str) -> tuple[str, Path, Path]:
    """A key helper printing the key in `key.txt` and logging each run."""
    key_file = tmp_path / "key.txt"
    key_file.write_text(key)
    log = tmp_path / "helper.log"
    script = tmp_path / "helper.sh"
    script.write_text(f'#!/bin/sh\necho run >> "{log}"\ncat "{key_file}"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script), key_file, log


def runs(log: Path) -> int:
    return log.read_text().count("run")


def api_calls(app: EmulatorApp) -> list[Any]:
    return [r for r in app.state.requests if r.path.startswith("/v1/messages")]


@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        ({"api_key": "sk-ant-good"}, "x-api-key", "sk-ant-good"),
        ({"auth_token": "tok-good"}, "authorization", "Bearer tok-good"),
    ],
)
async def test_send_plain_and_streaming(
    emulator: tuple[EmulatorApp, str], auth: dict[str, str], header: str, value: str
) -> None:
    app, url = emulator
    p = provider(url, **auth)
    await p.start()
    try:
        resp = await p.send(call(betas=["claude-code-20250219"]), target())
        msg = orjson.loads(await resp.read())
        assert msg["type"] == "message"
        resp = await p.send(call(stream=True), target())
        assert resp.headers["content-type"].startswith("text/event-stream")
        data = await resp.read()
        assert data.startswith(b"event: message_start") and b"event: message_stop" in data
        resp = await p.send(call(operation=Operation.COUNT_TOKENS, body={"messages": USER}), target())
        assert orjson.loads(await resp.read())["input_tokens"] > 0
        first, second, third = api_calls(app)
        assert first.headers[header] == value
        assert first.headers["anthropic-beta"] == "claude-code-20250219"
        assert second.json["stream"] is True
        assert third.path == "/v1/messages/count_tokens"
    finally:
        await p.close()
        await p.transport.close()


async def test_helper_key_cached_then_rerun_after_ttl(
    emulator: tuple[EmulatorApp, str], tmp_path: Path
) -> None:
    _, url = emulator
    script, _, log = helper_script(tmp_path, "sk-ant-good")
    p = provider(url, api_key_helper=script, api_key_helper_ttl_ms=300)
    await p.start()
    try:
        for _ in range(3):
            await (await p.send(call(), target())).read()
        assert runs(log) == 1
        await asyncio.sleep(0.35)
        await (await p.send(call(), target())).read()
        assert runs(log) == 2
    finally:
        await p.close()
        await p.transport.close()


async def test_rotated_key_401_reruns_the_helper_once_and_retries(
    emulator: tuple[EmulatorApp, str], tmp_path: Path
) -> None:
    app, url = emulator
    script, key_file, log = helper_script(tmp_path, "sk-ant-good")
    p = provider(url, api_key_helper=script)
    await p.start()
    try:
        await (await p.send(call(), target())).read()
        # The key is rotated upstream and the helper now prints the new one.
        app.state.config.anthropic_api_keys[:] = ["sk-ant-rotated"]
        key_file.write_text("sk-ant-rotated")
        app.state.requests.clear()
        results = await asyncio.gather(*(p.send(call(), target()) for _ in range(4)))
        for resp in results:
            assert resp.status == 200
            await resp.read()
        assert runs(log) == 2  # one re-run, shared by the concurrent 401s
        keys = [r.headers["x-api-key"] for r in api_calls(app)]
        assert keys.count("sk-ant-good") == 4 and keys.count("sk-ant-rotated") == 4
    finally:
        await p.close()
        await p.transport.close()


async def test_401_is_retried_once_only(emulator: tuple[EmulatorApp, str], tmp_path: Path) -> None:
    app, url = emulator
    script, _, log = helper_script(tmp_path, "sk-ant-revoked")
    p = provider(url, api_key_helper=script)
    try:
        with pytest.raises(GatewayError) as info:
            await p.send(call(), target())
        err = info.value
        assert (err.status, err.error_type, err.raw_shape) == (401, "authentication_error", "anthropic")
        assert len(api_calls(app)) == 2 and runs(log) == 2
    finally:
        await p.transport.close()


async def test_401_with_a_fixed_key_is_not_retried(emulator: tuple[EmulatorApp, str]) -> None:
    app, url = emulator
    p = provider(url, api_key="sk-wrong")
    try:
        with pytest.raises(GatewayError) as info:
            await p.send(call(), target())
        assert info.value.status == 401
        assert len(api_calls(app)) == 1
    finally:
        await p.transport.close()


async def test_failing_helper_surfaces_as_a_gateway_error(emulator: tuple[EmulatorApp, str]) -> None:
    app, url = emulator
    p = provider(url, api_key_helper="exit 7")
    try:
        with pytest.raises(GatewayError) as info:
            await p.send(call(), target())
        assert info.value.status == 500 and "exited with status 7" in info.value.message
        assert api_calls(app) == []
    finally:
        await p.transport.close()


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [
        (Fault(kind="rate_limit"), 429, "rate_limit_error"),
        (Fault(kind="overloaded"), 529, "overloaded_error"),
        (Fault(kind="server_error"), 500, "api_error"),
        (Fault(kind="not_found"), 404, "not_found_error"),
    ],
    ids=lambda v: v.kind if isinstance(v, Fault) else None,
)
async def test_upstream_errors_keep_the_anthropic_body(
    emulator: tuple[EmulatorApp, str], fault: Fault, status: int, error_type: str
) -> None:
    app, url = emulator
    fault.times = 1
    app.state.faults.add(fault)
    p = provider(url, api_key="sk-ant-good")
    try:
        with pytest.raises(GatewayError) as info:
            await p.send(call(), target())
        err = info.value
        assert (err.status, err.error_type, err.raw_shape) == (status, error_type, "anthropic")
        assert orjson.loads(err.raw_body or b"")["error"]["type"] == error_type
    finally:
        await p.transport.close()
