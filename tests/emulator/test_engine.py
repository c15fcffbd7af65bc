"""The fake model on its own: token counts, truncation, scripts, prompt cache, wire shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from cloudgate.emulator.engine import (
    ModelEngine,
    PromptCache,
    count_tokens,
    load_script,
    message_json,
    stream_events,
)
from cloudgate.protocol.sse import SSEParser


def _body(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"max_tokens": 100, "messages": [{"role": "user", "content": text}], **extra}


def test_token_count_is_deterministic_and_grows_with_input() -> None:
    body = _body(system="be nice", tools=[{"name": "Bash", "input_schema": {"type": "object"}}])
    assert count_tokens(body) == count_tokens(orjson.loads(orjson.dumps(body)))
    assert count_tokens(_body("x" * 4000)) >= count_tokens(_body("x")) + 990
    assert count_tokens({"messages": []}) == 1
    # cache_control markers do not change the count, as on the real API.
    marked = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
            }
        ]
    }
    plain = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert count_tokens(marked) == count_tokens(plain)


def test_default_reply_and_truncation() -> None:
    engine = ModelEngine()
    reply = engine.reply(_body("y" * 500), model="m", cache_scope="s")
    text = reply.content[0]["text"]
    assert text == "Hello from the cloudgate emulator. You said: " + "y" * 200
    assert reply.stop_reason == "end_turn" and reply.usage.output_tokens == 8
    short = engine.reply(_body("one two three", max_tokens=3), model="m", cache_scope="s")
    assert short.content == [{"type": "text", "text": "Hello from the"}]
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 3


def test_stop_sequences() -> None:
    reply = ModelEngine().reply(_body("abc", stop_sequences=["emulator"]), model="m", cache_scope="s")
    assert reply.content[0]["text"] == "Hello from the cloudgate "
    assert reply.stop_reason == "stop_sequence" and reply.stop_sequence == "emulator"


def test_script_matching_rules(tmp_path: Path) -> None:
    script = tmp_path / "turns.json"
    script.write_text(
        orjson.dumps(
            [
                {"when": {"model_contains": "haiku", "last_user_text_contains": "ping"}, "reply": [{"type": "text", "text": "pong"}]},
                {"when": {"last_user_has_tool_result": True}, "reply": [{"type": "text", "text": "got {tool_result}"}]},
                {"when": {"last_user_text_contains": "go"}, "reply": [
                    {"type": "text", "text": "Calling."},
                    {"type": "tool_use", "name": "Read", "input": {"path": "/etc/hosts"}},
                ]},
            ]
        ).decode()
    )  # fmt: skip
    engine = ModelEngine(script=load_script(str(script)))
    tools = [{"name": "Read", "input_schema": {"type": "object"}}]
    assert engine.reply(_body("ping"), model="claude-haiku-4-5", cache_scope="s").content[0]["text"] == "pong"
    assert (
        engine.reply(_body("ping"), model="claude-opus-4-6", cache_scope="s")
        .content[0]["text"]
        .startswith("Hello")
    )
    call = engine.reply(_body("go now", tools=tools), model="m", cache_scope="s")
    assert call.stop_reason == "tool_use"
    assert [b["type"] for b in call.content] == ["text", "tool_use"]
    assert call.content[1]["id"].startswith("toolu_") and call.content[1]["input"] == {"path": "/etc/hosts"}
    result = {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "127.0.0.1"}]}
        ],
    }
    answer = engine.reply({"max_tokens": 50, "messages": [result]}, model="m", cache_scope="s")
    assert answer.content == [{"type": "text", "text": "got 127.0.0.1"}]


def test_load_script_rejects_bad_turns() -> None:
    assert load_script(None) == []
    for bad in (
        [{"when": {}}],
        [{"reply": [{"type": "image"}]}],
        [{"when": {"sometimes": 1}, "reply": []}],
        {"x": 1},
    ):
        with pytest.raises(ValueError):
            load_script(bad)  # type: ignore[arg-type]


def test_shipped_tool_round_trip_script_parses() -> None:
    from importlib import resources

    turns = load_script(str(resources.files("cloudgate.emulator").joinpath("scripts/tool_round_trip.yaml")))
    assert [t.when for t in turns] == [
        {"last_user_has_tool_result": True},
        {"last_user_text_contains": "RUN_TOOL"},
    ]


def _cached(text: str, ttl: str | None = None) -> dict[str, Any]:
    marker: dict[str, Any] = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return {"type": "text", "text": text, "cache_control": marker}


def test_prompt_cache_expiry_and_moving_marker() -> None:
    now = [1000.0]
    engine = ModelEngine(min_cacheable_tokens=50, cache=PromptCache(clock=lambda: now[0]))
    turn1 = [{"role": "user", "content": [_cached("a" * 400)]}]
    first = engine.reply({"max_tokens": 5, "messages": turn1}, model="m", cache_scope="p/m").usage
    assert first.cache_creation_5m > 100 and first.cache_read == 0
    # Next turn: the marker moves to the newest message; the old prefix is read, the rest written.
    turn2 = [
        {"role": "user", "content": [{"type": "text", "text": "a" * 400}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [_cached("b" * 400)]},
    ]
    second = engine.reply({"max_tokens": 5, "messages": turn2}, model="m", cache_scope="p/m").usage
    assert second.cache_read == first.cache_creation_5m
    assert second.cache_creation_5m > 100
    # A different scope (project/model) shares nothing.
    other = engine.reply({"max_tokens": 5, "messages": turn1}, model="m", cache_scope="q/m").usage
    assert other.cache_read == 0
    # After the 5-minute TTL the entry is gone.
    now[0] += 301
    later = engine.reply({"max_tokens": 5, "messages": turn1}, model="m", cache_scope="p/m").usage
    assert later.cache_read == 0 and later.cache_creation_5m == first.cache_creation_5m


def test_one_hour_ttl_is_reported_separately() -> None:
    engine = ModelEngine(min_cacheable_tokens=10)
    usage = engine.reply(
        {"max_tokens": 5, "system": [_cached("s" * 200, "1h")], "messages": []}, model="m", cache_scope="x"
    ).usage
    assert usage.cache_creation_1h > 0 and usage.cache_creation_5m == 0
    assert usage.to_json()["cache_creation"]["ephemeral_1h_input_tokens"] == usage.cache_creation_1h


def test_stream_events_reassemble_to_the_message() -> None:
    engine = ModelEngine(script=load_script([{"reply": [
        {"type": "text", "text": "Let me check that for you now."},
        {"type": "tool_use", "name": "Bash", "input": {"command": "echo " + "z" * 50}},
    ]}]))  # fmt: skip
    reply = engine.reply(_body(tools=[{"name": "Bash"}]), model="m", cache_scope="s")
    events = SSEParser().feed(b"".join(stream_events(reply, msg_id="msg_1", model="m")))
    assert [e.event for e in events][:2] == ["message_start", "ping"]
    assert events[-1].event == "message_stop" and events[-2].event == "message_delta"
    text = "".join(e.json()["delta"].get("text", "") for e in events if e.event == "content_block_delta")
    partial = "".join(
        e.json()["delta"].get("partial_json", "") for e in events if e.event == "content_block_delta"
    )
    final = message_json(reply, msg_id="msg_1", model="m")
    assert text == final["content"][0]["text"]
    assert orjson.loads(partial) == final["content"][1]["input"]
    assert (
        sum(1 for e in events if e.event == "content_block_delta" and "partial_json" in e.json()["delta"]) > 2
    )
    assert events[-2].json()["delta"]["stop_reason"] == "tool_use"
    assert events[-2].json()["usage"]["output_tokens"] == final["usage"]["output_tokens"]
