"""The official `anthropic` SDK's clients pointed at the gateway, plain and streaming."""

from __future__ import annotations

import anthropic
import pytest

from cloudgate.emulator import Fault
from tests.conftest import Stack

pytestmark = pytest.mark.e2e

MSG = [{"role": "user", "content": "Hello, SDK"}]


def test_anthropic_client_plain_and_streaming(gw: Stack) -> None:
    client = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=100, messages=MSG)
    assert message.content[0].type == "text" and message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=MSG) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text
    assert final.usage.output_tokens > 0
    assert client.messages.count_tokens(model="claude-sonnet-4-6", messages=MSG).input_tokens > 0
    models = {m.id for m in client.models.list()}
    assert "claude-sonnet-4-6" in models
    records = gw.records(3)  # /v1/models is not a Messages call and leaves no record
    assert records[1].stream and records[1].usage.output_tokens == final.usage.output_tokens


def test_anthropic_client_with_bearer_token_and_betas(gw: Stack) -> None:
    client = anthropic.Anthropic(base_url=gw.url, auth_token=gw.key, max_retries=0)
    message = client.beta.messages.create(
        model="claude-sonnet-4-6", max_tokens=50, messages=MSG, betas=["interleaved-thinking-2025-05-14"]
    )
    assert message.content
    assert gw.upstream_calls[0].headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"


def test_vertex_client_plain_and_streaming(gw: Stack) -> None:
    client = anthropic.AnthropicVertex(
        base_url=f"{gw.url}/vertex_ai/v1",
        region="global",
        project_id="my-laptop-project",
        access_token=gw.key,  # what CLAUDE_CODE_SKIP_VERTEX_AUTH + a gateway key amounts to
        max_retries=0,
    )
    message = client.messages.create(
        model="claude-sonnet-4-5@20250929",
        max_tokens=100,
        messages=MSG,
        extra_body={"anthropic_version": "vertex-2023-10-16"},
    )
    assert message.content[0].text
    with client.messages.stream(model="claude-opus-4-6", max_tokens=100, messages=MSG) as stream:
        final = stream.get_final_message()
    assert final.content[0].text and final.usage.output_tokens > 0
    streamed = gw.upstream_calls[-1]
    assert streamed.path.endswith("/models/claude-opus-4-6:streamRawPredict")
    # The SDK's own anthropic_version (a date-like value in SDK 2.x) travels unchanged.
    from anthropic._constants import ANTHROPIC_API_VERSION

    assert streamed.json["anthropic_version"] == ANTHROPIC_API_VERSION


def test_sdk_sees_typed_errors(gw_single: Stack) -> None:
    gw = gw_single
    client = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    gw.emulator.state.faults.add(Fault(kind="rate_limit", times=1))
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=MSG)
    assert "Quota exceeded" in str(info.value)
    gw.emulator.state.faults.add(Fault(kind="overloaded", times=1))
    with pytest.raises(anthropic.APIStatusError) as status_info:
        client.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=MSG)
    assert status_info.value.status_code == 529
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gw.url, api_key="nope", max_retries=0).messages.create(
            model="claude-sonnet-4-6", max_tokens=5, messages=MSG
        )


def test_sdk_retries_recover_through_the_gateway(gw_single: Stack) -> None:
    gw = gw_single
    gw.emulator.state.faults.add(Fault(kind="overloaded", times=1))
    client = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=2)
    assert client.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=MSG).content
    assert [r.status for r in gw.records(2)] == [529, 200]


def test_the_gateway_absorbs_an_overload_before_the_sdk_sees_it(gw: Stack) -> None:
    gw.emulator.state.faults.add(Fault(kind="overloaded", times=1))
    client = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    assert client.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=MSG).content
    (record,) = gw.records(1)
    assert record.status == 200 and [a["status"] for a in record.attempts] == [529, 200]


@pytest.mark.parametrize("backend", ["vertex", "bedrock", "anthropic"])
def test_anthropic_bedrock_client_with_a_bearer_key(make_stack, backend: str) -> None:
    stack = make_stack(settings={"provider": backend})
    client = anthropic.AnthropicBedrock(
        api_key=stack.key, aws_region="us-east-1", base_url=f"{stack.url}/bedrock", max_retries=0
    )
    model = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    message = client.messages.create(model=model, max_tokens=60, messages=MSG)
    assert message.content[0].text
    with client.messages.stream(model=model, max_tokens=60, messages=MSG) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text and final.usage.output_tokens > 0
    records = stack.records(2)
    assert {(r.frontdoor, r.provider, r.status) for r in records} == {("bedrock", backend, 200)}
