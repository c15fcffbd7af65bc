"""Fault injection: matching rules, and each kind as the official SDK and a raw client see it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
import requests

from cloudgate.emulator import EmulatorConfig, Fault, FaultSet
from cloudgate.protocol.sse import SSEParser

from .conftest import MODEL, PROJECT, REGION, TOKEN, Emulator, vertex_client

HI: Any = [{"role": "user", "content": "hi there"}]
BODY = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 50, "messages": HI}


def _stream_url(srv: Any) -> str:
    return f"{srv.url}/v1/projects/{PROJECT}/locations/{REGION}/publishers/anthropic/models/{MODEL}:streamRawPredict"


def _ask(client: anthropic.AnthropicVertex) -> anthropic.types.Message:
    return client.messages.create(model=MODEL, max_tokens=20, messages=HI)


def test_matching_and_times() -> None:
    faults = FaultSet([Fault("rate_limit", model="opus", times=2), Fault("not_found", location="global")])

    def take(**kw: object) -> list[Fault]:
        return faults.take(platform="vertex", **kw)  # type: ignore[arg-type]

    assert take(path="/p", model="claude-sonnet-4-6", location="us-east5", stream=False) == []
    assert [f.kind for f in take(path="/p", model="claude-opus-4-6", location="us-east5", stream=False)] == [
        "rate_limit"
    ]
    both = take(path="/p", model="claude-opus-4-6", location="global", stream=True)
    assert [f.kind for f in both] == ["rate_limit", "not_found"]
    # `times=2` is used up; the unlimited one stays.
    assert [f.kind for f in take(path="/p", model="claude-opus-4-6", location="global", stream=False)] == [
        "not_found"
    ]
    streaming = Fault("cut_stream", stream=True, path_contains="stream")
    assert streaming.matches(
        path="/x:streamRawPredict", model=None, location=None, stream=True, platform="vertex"
    )
    assert not streaming.matches(
        path="/x:streamRawPredict", model=None, location=None, stream=False, platform="vertex"
    )
    assert not streaming.matches(
        path="/x:rawPredict", model=None, location=None, stream=True, platform="vertex"
    )


def test_fault_from_dict_validates() -> None:
    assert Fault.from_dict({"kind": "server_error", "status": 503}).status == 503
    for bad in (
        {"kind": "explode"},
        {"status": 500},
        {"kind": "rate_limit", "colour": "red"},
        ["rate_limit"],
    ):
        with pytest.raises(ValueError):
            Fault.from_dict(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fault", "error", "status", "shape"),
    [
        (Fault("rate_limit"), anthropic.RateLimitError, 429, "RESOURCE_EXHAUSTED"),
        (Fault("not_found"), anthropic.NotFoundError, 404, "NOT_FOUND"),
        (Fault("permission_denied"), anthropic.PermissionDeniedError, 403, "PERMISSION_DENIED"),
        (Fault("unauthenticated"), anthropic.AuthenticationError, 401, "UNAUTHENTICATED"),
        (Fault("server_error"), anthropic.InternalServerError, 500, "INTERNAL"),
        (Fault("server_error", status=503), anthropic.InternalServerError, 503, "UNAVAILABLE"),
        (Fault("overloaded"), anthropic.APIStatusError, 529, "overloaded_error"),
    ],
)
def test_error_faults_through_the_sdk(
    emulator: Emulator, fault: Fault, error: type[anthropic.APIStatusError], status: int, shape: str
) -> None:
    app, srv = emulator
    fault.times = 1
    app.state.faults.add(fault)
    client = vertex_client(srv)
    with pytest.raises(error) as info:
        _ask(client)
    assert info.value.status_code == status
    body: Any = info.value.body
    if shape == "overloaded_error":
        assert body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    else:
        assert body["error"]["code"] == status and body["error"]["status"] == shape
    if fault.kind == "rate_limit":
        assert body["error"]["message"].startswith(
            "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model "
            "with base model: anthropic-claude-sonnet-4-5. Please submit a quota increase request."
        )
    assert _ask(client).content  # times=1: the next call goes through


def test_rate_limit_array_body_is_a_json_array(emulator: Emulator) -> None:
    app, srv = emulator
    app.state.faults.add(Fault("rate_limit_array", stream=True))
    resp = requests.post(
        _stream_url(srv),
        data=orjson.dumps({**BODY, "stream": True}),
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert resp.status_code == 429
    doc = resp.json()
    assert isinstance(doc, list) and len(doc) == 1
    assert doc[0]["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_cut_stream_drops_the_connection(emulator: Emulator) -> None:
    app, srv = emulator
    app.state.faults.add(Fault("cut_stream", after_events=3))
    resp = requests.post(
        _stream_url(srv),
        data=orjson.dumps({**BODY, "stream": True}),
        headers={"Authorization": f"Bearer {TOKEN}"},
        stream=True,
        timeout=5,
    )
    parser = SSEParser()
    events = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in resp.iter_content(chunk_size=None):
            events.extend(parser.feed(chunk))
    assert [e.event for e in events] == ["message_start", "ping", "content_block_start"]


def test_cut_stream_through_the_sdk(emulator: Emulator) -> None:
    app, srv = emulator
    app.state.faults.add(Fault("cut_stream", after_events=4))
    seen: list[str] = []
    # Mid-stream, the SDK surfaces its HTTP library's own error: the peer closed the connection.
    stream_ctx = vertex_client(srv).messages.stream(model=MODEL, max_tokens=50, messages=HI)
    with pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"), stream_ctx as stream:
        seen.extend(event.type for event in stream)
    # The SDK got the first events (message_start, content_block_start, a text delta) and no end.
    assert seen[0] == "message_start" and "message_stop" not in seen


def test_cut_non_streaming_body(emulator: Emulator) -> None:
    app, srv = emulator
    app.state.faults.add(Fault("cut_stream", stream=False))
    url = _stream_url(srv).replace(":streamRawPredict", ":rawPredict")
    with pytest.raises(requests.exceptions.RequestException):
        requests.post(url, data=orjson.dumps(BODY), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)


def test_slow_first_byte(emulator: Emulator) -> None:
    app, srv = emulator
    app.state.faults.add(Fault("slow_first_byte", delay=0.3, times=1))
    client = vertex_client(srv)
    started = time.monotonic()
    assert _ask(client).content
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    _ask(client)
    assert time.monotonic() - started < 0.3


def test_faults_from_config_and_location_match(make_emulator: Callable[..., Emulator]) -> None:
    config = EmulatorConfig(static_tokens=[TOKEN], faults=[Fault("rate_limit", location="europe-west1")])
    _, srv = make_emulator(config)
    assert _ask(vertex_client(srv)).content
    with pytest.raises(anthropic.RateLimitError):
        _ask(vertex_client(srv, region="europe-west1"))
