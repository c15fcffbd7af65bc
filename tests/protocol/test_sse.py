import orjson
import pytest

from cloudgate.protocol.sse import SSEEvent, SSEParser, encode_event

STREAM = (
    b'event: message_start\ndata: {"type":"message_start"}\n\n'
    b"event: ping\ndata: {}\n\n"
    b': a comment\nevent: content_block_delta\ndata: {"a":\ndata: 1}\n\n'
)


def test_encode_matches_the_api_framing():
    assert encode_event("ping", {"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert encode_event("x", b"raw") == b"event: x\ndata: raw\n\n"


def test_whole_stream_in_one_chunk():
    events = SSEParser().feed(STREAM)
    assert [e.event for e in events] == ["message_start", "ping", "content_block_delta"]
    assert events[2].data == b'{"a":\n1}'
    assert events[2].json() == {"a": 1}


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16])
def test_any_chunking_gives_the_same_events(size):
    parser = SSEParser()
    events: list[SSEEvent] = []
    for i in range(0, len(STREAM), size):
        events.extend(parser.feed(STREAM[i : i + size]))
    assert events == SSEParser().feed(STREAM)


@pytest.mark.parametrize("size", [1, 2, 5])
def test_crlf_and_cr_line_ends(size):
    crlf = STREAM.replace(b"\n", b"\r\n")
    parser = SSEParser()
    events: list[SSEEvent] = []
    for i in range(0, len(crlf), size):
        events.extend(parser.feed(crlf[i : i + size]))
    assert events == SSEParser().feed(STREAM)
    # A lone CR at the end may be half of a CRLF: the last event is complete only at close().
    cr_only = SSEParser()
    assert cr_only.feed(STREAM.replace(b"\n", b"\r")) + cr_only.close() == SSEParser().feed(STREAM)


def test_no_space_after_colon_and_unterminated_last_event():
    parser = SSEParser()
    assert parser.feed(b"event:x\ndata:{}") == []
    assert parser.close() == [SSEEvent("x", b"{}")]


def test_round_trip_with_encoder():
    payload = {"type": "content_block_delta", "delta": {"text": "line1\nline2"}}
    (event,) = SSEParser().feed(encode_event("content_block_delta", payload))
    assert orjson.loads(event.data) == payload
