import orjson

from cloudgate.protocol.sse import encode_event
from cloudgate.protocol.usage import StreamUsageTap, usage_from_message


def _stream() -> bytes:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_vrtx_1",
            "model": "claude-sonnet-4-5@20250929",
            "usage": {
                "input_tokens": 12,
                "output_tokens": 1,
                "cache_creation_input_tokens": 2048,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 2048},
            },
        },
    }
    delta = {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 57}}
    return (
        encode_event("message_start", start)
        + encode_event("ping", {"type": "ping"})
        + encode_event("content_block_delta", {"type": "content_block_delta", "delta": {"text": "hi"}})
        + encode_event("message_delta", delta)
        + encode_event("message_stop", {"type": "message_stop"})
    )


def test_tap_reads_usage_from_any_chunking():
    data = _stream()
    for size in (1, 9, len(data)):
        tap = StreamUsageTap()
        for i in range(0, len(data), size):
            tap.feed(data[i : i + size])
        assert tap.usage.input_tokens == 12
        assert tap.usage.output_tokens == 57
        assert tap.usage.cache_creation_input_tokens == 2048
        assert tap.usage.cache_creation_1h_input_tokens == 2048
        assert tap.stop_reason == "tool_use"
        assert tap.model == "claude-sonnet-4-5@20250929"
        assert tap.completed


def test_tap_records_error_events_and_incomplete_streams():
    tap = StreamUsageTap()
    tap.feed(
        encode_event(
            "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        )
    )
    assert tap.error == {"type": "overloaded_error", "message": "Overloaded"}
    assert not tap.completed


def test_usage_from_message_and_count_tokens():
    body = orjson.dumps(
        {"model": "m", "stop_reason": "end_turn", "usage": {"input_tokens": 5, "output_tokens": 7}}
    )
    usage, stop, model = usage_from_message(body)
    assert (usage.input_tokens, usage.output_tokens, stop, model) == (5, 7, "end_turn", "m")
    counted, _, _ = usage_from_message(b'{"input_tokens": 321}')
    assert counted.input_tokens == 321
    broken, stop, _ = usage_from_message(b"not json")
    assert broken.input_tokens == 0 and stop is None


def test_total_input_tokens_counts_cache():
    tap = StreamUsageTap()
    tap.feed(_stream())
    assert tap.usage.total_input_tokens == 12 + 2048


def test_a_stream_cut_short_counts_at_least_one_token_per_delta():
    start = {
        "type": "message_start",
        "message": {"id": "m", "usage": {"input_tokens": 7, "output_tokens": 1}},
    }
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "two words"}}
    tap = StreamUsageTap()
    tap.feed(encode_event("message_start", start) + encode_event("content_block_delta", delta) * 5)
    assert (tap.completed, tap.usage.output_tokens, tap.output_tokens_at_least()) == (False, 1, 5)
    tap.feed(_stream())  # a complete stream: the reported count is the truth
    assert tap.completed and tap.output_tokens_at_least() == 57
