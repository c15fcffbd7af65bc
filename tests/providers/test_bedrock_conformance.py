"""Our Bedrock request must be the one the official SDK (`anthropic.AnthropicBedrock`) sends.

The SDK runs for real against an in-process httpx transport that records its request (and
answers a canned Message or event stream); the same call then goes through
`BedrockProvider.build_request`, built the way a front door would build it, and the two are
compared: method, URL, JSON body, betas. Both requests' SigV4 signatures are recomputed with
botocore from the fixed credentials and each request's own `X-Amz-Date`, so a signature over
different bytes, path or headers than the ones sent fails the test.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from cloudgate.config.settings import BedrockSettings
from cloudgate.protocol.eventstream import encode_chunk
from cloudgate.protocol.messages import MessagesCall, Operation, WireFormat
from cloudgate.providers.auth.aws import AwsSigner
from cloudgate.providers.base import Target
from cloudgate.providers.bedrock import BedrockProvider
from cloudgate.providers.transport import Transport

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "session-token-example"

MESSAGE = {
    "id": "msg_bdrk_01",
    "type": "message",
    "role": "assistant",
    "model": "claude",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 3, "output_tokens": 1},
}
EVENTS = [
    {
        "type": "message_start",
        "message": {**MESSAGE, "content": [], "stop_reason": None},
    },
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 1},
    },
    {"type": "message_stop"},
]
EVENT_STREAM = b"".join(encode_chunk(orjson.dumps(e)) for e in EVENTS)

# What Claude Code sends; without it the SDK sends its own newer version constant.
VERSION = {"anthropic_version": "bedrock-2023-05-31"}
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
    """One SDK call."""

    name: str
    run: Callable[[anthropic.AnthropicBedrock, str], Any]


def _plain(c: anthropic.AnthropicBedrock, model: str) -> Any:
    return c.messages.create(model=model, max_tokens=64, messages=USER, extra_body=VERSION)  # type: ignore[arg-type]


def _streaming(c: anthropic.AnthropicBedrock, model: str) -> Any:
    return list(c.messages.create(model=model, max_tokens=64, messages=USER, stream=True, extra_body=VERSION))  # type: ignore[arg-type]


def _tools(c: anthropic.AnthropicBedrock, model: str) -> Any:
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


def _betas(c: anthropic.AnthropicBedrock, model: str) -> Any:
    return c.beta.messages.create(
        model=model,
        max_tokens=64,
        messages=USER,  # type: ignore[arg-type]
        betas=["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"],
        stop_sequences=["END"],
        extra_body=VERSION,
    )


def _betas_streaming(c: anthropic.AnthropicBedrock, model: str) -> Any:
    stream = c.beta.messages.create(
        model=model,
        max_tokens=64,
        messages=USER,  # type: ignore[arg-type]
        betas=["fine-grained-tool-streaming-2025-05-14"],
        tools=TOOLS,  # type: ignore[arg-type]
        stream=True,
        extra_body=VERSION,
    )
    return list(stream)


CASES = [
    Case("plain", _plain),
    Case("streaming", _streaming),
    Case("tools", _tools),
    Case("betas", _betas),
    Case("betas-streaming", _betas_streaming),
]
MODELS = [
    "anthropic.claude-3-5-haiku-20241022-v1:0",  # base id (on-demand)
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0",  # geographic inference profile
    "global.anthropic.claude-opus-4-6-v1",  # global inference profile
    "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
    "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0",
]
REGIONS = ["us-east-1", "eu-west-1"]


def _sdk_request(case: Case, region: str, model: str, *, token: str | None = None) -> httpx2.Request:
    """Run the SDK and return the request it sent."""
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.url.path.endswith("/invoke-with-response-stream"):
            return httpx2.Response(
                200, content=EVENT_STREAM, headers={"content-type": "application/vnd.amazon.eventstream"}
            )
        return httpx2.Response(200, json=MESSAGE)

    client = anthropic.AnthropicBedrock(
        aws_region=region,
        aws_access_key=ACCESS_KEY,
        aws_secret_key=SECRET_KEY,
        aws_session_token=token,
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    with client:
        case.run(client, model)
    assert len(seen) == 1
    return seen[0]


def _front_door_call(req: httpx2.Request, model: str, *, bedrock_door: bool = False) -> MessagesCall:
    """The `MessagesCall` a front door would make of the SDK's request (Bedrock or Anthropic door)."""
    raw = req.content
    doc = orjson.loads(raw)
    version = doc.pop("anthropic_version", None)
    header = [b.strip() for b in req.headers.get("anthropic-beta", "").split(",") if b.strip()]
    betas = list(dict.fromkeys([*header, *doc.get("anthropic_beta", [])]))
    if not bedrock_door:
        doc.pop("anthropic_beta", None)
    return MessagesCall(
        operation=Operation.MESSAGES,
        model=model,
        body=doc,
        stream=req.url.path.endswith("/invoke-with-response-stream"),
        betas=betas,
        anthropic_version=req.headers.get("anthropic-version"),
        body_version=version if bedrock_door else None,
        frontdoor=WireFormat.BEDROCK if bedrock_door else WireFormat.ANTHROPIC,
        raw_body=raw if bedrock_door else b"",
    )


