import base64

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer

from cloudgate.protocol.eventstream import EventStreamDecoder, chunk_event, encode_chunk, encode_exception
from cloudgate.protocol.sse import SSEParser, encode_event
from cloudgate.protocol.transcode import (
    EventStreamToSSE,
    SSEToEventStream,
    event_stream_pass_through,
    sse_pass_through,
)

EVENTS = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "model": "m",
            "usage": {"input_tokens": 11, "output_tokens": 1, "cache_read_input_tokens": 40},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi ünïcode"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
    {"type": "message_stop"},
]
SSE = b"".join(encode_event(e["type"], e) for e in EVENTS)


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
def test_sse_to_event_stream_parses_with_botocore_into_the_same_events(size):
    relay = SSEToEventStream()
    out = b"".join(relay.feed(c) for c in _chunks(SSE, size)) + relay.close()
    buffer = EventStreamBuffer()
    buffer.add_data(out)
    decoded = [orjson.loads(base64.b64decode(orjson.loads(m.payload)["bytes"])) for m in buffer]
    metrics = decoded[-1].pop("amazon-bedrock-invocationMetrics")
    assert decoded == EVENTS
    assert metrics["inputTokenCount"] == 11 and metrics["outputTokenCount"] == 9
    assert metrics["cacheReadInputTokenCount"] == 40 and metrics["invocationLatency"] >= 0
    assert relay.tap.usage.output_tokens == 9 and relay.tap.stop_reason == "end_turn" and relay.tap.completed


def _bedrock_stream(with_metrics: bool = True) -> bytes:
    frames = []
    for event in EVENTS:
        doc = dict(event)
        if with_metrics and doc["type"] == "message_stop":
            doc["amazon-bedrock-invocationMetrics"] = {"inputTokenCount": 11, "outputTokenCount": 9}
        frames.append(encode_chunk(orjson.dumps(doc)))
    return b"".join(frames)


@pytest.mark.parametrize("size", [1, 13, 100_000])
def test_event_stream_to_sse_gives_the_messages_api_events(size):
    relay = EventStreamToSSE()
    out = b"".join(relay.feed(c) for c in _chunks(_bedrock_stream(), size)) + relay.close()
    parser = SSEParser()
    events = parser.feed(out) + parser.close()
    assert [e.event for e in events] == [e["type"] for e in EVENTS]
    assert [orjson.loads(e.data) for e in events] == EVENTS  # metrics taken out of message_stop
    assert relay.tap.usage.input_tokens == 11 and relay.tap.usage.output_tokens == 9


def test_exceptions_cross_over_in_both_directions():
    relay = EventStreamToSSE()
    out = relay.feed(encode_exception("throttlingException", "Too many requests"))
    (event,) = SSEParser().feed(out)
    assert event.event == "error"
    assert orjson.loads(event.data) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Too many requests"},
    }
    back = SSEToEventStream()
    frames = EventStreamDecoder().feed(
        back.feed(
            encode_event(
                "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            )
        )
    )
    (frame,) = frames
    assert frame.message_type == "exception" and frame.event_type == "serviceUnavailableException"
    assert back.tap.error == {"type": "overloaded_error", "message": "Overloaded"}


def test_in_band_errors_per_framing():
    assert SSEParser().feed(sse_pass_through().error("timeout_error", "slow"))[0].event == "error"
    (frame,) = EventStreamDecoder().feed(event_stream_pass_through().error("api_error", "cut"))
    assert frame.event_type == "modelStreamErrorException"
    assert orjson.loads(frame.payload) == {"message": "cut"}


def test_pass_throughs_return_bytes_untouched_and_tap_usage():
    sse = sse_pass_through()
    assert b"".join(sse.feed(c) for c in _chunks(SSE, 5)) == SSE
    assert sse.tap.usage.output_tokens == 9 and sse.tap.completed
    bedrock = event_stream_pass_through()
    stream = _bedrock_stream()
    assert b"".join(bedrock.feed(c) for c in _chunks(stream, 9)) == stream
    assert bedrock.tap.usage.input_tokens == 11 and bedrock.tap.completed
    first = EventStreamDecoder().feed(stream)[0]
    assert chunk_event(first).startswith(b'{"type":"message_start"')
