"""Our Anthropic API request must be the one the official SDK (`anthropic.Anthropic`) sends.

The SDK runs for real against an in-process httpx transport that records its request; the same
call then goes through `AnthropicProvider.build_request`, built the way a front door would build
it, and the two are compared: method, path, JSON body, `anthropic-version`, `anthropic-beta`, auth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from cloudgate.config.settings import AnthropicSettings
from cloudgate.protocol.messages import MessagesCall, Operation, WireFormat
from cloudgate.providers.anthropic import AnthropicProvider
from cloudgate.providers.auth.api_key import AnthropicCredentials
from cloudgate.providers.base import Target
from cloudgate.providers.transport import Transport

BASE = "https://api.anthropic.example"
MESSAGE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 3, "output_tokens": 1},
}
SSE = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant",'
    b'"model":"claude","content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n\n'
)
USER = [{"role": "user", "content": "Hello, Claude"}]
TOOLS = [
    {
        "name": "Bash",
        "description": "Run a shell command",
        "input_schema": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
    }
]
# Betas the Anthropic API takes and Vertex/Bedrock reject: nothing may be dropped here.
ALL_BETAS = ["context-management-2025-06-27", "advanced-tool-use-2025-11-20", "claude-code-20250219"]


@dataclass
class Case:
    """One SDK call and what it means for a front door."""

    name: str
    operation: Operation
    run: Callable[[anthropic.Anthropic, str], Any]


def _plain(c: anthropic.Anthropic, m: str) -> Any:
    return c.messages.create(model=m, max_tokens=64, messages=USER)  # type: ignore[arg-type]


def _streaming(c: anthropic.Anthropic, m: str) -> Any:
    return list(c.messages.create(model=m, max_tokens=64, messages=USER, stream=True))  # type: ignore[arg-type]


def _tools(c: anthropic.Anthropic, m: str) -> Any:
    return c.messages.create(
        model=m,
        max_tokens=1024,
        system=[{"type": "text", "text": "terse", "cache_control": {"type": "ephemeral"}}],
        messages=USER,  # type: ignore[arg-type]
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "auto"},
        metadata={"user_id": "u-1"},
    )


def _betas(c: anthropic.Anthropic, m: str) -> Any:
    return c.beta.messages.create(
        model=m,
        max_tokens=64,
        messages=USER,  # type: ignore[arg-type]
        betas=ALL_BETAS,  # type: ignore[arg-type]
        context_management={"edits": [{"type": "clear_tool_uses_20250919"}]},
    )


def _betas_streaming(c: anthropic.Anthropic, m: str) -> Any:
    stream = c.beta.messages.create(
        model=m,
        max_tokens=64,
        messages=USER,  # type: ignore[arg-type]
        betas=["fine-grained-tool-streaming-2025-05-14"],
        tools=TOOLS,  # type: ignore[arg-type]
        stream=True,
    )
    return list(stream)


def _count(c: anthropic.Anthropic, m: str) -> Any:
    return c.messages.count_tokens(model=m, messages=USER, tools=TOOLS)  # type: ignore[arg-type]


def _count_beta(c: anthropic.Anthropic, m: str) -> Any:
    return c.beta.messages.count_tokens(model=m, messages=USER, betas=["token-efficient-tools-2025-02-19"])  # type: ignore[arg-type]


CASES = [
    Case("plain", Operation.MESSAGES, _plain),
    Case("streaming", Operation.MESSAGES, _streaming),
    Case("tools", Operation.MESSAGES, _tools),
    Case("betas", Operation.MESSAGES, _betas),
    Case("betas-streaming", Operation.MESSAGES, _betas_streaming),
    Case("count-tokens", Operation.COUNT_TOKENS, _count),
    Case("count-tokens-beta", Operation.COUNT_TOKENS, _count_beta),
]
MODELS = ["claude-sonnet-4-6", "claude-opus-4-6"]
AUTH = [("api_key", {"api_key": "sk-ant-1"}), ("auth_token", {"auth_token": "tok-1"})]


def _sdk_request(case: Case, model: str, **auth: str) -> httpx2.Request:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.url.path.endswith("/count_tokens"):
            return httpx2.Response(200, json={"input_tokens": 12})
        if orjson.loads(request.content).get("stream"):
            return httpx2.Response(200, content=SSE, headers={"content-type": "text/event-stream"})
        return httpx2.Response(200, json=MESSAGE)

    client = anthropic.Anthropic(
        base_url=BASE,
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        **auth,
    )
    with client:
        case.run(client, model)
    assert len(seen) == 1
    return seen[0]


def _front_door_call(req: httpx2.Request, operation: Operation, *, zero_copy: bool = False) -> MessagesCall:
    """The `MessagesCall` the Anthropic front door makes of the SDK's request."""
    doc = orjson.loads(req.content)
    model = doc.pop("model")
    stream = bool(doc.pop("stream", False))
    return MessagesCall(
        operation=operation,
        model=model,
        body=doc,
        stream=stream,
        betas=[b.strip() for b in req.headers.get("anthropic-beta", "").split(",") if b.strip()],
        anthropic_version=req.headers.get("anthropic-version"),
        frontdoor=WireFormat.ANTHROPIC,
        raw_body=req.content if zero_copy else b"",
    )


