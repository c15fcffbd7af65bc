"""Every front door with every back end: the 3 x 3 pairs, streamed and not, tool round trip included.

The emulator plays all three upstreams; the gateway is configured for one back end per stack.
"""

from __future__ import annotations

import pytest

from cloudgate.cli.demo import tool_round_trip_script
from cloudgate.emulator import EmulatorConfig, Fault
from tests.conftest import NO_FAILOVER, Stack
from tests.gateway.wire_clients import DOORS, count_tokens, send

BACKENDS = ("vertex", "bedrock", "anthropic")
MODEL = "claude-sonnet-4-5"
BASH = {
    "name": "Bash",
    "description": "Run a shell command",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
    },
}
UPSTREAM_PATH = {
    "vertex": (
        "/models/claude-sonnet-4-5@20250929:rawPredict",
        "/models/claude-sonnet-4-5@20250929:streamRawPredict",
    ),
    "bedrock": (
        "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke",
        "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke-with-response-stream",
    ),
    "anthropic": ("/v1/messages", "/v1/messages"),
}


def _stack(make_stack, backend: str, *, failover: bool = True, **emulator: object) -> Stack:
    config = EmulatorConfig(script=tool_round_trip_script(), count_tokens_global=True, **emulator)  # type: ignore[arg-type]
    settings: dict[str, object] = {"provider": backend, "vertex": {"region": "global"}}
    if not failover:
        settings.update(NO_FAILOVER)
    return make_stack(emulator=config, settings=settings)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("door", DOORS)
def test_tool_round_trip(make_stack, door: str, backend: str, stream: bool) -> None:
    stack = _stack(make_stack, backend)
    ask = {"role": "user", "content": "RUN_TOOL please"}
    first = send(
        stack.url,
        stack.key,
        door,
        MODEL,
        {"max_tokens": 300, "tools": [BASH], "messages": [ask]},
        stream=stream,
    )
    assert first.status == 200, first.message
    (tool,) = first.tool_uses
    assert tool["name"] == "Bash" and tool["input"]["command"] == "echo cloudgate-tool-ok"
    assert first.message["stop_reason"] == "tool_use"

    result = {"type": "tool_result", "tool_use_id": tool["id"], "content": "cloudgate-tool-ok"}
    history = [ask, {"role": "assistant", "content": [tool]}, {"role": "user", "content": [result]}]
    second = send(
        stack.url,
        stack.key,
        door,
        MODEL,
        {"max_tokens": 300, "tools": [BASH], "messages": history},
        stream=stream,
    )
    assert second.status == 200, second.message
    assert "Tool said: cloudgate-tool-ok" in second.text
    if stream:
        assert second.events[-1]["type"] == "message_stop"
        if door == "bedrock":
            assert "amazon-bedrock-invocationMetrics" in second.events[-1]
        else:
            assert all("amazon-bedrock-invocationMetrics" not in e for e in second.events)

    calls = [c for c in stack.upstream_calls]
    assert [c.path.split("?")[0] for c in calls][-1].endswith(UPSTREAM_PATH[backend][stream])
    records = stack.records(2)
    assert {(r.frontdoor, r.provider, r.status) for r in records} == {(door, backend, 200)}
    assert all(r.usage.input_tokens > 0 and r.usage.output_tokens > 0 for r in records)
    assert records[0].stop_reason == "tool_use" and records[1].stop_reason == "end_turn"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("door", DOORS)
def test_count_tokens(make_stack, door: str, backend: str) -> None:
    stack = _stack(make_stack, backend)
    status, answer = count_tokens(
        stack.url, stack.key, door, MODEL, {"messages": [{"role": "user", "content": "count me"}]}
    )
    assert status == 200, answer
    key = "inputTokens" if door == "bedrock" else "input_tokens"
    assert set(answer) == {key} and answer[key] > 0


EXPECTED_THROTTLE = {
    "anthropic": lambda a: a.message["error"]["type"] == "rate_limit_error",
    "vertex": lambda a: (
        (a.message[0] if isinstance(a.message, list) else a.message).get("error", {}).get("code") == 429
        or a.message.get("error", {}).get("type") == "rate_limit_error"
    ),
    "bedrock": lambda a: a.headers.get("x-amzn-errortype", "").startswith("ThrottlingException"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("door", DOORS)
def test_throttling_keeps_its_meaning(make_stack, door: str, backend: str) -> None:
    stack = _stack(make_stack, backend, failover=False)
    stack.emulator.state.faults.add(Fault(kind="rate_limit", times=1))
    answer = send(
        stack.url,
        stack.key,
        door,
        MODEL,
        {"max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]},
        stream=False,
    )
    assert answer.status == 429
    assert EXPECTED_THROTTLE[door](answer), answer.message
    (record,) = stack.records(1)
    assert record.status == 429 and record.error_type == "rate_limit_error"