def _signer(region: str, token: str | None = None) -> AwsSigner:
    creds = Credentials(ACCESS_KEY, SECRET_KEY, token)
    return AwsSigner(region=region, credentials=creds)


def _provider(region: str = "us-east-1", token: str | None = None, **settings: Any) -> BedrockProvider:
    return BedrockProvider(BedrockSettings(region=region, **settings), Transport(), _signer(region, token))


def signature_is_valid(method: str, url: str, headers: dict[str, str], body: bytes, region: str) -> bool:
    """Recompute the SigV4 signature of a request from the fixed credentials and its X-Amz-Date."""
    auth = headers.get("Authorization") or headers.get("authorization") or ""
    fields = dict(part.strip().split("=", 1) for part in auth.removeprefix("AWS4-HMAC-SHA256 ").split(","))
    signed = fields["SignedHeaders"].split(";")
    lower = {k.lower(): v for k, v in headers.items()}
    token = lower.get("x-amz-security-token")
    request = AWSRequest(
        method=method, url=url, headers={h: lower[h] for h in signed if h in lower}, data=body
    )
    request.context["timestamp"] = lower["x-amz-date"]
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, token), "bedrock", region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    scope = f"{ACCESS_KEY}/{lower['x-amz-date'][:8]}/{region}/bedrock/aws4_request"
    return fields["Credential"] == scope and fields["Signature"] == expected and "host" in signed


def _canonical_path(url: str) -> str:
    return SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "bedrock", "us-east-1")._normalize_url_path(
        httpx2.URL(url).raw_path.decode()
    )


def _assert_same(ours: Any, sdk: httpx2.Request, region: str) -> None:
    assert ours.method == sdk.method == "POST"
    assert ours.url == str(sdk.url)
    assert orjson.loads(ours.body) == orjson.loads(sdk.content)
    for name in ("content-type", "accept", "anthropic-version", "anthropic-beta"):
        assert ours.headers.get(name) == sdk.headers.get(name), name
    # Both signatures verify, over the same canonical path.
    assert signature_is_valid("POST", str(sdk.url), dict(sdk.headers), sdk.content, region)
    assert signature_is_valid("POST", ours.url, ours.headers, ours.body, region)
    assert _canonical_path(ours.url) == _canonical_path(str(sdk.url))


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_request_matches_sdk(case: Case, model: str, region: str) -> None:
    sdk = _sdk_request(case, region, model)
    call = _front_door_call(sdk, model)
    ours = await _provider(region).build_request(call, Target("bedrock", model, region))
    _assert_same(ours, sdk, region)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_bedrock_front_door_matches_sdk(case: Case) -> None:
    """A Bedrock caller's betas and version come in the body; the request is still the SDK's."""
    model = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    sdk = _sdk_request(case, "us-west-2", model)
    call = _front_door_call(sdk, model, bedrock_door=True)
    ours = await _provider("us-west-2").build_request(call, Target("bedrock", model, "us-west-2"))
    _assert_same(ours, sdk, "us-west-2")
    assert ours.body == sdk.content  # byte for byte: no re-serialisation