def _provider(**auth: str) -> AnthropicProvider:
    settings = AnthropicSettings(base_url=BASE + "/", **auth)  # type: ignore[arg-type]
    return AnthropicProvider(settings, Transport(), AnthropicCredentials.from_settings(settings))


@pytest.mark.parametrize(("auth_name", "auth"), AUTH, ids=[a[0] for a in AUTH])
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_request_matches_sdk(case: Case, model: str, auth_name: str, auth: dict[str, str]) -> None:
    sdk = _sdk_request(case, model, **auth)
    call = _front_door_call(sdk, case.operation)
    ours = await _provider(**auth).build_request(call, Target("anthropic", model))

    assert ours.method == sdk.method == "POST"
    # The SDK's beta resource adds `?beta=true`, which the API does not need.
    assert ours.url == f"{BASE}{sdk.url.path}"
    assert orjson.loads(ours.body) == orjson.loads(sdk.content)
    assert ours.headers["anthropic-version"] == sdk.headers["anthropic-version"]
    assert ours.headers.get("anthropic-beta") == sdk.headers.get("anthropic-beta")
    assert ours.headers["content-type"] == sdk.headers["content-type"]
    if auth_name == "api_key":
        # This SDK release sends an API key as a bearer token; the API takes both, and the
        # documented `x-api-key` is what every other client (and Claude Code) sends.
        sdk_key = sdk.headers.get("x-api-key") or sdk.headers["authorization"].removeprefix("Bearer ")
        assert ours.headers["x-api-key"] == sdk_key == "sk-ant-1"
        assert "Authorization" not in ours.headers
    else:
        assert ours.headers["Authorization"] == sdk.headers["authorization"] == "Bearer tok-1"
        assert "x-api-key" not in ours.headers


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_anthropic_front_door_forwards_sdk_bytes_unchanged(case: Case) -> None:
    sdk = _sdk_request(case, "claude-opus-4-6", api_key="sk-ant-1")
    call = _front_door_call(sdk, case.operation, zero_copy=True)
    ours = await _provider(api_key="sk-ant-1").build_request(call, Target("anthropic", "claude-opus-4-6"))
    assert ours.body == sdk.content  # byte for byte: no re-serialisation


async def test_a_routed_model_is_not_zero_copied() -> None:
    sdk = _sdk_request(CASES[0], "opus", api_key="sk-ant-1")
    call = _front_door_call(sdk, Operation.MESSAGES, zero_copy=True)
    ours = await _provider(api_key="sk-ant-1").build_request(call, Target("anthropic", "claude-opus-4-6"))
    assert orjson.loads(ours.body) == {**orjson.loads(sdk.content), "model": "claude-opus-4-6"}


async def test_default_version_header_when_the_caller_sent_none() -> None:
    call = MessagesCall(Operation.MESSAGES, "claude-opus-4-6", {"max_tokens": 8, "messages": USER})
    ours = await _provider(api_key="k").build_request(call, Target("anthropic", "claude-opus-4-6"))
    assert ours.headers["anthropic-version"] == "2023-06-01"
