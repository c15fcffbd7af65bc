"""Our Vertex request must be the one the official SDK (`anthropic.AnthropicVertex`) sends.

The SDK runs for real against an in-process httpx transport that records its request; the
same call then goes through `VertexProvider.build_request`, built the way a front door would
build it, and the two requests are compared: method, full URL, JSON body, betas, auth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from cloudgate.config.settings import VertexSettings
from cloudgate.protocol.messages import MessagesCall, Operation, WireFormat
from cloudgate.providers.auth.google import GoogleTokenSource
from cloudgate.providers.base import Target
from cloudgate.providers.transport import Transport
from cloudgate.providers.vertex import VertexProvider

PROJECT = "proj-1"

MESSAGE = {
    "id": "msg_vrtx_01",
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
    b'data: {"type":"message_start","message":{"id":"msg_vrtx_01","type":"message","role":"assistant",'
    b'"model":"claude","content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
    b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"output_tokens":1}}\n\n'
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n\n'
)

VERSION = {"anthropic_version": "vertex-2023-10-16"}
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
TOOL_TURNS = [
    {"role": "user", "content": "list files"},
    {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}],
    },
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a\nb"}]},
]


@dataclass
class Case:
    """One SDK call and what it means for a front door."""

    name: str
    operation: Operation
    run: Callable[[anthropic.AnthropicVertex, str], Any]


def _plain(c: anthropic.AnthropicVertex, model: str) -> Any:
    return c.messages.create(model=model, max_tokens=64, messages=USER, extra_body=VERSION)


def _streaming(c: anthropic.AnthropicVertex, model: str) -> Any:
    stream = c.messages.create(model=model, max_tokens=64, messages=USER, stream=True, extra_body=VERSION)
    return list(stream)


def _tools(c: anthropic.AnthropicVertex, model: str) -> Any:
    return c.messages.create(
        model=model,
        max_tokens=1024,
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        messages=TOOL_TURNS,  # type: ignore[arg-type]
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "auto"},
        metadata={"user_id": "u-1"},
        extra_body=VERSION,
    )


def _betas(c: anthropic.AnthropicVertex, model: str) -> Any:
    return c.beta.messages.create(
        model=model,
        max_tokens=64,
        messages=USER,
        betas=["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"],
        stop_sequences=["END"],
        extra_body=VERSION,
    )


def _betas_streaming(c: anthropic.AnthropicVertex, model: str) -> Any:
    stream = c.beta.messages.create(
        model=model,
        max_tokens=64,
        messages=USER,
        betas=["fine-grained-tool-streaming-2025-05-14"],
        tools=TOOLS,  # type: ignore[arg-type]
        stream=True,
        extra_body=VERSION,
    )
    return list(stream)


def _count(c: anthropic.AnthropicVertex, model: str) -> Any:
    return c.messages.count_tokens(model=model, messages=USER, tools=TOOLS, extra_body=VERSION)  # type: ignore[arg-type]


def _count_beta(c: anthropic.AnthropicVertex, model: str) -> Any:
    return c.beta.messages.count_tokens(
        model=model, messages=USER, betas=["token-efficient-tools-2025-02-19"], extra_body=VERSION
    )


CASES = [
    Case("plain", Operation.MESSAGES, _plain),
    Case("streaming", Operation.MESSAGES, _streaming),
    Case("tools", Operation.MESSAGES, _tools),
    Case("betas", Operation.MESSAGES, _betas),
    Case("betas-streaming", Operation.MESSAGES, _betas_streaming),
    Case("count-tokens", Operation.COUNT_TOKENS, _count),
    Case("count-tokens-beta", Operation.COUNT_TOKENS, _count_beta),
]
MODELS = ["claude-sonnet-4-5@20250929", "claude-opus-4-6"]
REGIONS = ["global", "us", "eu", "europe-west1"]


def _sdk_request(case: Case, region: str, model: str, project: str = PROJECT) -> httpx2.Request:
    """Run the SDK and return the request it sent."""
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.url.path.endswith("count-tokens:rawPredict"):
            return httpx2.Response(200, json={"input_tokens": 12})
        if request.url.path.endswith(":streamRawPredict"):
            return httpx2.Response(200, content=SSE, headers={"content-type": "text/event-stream"})
        return httpx2.Response(200, json=MESSAGE)

    client = anthropic.AnthropicVertex(
        region=region,
        project_id=project,
        access_token="tok",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    with client:
        case.run(client, model)
    assert len(seen) == 1
    return seen[0]


def _front_door_call(
    req: httpx2.Request, operation: Operation, model: str, *, vertex_door: bool = False
) -> MessagesCall:
    """The `MessagesCall` a front door would make of the SDK's request."""
    raw = req.content
    doc = orjson.loads(raw)
    stream = bool(doc.pop("stream", False))
    version = doc.pop("anthropic_version", None)
    doc.pop("model", None)
    header = req.headers.get("anthropic-beta", "")
    return MessagesCall(
        operation=operation,
        model=model,
        body=doc,
        stream=stream,
        betas=[b.strip() for b in header.split(",") if b.strip()],
        anthropic_version=req.headers.get("anthropic-version"),
        body_version=version if vertex_door else None,
        frontdoor=WireFormat.VERTEX if vertex_door else WireFormat.ANTHROPIC,
        raw_body=raw if vertex_door else b"",
    )


