"""From a finished RequestRecord to an ActivityEntry: fields, redacted headers, bodies cut and decoded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from cloudgate.activity.convert import EntryBuilder, event_stream_text
from cloudgate.activity.redact import REDACTED, Redactor
from cloudgate.gateway.records import RequestRecord
from cloudgate.protocol.eventstream import encode_chunk, encode_exception
from cloudgate.protocol.messages import Usage

STARTED = datetime(2025, 6, 1, 12, 0, 0, 250000, tzinfo=UTC)
KEY = "cg-" + "Ab3dE5gH7j" * 4


def record(**fields: object) -> RequestRecord:
    """A finished streamed request through the Anthropic door."""
    rec = RequestRecord(
        request_id="req_cg01",
        started_at=STARTED.timestamp(),
        caller="key_abc",
        frontdoor="anthropic",
        operation="messages",
        model="claude-sonnet-4-5",
        provider="vertex",
        upstream_model="claude-sonnet-4-5@20250929",
        region="us-east5",
        project="proj",
        deployment="vertex/us-east5",
        stream=True,
        status=200,
        stop_reason="end_turn",
        usage=Usage(
            input_tokens=100,
            output_tokens=20,
            cache_creation_input_tokens=30,
            cache_read_input_tokens=40,
            cache_creation_5m_input_tokens=10,
            cache_creation_1h_input_tokens=20,
        ),
        first_byte_ms=12.5,
        duration_ms=1500.0,
        session_id="sess-1",
        betas=["context-1m-2025-08-07"],
        cost_micro=1234,
        attempts=[{"deployment": "vertex/us-east5", "status": 200, "error": None}],
    )
    rec.user_id, rec.team_id, rec.client_ip = "user_ada", "team_p", "10.0.0.7"
    rec.request_headers = {
        "x-api-key": KEY,
        "anthropic-version": "2023-06-01",
        "user-agent": "claude-cli/2.0.1",
        "host": "gw",
    }
    for name, value in fields.items():
        setattr(rec, name, value)
    return rec


def builder(limit: int = 1000) -> EntryBuilder:
    return EntryBuilder(Redactor(), limit)


def test_every_field_comes_from_the_record() -> None:
    entry = builder().build(record())
    assert entry.request_id == "req_cg01"
    assert entry.started_at == STARTED
    assert entry.finished_at == STARTED + timedelta(milliseconds=1500)
    assert (entry.key_id, entry.user_id, entry.team_id, entry.session_id) == (
        "key_abc",
        "user_ada",
        "team_p",
        "sess-1",
    )
    assert (entry.frontdoor, entry.operation, entry.model) == ("anthropic", "messages", "claude-sonnet-4-5")
    assert (entry.provider, entry.deployment, entry.region, entry.project) == (
        "vertex", "vertex/us-east5", "us-east5", "proj",
    )  # fmt: skip
    assert entry.upstream_model == "claude-sonnet-4-5@20250929"
    assert (entry.stream, entry.status, entry.stop_reason) == (True, 200, "end_turn")
    assert (entry.input_tokens, entry.output_tokens, entry.cache_read_tokens) == (100, 20, 40)
    # Split as the spend log splits them: 1h as reported, the rest of the cache writes 5m.
    assert (entry.cache_write_5m_tokens, entry.cache_write_1h_tokens) == (10, 20)
    assert (entry.cost_micro, entry.latency_ms, entry.first_token_ms) == (1234, 1500.0, 12.5)
    assert entry.attempts == [{"deployment": "vertex/us-east5", "status": 200, "error": None}]
    assert entry.betas == ["context-1m-2025-08-07"]
    assert (entry.client_ip, entry.user_agent) == ("10.0.0.7", "claude-cli/2.0.1")
    assert entry.request_headers == {
        "x-api-key": REDACTED,
        "anthropic-version": "2023-06-01",
        "user-agent": "claude-cli/2.0.1",
    }
    # Nothing was captured: no bodies.
    assert (entry.request_body, entry.response_body, entry.bodies_truncated) == (None, None, False)


def test_bodies_are_kept_decoded_and_redacted_when_captured() -> None:
    raw = orjson.dumps({"messages": [{"role": "user", "content": f"my key is {KEY} and é"}]})
    answer = bytearray(b'event: message_start\ndata: {"type":"message_start"}\n\n')
    entry = builder().build(record(capture_bodies=True, request_body=raw, response_body=answer))
    assert entry.request_body is not None and KEY not in entry.request_body
    assert orjson.loads(entry.request_body)["messages"][0]["content"] == f"my key is {REDACTED} and é"
    assert entry.response_body == answer.decode()
    assert entry.bodies_truncated is False


def test_bodies_past_the_limit_are_cut_and_marked() -> None:
    raw = b'{"content": "' + "é".encode() * 100 + b'"}'
    entry = builder(limit=50).build(
        record(capture_bodies=True, request_body=raw, response_body=bytearray(b"ok"))
    )
    assert entry.request_body is not None and len(entry.request_body.encode()) <= 52
    assert entry.bodies_truncated is True
    # The proxy cuts the answer itself and says so on the record.
    cut = builder().build(record(capture_bodies=True, response_body=bytearray(b"x"), bodies_truncated=True))
    assert cut.bodies_truncated is True


def test_presented_credentials_are_redacted_even_in_unusual_shapes() -> None:
    odd = "opaque-config-key-42"
    raw = orjson.dumps({"content": f"the key {odd} again"})
    rec = record(capture_bodies=True, request_body=raw, error_message=f"bad key {odd}")
    rec.request_headers = {"authorization": f"Bearer {odd}"}
    entry = builder().build(rec)
    assert odd not in (entry.request_body or "") and odd not in (entry.error_message or "")
    assert entry.request_headers == {"authorization": REDACTED}


def test_a_bedrock_stream_is_kept_as_event_json_lines() -> None:
    events = [{"type": "message_start", "message": {"id": "msg_1"}}, {"type": "message_stop"}]
    stream = b"".join(encode_chunk(orjson.dumps(e)) for e in events)
    stream += encode_exception("throttlingException", "slow down")
    rec = record(frontdoor="bedrock", capture_bodies=True, response_body=bytearray(stream))
    entry = builder(limit=10_000).build(rec)
    lines = (entry.response_body or "").splitlines()
    assert [orjson.loads(line) for line in lines[:2]] == events
    assert orjson.loads(lines[2]) == {
        "frame": "exception",
        "type": "throttlingException",
        "payload": '{"message":"slow down"}',
    }
    # Cut mid-frame (the body limit): the whole frames are kept.
    assert event_stream_text(stream[:-5]).splitlines()[:2] == lines[:2]
    assert event_stream_text(b"\xff" * 20).startswith("[undecodable event stream, 20 bytes")
    # A whole (not streamed) Bedrock answer is JSON, kept as it is.
    whole = record(
        frontdoor="bedrock", stream=False, capture_bodies=True, response_body=bytearray(b'{"id":"m"}')
    )
    assert builder().build(whole).response_body == '{"id":"m"}'


def test_keep_response_stops_at_the_limit() -> None:
    rec = RequestRecord("req", 0.0, capture_bodies=True, body_limit=10)
    rec.keep_response(b"12345")
    rec.keep_response(b"678")
    assert rec.bodies_truncated is False
    rec.keep_response(b"9abc")
    rec.keep_response(b"more")
    assert rec.response_body == bytearray(b"123456789a") and rec.bodies_truncated is True
