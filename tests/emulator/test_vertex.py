"""The Vertex endpoints against the official SDK and raw HTTP: success, streaming, validation, catalog."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anthropic
import orjson
import pytest
import requests

from cloudgate.emulator import EmulatorConfig

from .conftest import MODEL, PROJECT, REGION, TOKEN, Emulator, vertex_client

HI = [{"role": "user", "content": "Hello there, emulator"}]


def _url(srv: Any, model: str = MODEL, location: str = REGION, method: str = "rawPredict") -> str:
    return (
        f"{srv.url}/v1/projects/{PROJECT}/locations/{location}/publishers/anthropic/models/{model}:{method}"
    )


def _post(url: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return requests.post(
        url, data=data, headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})}, timeout=5
    )


def _body(**extra: Any) -> dict[str, Any]:
    return {"anthropic_version": "vertex-2023-10-16", "max_tokens": 100, "messages": HI, **extra}


def test_sdk_plain_message(emulator: Emulator) -> None:
    app, srv = emulator
    client = vertex_client(srv)
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=HI)
    message = raw.parse()
    assert raw.headers["request-id"].startswith("req_vrtx_")
    assert message.id.startswith("msg_vrtx_") and len(message.id) == len("msg_vrtx_") + 24
    assert message.model == MODEL
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello from the cloudgate emulator. You said: Hello there, emulator"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.usage.cache_read_input_tokens == 0
    # The SDK's wire form reached the emulator: model in the URL, anthropic_version in the body.
    seen = app.state.requests[-1]
    assert seen.path.endswith(f"/models/{MODEL}:rawPredict")
    assert "model" not in seen.json and seen.json["anthropic_version"]
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"


def test_percent_encoded_at_sign_is_accepted(emulator: Emulator) -> None:
    _, srv = emulator
    resp = _post(_url(srv, model=MODEL.replace("@", "%40")), _body())
    assert resp.status_code == 200
    assert resp.json()["model"] == MODEL


def test_missing_or_unknown_token_is_401(emulator: Emulator) -> None:
    _, srv = emulator
    for headers in ({}, {"Authorization": "Bearer nope"}):
        resp = requests.post(_url(srv), data=orjson.dumps(_body()), headers=headers, timeout=5)
        assert resp.status_code == 401
        assert resp.json()["error"]["status"] == "UNAUTHENTICATED"


def test_require_auth_off(make_emulator: Callable[..., Emulator]) -> None:
    _, srv = make_emulator(EmulatorConfig(require_auth=False))
    resp = requests.post(_url(srv), data=orjson.dumps(_body()), timeout=5)
    assert resp.status_code == 200


def test_project_restriction_is_403(make_emulator: Callable[..., Emulator]) -> None:
    _, srv = make_emulator(EmulatorConfig(static_tokens=[TOKEN], projects=["only-this-one"]))
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        vertex_client(srv).messages.create(model=MODEL, max_tokens=10, messages=HI)
    resource = f"projects/{PROJECT}/locations/{REGION}/publishers/anthropic/models/{MODEL}"
    message = (
        "Permission 'aiplatform.endpoints.predict' denied on resource "
        f"'//aiplatform.googleapis.com/{resource}' (or it may not exist)."
    )
    assert info.value.body == {"error": {"code": 403, "message": message, "status": "PERMISSION_DENIED"}}


def test_sdk_streaming(make_emulator: Callable[..., Emulator]) -> None:
    _, srv = make_emulator(EmulatorConfig(static_tokens=[TOKEN]))
    with vertex_client(srv).messages.stream(model=MODEL, max_tokens=100, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the cloudgate emulator. You said: Hello there, emulator"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 10  # one token per word
    assert final.usage.input_tokens > 0


def test_stream_event_sequence(emulator: Emulator) -> None:
    _, srv = emulator
    resp = _post(_url(srv, method="streamRawPredict"), _body(stream=True))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["request-id"].startswith("req_vrtx_")
    names = [line[len("event: ") :] for line in resp.text.splitlines() if line.startswith("event: ")]
    assert names[:4] == ["message_start", "ping", "content_block_start", "content_block_delta"]
    assert names[-4:] == ["content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    datas = [orjson.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: ")]
    start = datas[0]["message"]
    assert start["content"] == [] and start["usage"]["output_tokens"] == 1
    assert start["usage"]["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": 0,
    }
    deltas = [d["delta"]["text"] for d in datas if d["type"] == "content_block_delta"]
    assert len(deltas) > 1 and all(len(d.split()) <= 3 for d in deltas)
    assert datas[-2]["usage"]["output_tokens"] == 10


def test_stream_delay_arrives_incrementally(make_emulator: Callable[..., Emulator]) -> None:
    delay = 0.05
    _, srv = make_emulator(EmulatorConfig(static_tokens=[TOKEN], stream_delay=delay))
    resp = requests.post(
        _url(srv, method="streamRawPredict"),
        data=orjson.dumps(_body(stream=True)),
        headers={"Authorization": f"Bearer {TOKEN}"},
        stream=True,
        timeout=5,
    )
    arrivals: list[float] = []
    events = 0
    for chunk in resp.iter_content(chunk_size=None):
        arrivals.append(time.monotonic())
        events += chunk.count(b"event: ")
    assert events >= 8
    # Events really trickled out: the spread between first and last chunk covers the delays.
    assert arrivals[-1] - arrivals[0] >= delay * (events - 1) * 0.9
    assert len(arrivals) >= events // 2


def test_count_tokens(emulator: Emulator) -> None:
    _, srv = emulator
    client = vertex_client(srv)
    first = client.messages.count_tokens(model=MODEL, messages=HI)
    again = client.messages.count_tokens(model=MODEL, messages=HI)
    longer = client.messages.count_tokens(model=MODEL, messages=HI, system="x" * 400)
    assert first.input_tokens == again.input_tokens > 0
    assert longer.input_tokens >= first.input_tokens + 100
    # The same count the message itself reports.
    message = client.messages.create(model=MODEL, max_tokens=10, messages=HI)
    assert message.usage.input_tokens == first.input_tokens


def test_count_tokens_at_global(make_emulator: Callable[..., Emulator]) -> None:
    _, srv = make_emulator()
    with pytest.raises(anthropic.NotFoundError):
        vertex_client(srv, region="global").messages.count_tokens(model=MODEL, messages=HI)
    _, srv2 = make_emulator(EmulatorConfig(static_tokens=[TOKEN], count_tokens_global=True))
    assert vertex_client(srv2, region="global").messages.count_tokens(model=MODEL, messages=HI).input_tokens


def test_beta_header(emulator: Emulator) -> None:
    _, srv = emulator
    client = vertex_client(srv)
    ok = client.beta.messages.create(
        model=MODEL,
        max_tokens=10,
        messages=HI,
        betas=["interleaved-thinking-2025-05-14", "claude-code-20250219"],
    )
    assert ok.content
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.messages.create(model=MODEL, max_tokens=10, messages=HI, betas=["files-api-2025-04-14"])
    assert info.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "Unexpected value(s) `files-api-2025-04-14` for the `anthropic-beta` header. Please consult "
            "our documentation at docs.anthropic.com or try again without the header.",
        },
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_tokens": 10, "messages": HI}, "anthropic_version: Field required"),
        (_body(model=MODEL), "model: Extra inputs are not permitted"),
        ({"anthropic_version": "v", "messages": HI}, "max_tokens: Field required"),
        (_body(max_tokens="ten"), "max_tokens: Input should be a valid integer"),
        ({"anthropic_version": "v", "max_tokens": 10}, "messages: Field required"),
        (_body(messages="hi"), "messages: Input should be a valid list"),
        (_body(messages=[{"role": "robot", "content": "hi"}]), "messages.0.role: Input should be 'user', 'assistant' or 'system'"),
        (_body(messages=[{"role": "user"}]), "messages.0.content: Field required"),
        (_body(messages=[{"role": "user", "content": 5}]), "messages.0.content: Input should be a valid list"),
        (_body(messages=[{"role": "user", "content": [{"type": "text"}]}]), "messages.0.content.0.text.text: Field required"),
        (_body(messages=[{"role": "user", "content": [{"type": "bogus"}]}]), "messages.0.content.0: Input tag 'bogus'"),
        (_body(messages=[{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "x", "input": []}]}]),
         "messages.0.content.0.tool_use.input: Input should be a valid dictionary"),
        (_body(system=7), "system: Input should be a valid list"),
        (_body(tools=[{"description": "nameless"}]), "tools.0.name: Field required"),
    ],
)  # fmt: skip
def test_body_validation(emulator: Emulator, body: dict[str, Any], message: str) -> None:
    _, srv = emulator
    resp = _post(_url(srv), body)
    assert resp.status_code == 400
    doc = resp.json()
    assert doc["type"] == "error" and doc["error"]["type"] == "invalid_request_error"
    assert doc["error"]["message"].startswith(message)


def test_system_role_and_rich_blocks_are_accepted(emulator: Emulator) -> None:
    _, srv = emulator
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
        ]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a b"}]},
    ]  # fmt: skip
    resp = _post(_url(srv), _body(messages=messages, system=[{"type": "text", "text": "sys"}]))
    assert resp.status_code == 200, resp.text


def test_count_tokens_needs_model(emulator: Emulator) -> None:
    _, srv = emulator
    resp = _post(_url(srv, model="count-tokens"), {"anthropic_version": "v", "messages": HI})
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == "model: Field required"


def test_invalid_json_is_google_400(emulator: Emulator) -> None:
    _, srv = emulator
    for raw in (b"{not json", b"[1, 2]"):
        resp = _post(_url(srv), raw)
        assert resp.status_code == 400
        error = resp.json()["error"]
        assert error["status"] == "INVALID_ARGUMENT" and error["message"].startswith(
            "Invalid JSON payload received."
        )


def _not_found_text(location: str, model: str) -> str:
    return (
        f"Publisher Model `projects/{PROJECT}/locations/{location}/publishers/anthropic/models/{model}` was not "
        "found or your project does not have access to it. Please ensure you are using a valid model version. "
        "For more information, see: https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/versioning"
    )


def test_model_not_offered_in_region_is_404(emulator: Emulator) -> None:
    _, srv = emulator
    opus41 = "claude-opus-4-1@20250805"  # catalog: us-east5 and europe-west1 only
    assert _post(_url(srv, model=opus41), _body()).status_code == 200
    for location in ("asia-east1", "global"):
        resp = _post(_url(srv, model=opus41, location=location), _body())
        assert resp.status_code == 404
        assert resp.json() == {
            "error": {"code": 404, "message": _not_found_text(location, opus41), "status": "NOT_FOUND"}
        }
    with pytest.raises(anthropic.NotFoundError):
        vertex_client(srv, region="global").messages.create(model=opus41, max_tokens=5, messages=HI)
    assert vertex_client(srv, region="global").messages.create(model=MODEL, max_tokens=5, messages=HI).content


def test_unknown_models(make_emulator: Callable[..., Emulator]) -> None:
    _, srv = make_emulator()
    assert _post(_url(srv, model="claude-opus-9@20300101", location="asia-east1"), _body()).status_code == 200
    assert _post(_url(srv, model="gemini-2.0-flash"), _body()).status_code == 404
    _, strict = make_emulator(EmulatorConfig(static_tokens=[TOKEN], strict_models=True))
    assert _post(_url(strict, model="claude-opus-9@20300101"), _body()).status_code == 404
    assert _post(_url(strict), _body()).status_code == 200


def test_max_tokens_one_probe(emulator: Emulator) -> None:
    _, srv = emulator
    message = vertex_client(srv).messages.create(model=MODEL, max_tokens=1, messages=HI)
    assert message.stop_reason == "max_tokens"
    assert message.content[0].text == "Hello"
    assert message.usage.output_tokens == 1


def test_tool_use_from_script(make_emulator: Callable[..., Emulator]) -> None:
    from importlib import resources

    script = resources.files("cloudgate.emulator").joinpath("scripts/tool_round_trip.yaml")
    _, srv = make_emulator(EmulatorConfig(static_tokens=[TOKEN], script=str(script)))
    client = vertex_client(srv)
    tools: list[Any] = [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}]
    first = client.messages.create(
        model=MODEL,
        max_tokens=200,
        tools=tools,
        messages=[{"role": "user", "content": "please RUN_TOOL now"}],
    )
    assert first.stop_reason == "tool_use"
    call = first.content[0]
    assert call.type == "tool_use" and call.name == "Bash" and call.id.startswith("toolu_")
    assert call.input == {"command": "echo cloudgate-tool-ok", "description": "echo"}

    with client.messages.stream(
        model=MODEL,
        max_tokens=200,
        tools=tools,
        messages=[{"role": "user", "content": "please RUN_TOOL now"}],
    ) as stream:
        streamed = stream.get_final_message()
    assert streamed.content[0].type == "tool_use"
    assert streamed.content[0].input == {"command": "echo cloudgate-tool-ok", "description": "echo"}

    second = client.messages.create(
        model=MODEL,
        max_tokens=200,
        tools=tools,
        messages=[
            {"role": "user", "content": "please RUN_TOOL now"},
            {"role": "assistant", "content": [c.model_dump() for c in first.content]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "cloudgate-tool-ok\n"}
                ],
            },
        ],
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "Tool said: cloudgate-tool-ok"

    # Without the tool on offer (a side request quoting the prompt) the script does not call it.
    side = client.messages.create(
        model=MODEL, max_tokens=200, messages=[{"role": "user", "content": "RUN_TOOL"}]
    )
    assert side.stop_reason == "end_turn"


def test_prompt_cache_creation_then_read(make_emulator: Callable[..., Emulator]) -> None:
    _, srv = make_emulator(EmulatorConfig(static_tokens=[TOKEN], min_cacheable_tokens=100))
    client = vertex_client(srv)
    system: Any = [{"type": "text", "text": "rules " * 200, "cache_control": {"type": "ephemeral"}}]
    first = client.messages.create(model=MODEL, max_tokens=10, system=system, messages=HI)
    second = client.messages.create(model=MODEL, max_tokens=10, system=system, messages=HI)
    assert first.usage.cache_creation_input_tokens and first.usage.cache_creation_input_tokens >= 250
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation and first.usage.cache_creation.ephemeral_5m_input_tokens == (
        first.usage.cache_creation_input_tokens
    )
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.input_tokens == first.usage.input_tokens
    # Another model is another cache.
    other = client.messages.create(model="claude-sonnet-4-6", max_tokens=10, system=system, messages=HI)
    assert other.usage.cache_read_input_tokens == 0 and other.usage.cache_creation_input_tokens

    one_hour: Any = [
        {"type": "text", "text": "other " * 200, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    hour = client.messages.create(model=MODEL, max_tokens=10, system=one_hour, messages=HI)
    assert hour.usage.cache_creation and hour.usage.cache_creation.ephemeral_1h_input_tokens > 0
    assert hour.usage.cache_creation.ephemeral_5m_input_tokens == 0


def test_small_prefix_is_not_cached(emulator: Emulator) -> None:
    _, srv = emulator  # default minimum 1024 tokens
    system: Any = [{"type": "text", "text": "short", "cache_control": {"type": "ephemeral"}}]
    message = vertex_client(srv).messages.create(model=MODEL, max_tokens=10, system=system, messages=HI)
    assert message.usage.cache_creation_input_tokens == 0 and message.usage.cache_read_input_tokens == 0


def test_payload_over_30mb_is_413(emulator: Emulator) -> None:
    _, srv = emulator
    big = _body(messages=[{"role": "user", "content": "x" * (30 * 1024 * 1024)}])
    resp = _post(_url(srv), big)
    assert resp.status_code == 413
    assert resp.json()["error"]["message"] == "Request payload size exceeds the limit: 31457280 bytes."


def test_thinking_block_when_thinking_is_enabled(emulator: Emulator) -> None:
    _, srv = emulator
    client = vertex_client(srv)
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    plain = client.messages.create(model=MODEL, max_tokens=2048, messages=HI, thinking=thinking)
    assert [b.type for b in plain.content] == ["thinking", "text"]
    with client.messages.stream(model=MODEL, max_tokens=2048, messages=HI, thinking=thinking) as stream:
        final = stream.get_final_message()
    first = final.content[0]
    assert first.type == "thinking" and first.thinking.startswith("The user wrote") and first.signature
    assert final.content[1].type == "text" and final.content[1].text.startswith("Hello from the cloudgate")
    assert final.usage.output_tokens == plain.usage.output_tokens > 10
    # The signed block goes back in the next turn's history and is accepted.
    history: Any = [*HI, {"role": "assistant", "content": [b.model_dump() for b in final.content]}, *HI]
    assert client.messages.create(model=MODEL, max_tokens=2048, messages=history, thinking=thinking).content