def _provider(**settings: Any) -> VertexProvider:
    return VertexProvider(VertexSettings(**settings), Transport(), GoogleTokenSource(access_token="tok"))


def _betas_of(headers: Any) -> set[str]:
    value = headers.get("anthropic-beta", "")
    return {b for b in value.split(",") if b}


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_request_matches_sdk(case: Case, model: str, region: str) -> None:
    sdk = _sdk_request(case, region, model)
    call = _front_door_call(sdk, case.operation, model)
    ours = await _provider(region="us-east5").build_request(call, Target("vertex", model, region, PROJECT))

    assert ours.method == sdk.method
    assert ours.url == str(sdk.url)
    assert orjson.loads(ours.body) == orjson.loads(sdk.content)
    assert _betas_of(ours.headers) == _betas_of(sdk.headers)
    assert ours.headers["Authorization"] == sdk.headers["authorization"] == "Bearer tok"
    assert ours.headers["content-type"] == "application/json"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_vertex_front_door_forwards_sdk_bytes_unchanged(case: Case) -> None:
    model = "claude-sonnet-4-5@20250929"
    sdk = _sdk_request(case, "global", model)
    call = _front_door_call(sdk, case.operation, model, vertex_door=True)
    ours = await _provider().build_request(call, Target("vertex", model, "global", PROJECT))
    assert ours.url == str(sdk.url)
    assert ours.body == sdk.content  # byte for byte: no re-serialisation


async def test_sdk_own_version_is_kept_on_the_vertex_front_door() -> None:
    """Without extra_body the SDK sends its own version constant; a Vertex caller's value wins."""
    model = "claude-opus-4-6"

    def run(c: anthropic.AnthropicVertex, m: str) -> Any:
        return c.messages.create(model=m, max_tokens=8, messages=USER)

    sdk = _sdk_request(Case("sdk-version", Operation.MESSAGES, run), "global", model)
    sdk_version = orjson.loads(sdk.content)["anthropic_version"]
    call = _front_door_call(sdk, Operation.MESSAGES, model, vertex_door=True)
    call.raw_body = b""  # force re-serialisation: the version must still be the caller's
    ours = await _provider().build_request(call, Target("vertex", model, "global", PROJECT))
    assert orjson.loads(ours.body) == orjson.loads(sdk.content)
    assert orjson.loads(ours.body)["anthropic_version"] == sdk_version


async def test_default_body_version_is_the_documented_one() -> None:
    assert VertexSettings().anthropic_version == "vertex-2023-10-16"
    call = MessagesCall(Operation.MESSAGES, "claude-opus-4-6", {"max_tokens": 8, "messages": USER})
    req = await _provider().build_request(call, Target("vertex", "claude-opus-4-6", "global", PROJECT))
    assert orjson.loads(req.body)["anthropic_version"] == "vertex-2023-10-16"


@pytest.mark.parametrize(
    ("project", "model"),
    [("my;proj", "claude-opus-4-6"), ("proj-1", "claude-x;v=1@2025"), ("p:1", "claude sonnet")],
)
async def test_path_quoting_matches_sdk(project: str, model: str) -> None:
    sdk = _sdk_request(CASES[0], "us-east5", model, project=project)
    call = _front_door_call(sdk, Operation.MESSAGES, model)
    ours = await _provider().build_request(call, Target("vertex", model, "us-east5", project))
    assert ours.url == str(sdk.url)
    assert ours.url.split("/v1", 1)[1].encode() == sdk.url.raw_path.split(b"/v1", 1)[1]