async def test_sdk_own_version_is_kept_on_the_bedrock_front_door() -> None:
    """Without extra_body the SDK sends its own version constant; a Bedrock caller's value wins."""
    model = "global.anthropic.claude-opus-4-6-v1"

    def run(c: anthropic.AnthropicBedrock, m: str) -> Any:
        return c.messages.create(model=m, max_tokens=8, messages=USER)  # type: ignore[arg-type]

    sdk = _sdk_request(Case("sdk-version", run), "us-east-1", model)
    call = _front_door_call(sdk, model, bedrock_door=True)
    call.raw_body = b""  # force re-serialisation: the version must still be the caller's
    ours = await _provider().build_request(call, Target("bedrock", model, "us-east-1"))
    assert orjson.loads(ours.body) == orjson.loads(sdk.content)
    assert orjson.loads(ours.body)["anthropic_version"] != "bedrock-2023-05-31"


async def test_session_token_is_signed_like_the_sdk() -> None:
    model = "anthropic.claude-3-5-haiku-20241022-v1:0"
    sdk = _sdk_request(CASES[0], "us-east-1", model, token=SESSION_TOKEN)
    call = _front_door_call(sdk, model)
    ours = await _provider("us-east-1", SESSION_TOKEN).build_request(
        call, Target("bedrock", model, "us-east-1")
    )
    _assert_same(ours, sdk, "us-east-1")
    assert ours.headers["X-Amz-Security-Token"] == sdk.headers["x-amz-security-token"] == SESSION_TOKEN
    assert "x-amz-security-token" in ours.headers["Authorization"]


async def test_api_key_mode_matches_sdk() -> None:
    model = "global.anthropic.claude-opus-4-6-v1"
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=MESSAGE)

    client = anthropic.AnthropicBedrock(
        aws_region="us-east-1",
        api_key="bedrock-api-key-1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    with client:
        _plain(client, model)
    call = _front_door_call(seen[0], model)
    signer = AwsSigner(region="us-east-1", api_key="bedrock-api-key-1")
    provider = BedrockProvider(BedrockSettings(api_key="bedrock-api-key-1"), Transport(), signer)
    ours = await provider.build_request(call, Target("bedrock", model, "us-east-1"))
    assert ours.url == str(seen[0].url)
    assert orjson.loads(ours.body) == orjson.loads(seen[0].content)
    assert ours.headers["Authorization"] == seen[0].headers["authorization"] == "Bearer bedrock-api-key-1"
    assert not any(k.lower().startswith("x-amz-") for k in ours.headers)


async def test_sdk_has_no_bedrock_count_tokens_so_ours_follows_the_api_reference() -> None:
    client = anthropic.AnthropicBedrock(
        aws_region="us-east-1", aws_access_key=ACCESS_KEY, aws_secret_key=SECRET_KEY, max_retries=0
    )
    with client, pytest.raises(anthropic.AnthropicError, match="not supported"):
        client.messages.count_tokens(model="anthropic.claude-3-5-haiku-20241022-v1:0", messages=USER)  # type: ignore[arg-type]

    model = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    call = MessagesCall(
        Operation.COUNT_TOKENS,
        model,
        {"messages": USER, "tools": TOOLS},
        betas=["interleaved-thinking-2025-05-14"],
    )
    ours = await _provider("us-east-1").build_request(call, Target("bedrock", model, "us-east-1"))
    assert ours.url == f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{model}/count-tokens"
    doc = orjson.loads(ours.body)
    assert list(doc) == ["input"] and list(doc["input"]) == ["invokeModel"]
    inner = orjson.loads(base64.b64decode(doc["input"]["invokeModel"]["body"]))
    assert inner == {
        "messages": USER,
        "tools": TOOLS,
        "anthropic_version": "bedrock-2023-05-31",
        "anthropic_beta": ["interleaved-thinking-2025-05-14"],
        "max_tokens": 1,
    }
    assert signature_is_valid("POST", ours.url, ours.headers, ours.body, "us-east-1")


def test_the_verifier_rejects_a_tampered_request() -> None:
    model = "anthropic.claude-3-5-haiku-20241022-v1:0"
    sdk = _sdk_request(CASES[0], "us-east-1", model)
    headers = dict(sdk.headers)
    assert signature_is_valid("POST", str(sdk.url), headers, sdk.content, "us-east-1")
    assert not signature_is_valid("POST", str(sdk.url), headers, sdk.content + b" ", "us-east-1")
    assert not signature_is_valid(
        "POST", str(sdk.url).replace("/invoke", "/invoke-x"), headers, sdk.content, "us-east-1"
    )
    assert not signature_is_valid("POST", str(sdk.url), headers, sdk.content, "us-west-2")
