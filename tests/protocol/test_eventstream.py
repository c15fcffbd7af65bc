import base64
import struct
import zlib

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer

from cloudgate.protocol.eventstream import (
    EventStreamDecoder,
    EventStreamError,
    chunk_event,
    encode_chunk,
    encode_exception,
    encode_frame,
)

EVENTS = [
    orjson.dumps({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 3}}}),
    orjson.dumps(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "héllo"}}
    ),
    orjson.dumps({"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 3}}),
]


def test_botocore_parses_our_frames_into_the_same_events():
    buffer = EventStreamBuffer()
    buffer.add_data(
        b"".join(encode_chunk(e) for e in EVENTS) + encode_exception("throttlingException", "slow down")
    )
    messages = list(buffer)
    assert [m.headers[":message-type"] for m in messages] == ["event"] * 3 + ["exception"]
    for message, event in zip(messages[:3], EVENTS, strict=True):
        assert message.headers[":event-type"] == "chunk"
        assert message.headers[":content-type"] == "application/json"
        payload = orjson.loads(message.payload)
        assert base64.b64decode(payload["bytes"]) == event and payload["p"]
    assert messages[3].headers[":exception-type"] == "throttlingException"
    assert orjson.loads(messages[3].payload) == {"message": "slow down"}


@pytest.mark.parametrize("size", [1, 5, 13, 4096])
def test_decoder_any_chunking(size):
    data = b"".join(encode_chunk(e) for e in EVENTS)
    decoder = EventStreamDecoder()
    frames = []
    for i in range(0, len(data), size):
        frames.extend(decoder.feed(data[i : i + size]))
    assert [chunk_event(f) for f in frames] == EVENTS
    assert all(f.message_type == "event" and f.event_type == "chunk" for f in frames)
    assert decoder.pending == 0


def test_decoder_reads_botocore_style_header_types():
    # A frame with non-string headers, built by hand: bool true (0), int32 (4), bytes (6).
    raw = (
        b"\x03yes\x00" + b"\x01n\x04" + (7).to_bytes(4, "big") + b"\x01b\x06" + (2).to_bytes(2, "big") + b"ab"
    )
    total = 12 + len(raw) + 4
    prelude = struct.pack(">II", total, len(raw))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw
    (frame,) = EventStreamDecoder().feed(head + struct.pack(">I", zlib.crc32(head)))
    assert frame.headers == {"yes": True, "n": 7, "b": b"ab"} and frame.payload == b""


def test_corruption_is_detected():
    frame = bytearray(encode_frame({":message-type": "event"}, b"{}"))
    frame[-6] ^= 0xFF
    with pytest.raises(EventStreamError, match="message checksum"):
        EventStreamDecoder().feed(bytes(frame))
    bad_prelude = bytearray(encode_frame({}, b"x"))
    bad_prelude[9] ^= 0xFF
    with pytest.raises(EventStreamError, match="prelude checksum"):
        EventStreamDecoder().feed(bytes(bad_prelude))
