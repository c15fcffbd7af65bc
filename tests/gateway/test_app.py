"""The gateway end to end over loopback: front doors, forwarding, streaming, errors, records."""

from __future__ import annotations

import json
import time

import orjson
import pytest
import requests

from cloudgate.emulator import EmulatorConfig, Fault
from cloudgate.protocol.sse import SSEParser
from tests.conftest import NO_FAILOVER, UPSTREAM_PROJECT, Stack

MSG = {"role": "user", "content": "Hello there"}
VERTEX_PATH = (
    "/vertex_ai/v1/projects/client-proj/locations/global/publishers/anthropic/models/{model}:{method}"
)


def post(
    stack: Stack, path: str, body: object, *, key: str | None = None, **headers: str
) -> requests.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    hdrs = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    hdrs["x-api-key"] = stack.key if key is None else key
    hdrs.update({k.replace("_", "-"): v for k, v in headers.items()})
    return requests.post(stack.url + path, data=data, headers=hdrs, timeout=30)


def sse_events(resp: requests.Response) -> list[tuple[str, dict]]:
    parser = SSEParser()
    events = parser.feed(resp.content) + parser.close()
    return [(e.event, orjson.loads(e.data)) for e in events]


def test_anthropic_format_to_vertex(gw: Stack) -> None:
    resp = post(
        gw, "/v1/messages", {"model": "claude-sonnet-4-5-20250929", "max_tokens": 100, "messages": [MSG]}
    )
    assert resp.status_code == 200, resp.text
    msg = resp.json()
    assert msg["type"] == "message" and msg["content"][0]["type"] == "text"
    assert resp.headers["x-cloudgate-request-id"].startswith("req_")
    (upstream,) = gw.upstream_calls
    assert upstream.path == (
        f"/v1/projects/{UPSTREAM_PROJECT}/locations/us-east5/publishers/anthropic/models/"
        "claude-sonnet-4-5@20250929:rawPredict"
    )
    assert "model" not in upstream.json and upstream.json["anthropic_version"] == "vertex-2023-10-16"
    assert upstream.headers["authorization"].startswith("Bearer ya29.")
    assert upstream.headers.get("anthropic-version") == "2023-06-01"
    (record,) = gw.records(1)
    assert (record.status, record.frontdoor, record.provider) == (200, "anthropic", "vertex")
    assert (record.upstream_model, record.region, record.project) == (
        "claude-sonnet-4-5@20250929",
        "us-east5",
        UPSTREAM_PROJECT,
    )
    assert record.usage.input_tokens == msg["usage"]["input_tokens"] > 0
    assert record.usage.output_tokens == msg["usage"]["output_tokens"] > 0


def test_anthropic_alias_path_and_bearer_key(gw: Stack) -> None:
    resp = requests.post(
        gw.url + "/anthropic/v1/messages?beta=true",
        json={"model": "claude-opus-4-6", "max_tokens": 50, "messages": [MSG]},
        headers={"authorization": f"Bearer {gw.key}"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert gw.upstream_calls[0].path.endswith("/models/claude-opus-4-6:rawPredict")


def test_streaming_passes_events_through_and_records_usage(make_stack) -> None:
    gw = make_stack(emulator=EmulatorConfig(stream_delay=0.01))
    resp = post(
        gw,
        "/v1/messages",
        {"model": "claude-haiku-4-5", "max_tokens": 200, "messages": [MSG], "stream": True},
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert "content_block_delta" in names
    assert gw.upstream_calls[0].path.endswith("claude-haiku-4-5@20251001:streamRawPredict")
    assert gw.upstream_calls[0].json["stream"] is True
    (record,) = gw.records(1)
    final_output = [d for n, d in events if n == "message_delta"][-1]["usage"]["output_tokens"]
    assert record.usage.output_tokens == final_output
    assert record.usage.input_tokens == events[0][1]["message"]["usage"]["input_tokens"]
    assert record.stop_reason == "end_turn" and record.first_byte_ms is not None


def test_stream_arrives_incrementally(make_stack) -> None:
    gw = make_stack(emulator=EmulatorConfig(stream_delay=0.15))
    body = {"model": "claude-haiku-4-5", "max_tokens": 200, "messages": [MSG], "stream": True}
    with requests.post(
        gw.url + "/v1/messages", json=body, headers={"x-api-key": gw.key}, stream=True, timeout=30
    ) as resp:
        arrivals = []
        for chunk in resp.iter_content(chunk_size=None):
            if chunk:
                arrivals.append(time.monotonic())
    # Events come 0.15 s apart upstream; a buffering gateway would deliver them all at once.
    assert len(arrivals) >= 4
    assert arrivals[-1] - arrivals[0] >= 0.15 * (len(arrivals) - 2)


def test_vertex_format_maps_project_and_region(gw: Stack) -> None:
    path = VERTEX_PATH.format(model="claude-sonnet-4-5@20250929", method="rawPredict")
    body = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 64, "messages": [MSG]}
    resp = post(gw, path, body)
    assert resp.status_code == 200, resp.text
    (upstream,) = gw.upstream_calls
    assert f"/projects/{UPSTREAM_PROJECT}/locations/us-east5/" in upstream.path
    # Nothing to change: the caller's bytes go upstream untouched.
    assert upstream.body == orjson.dumps(body)


def test_vertex_format_streaming(gw: Stack) -> None:
    path = VERTEX_PATH.format(model="claude-sonnet-4-5@20250929", method="streamRawPredict")
    body = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 64, "messages": [MSG], "stream": True}
    resp = post(gw, path, body)
    assert resp.status_code == 200
    assert [n for n, _ in sse_events(resp)][-1] == "message_stop"
    assert gw.upstream_calls[0].path.endswith(":streamRawPredict")


def test_count_tokens_both_doors(make_stack) -> None:
    gw = make_stack(emulator=EmulatorConfig(count_tokens_global=True))
    a = post(gw, "/v1/messages/count_tokens", {"model": "claude-sonnet-4-5", "messages": [MSG]})
    path = "/vertex_ai/v1/projects/p/locations/global/publishers/anthropic/models/count-tokens:rawPredict"
    v = post(
        gw,
        path,
        {"anthropic_version": "vertex-2023-10-16", "model": "claude-sonnet-4-5@20250929", "messages": [MSG]},
    )
    assert a.status_code == v.status_code == 200, (a.text, v.text)
    assert a.json()["input_tokens"] == v.json()["input_tokens"] > 0
    for call in gw.upstream_calls:
        assert call.path.endswith("/models/count-tokens:rawPredict")
        assert call.json["model"] == "claude-sonnet-4-5@20250929"
    assert gw.records(2)[0].usage.input_tokens == a.json()["input_tokens"]


def test_count_tokens_falls_back_from_global(make_stack) -> None:
    gw = make_stack(settings={"vertex": {"region": "global", "count_tokens_region": "us-east5"}})
    for _ in range(2):
        resp = post(gw, "/v1/messages/count_tokens", {"model": "claude-sonnet-4-5", "messages": [MSG]})
        assert resp.status_code == 200, resp.text
    locations = [c.path.split("/locations/")[1].split("/")[0] for c in gw.upstream_calls]
    # Tried global once, learned, then went straight to the regional endpoint.
    assert locations == ["global", "us-east5", "us-east5"]


def test_models_list(gw: Stack) -> None:
    resp = requests.get(gw.url + "/v1/models", headers={"x-api-key": gw.key}, timeout=10)
    ids = [m["id"] for m in resp.json()["data"]]
    assert resp.status_code == 200 and "claude-opus-4-6" in ids and "claude-3-haiku-20240307" in ids
    assert requests.get(gw.url + "/v1/models", timeout=10).status_code == 401


def test_betas_filtered_and_forwarded(gw: Stack) -> None:
    betas = (
        "claude-code-20250219,context-management-2025-06-27,advanced-tool-use-2025-11-20,effort-2025-11-24"
    )
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 50,
        "messages": [MSG],
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    }
    resp = post(gw, "/v1/messages", body, anthropic_beta=betas)
    assert resp.status_code == 200, resp.text
    upstream = gw.upstream_calls[0]
    assert upstream.headers["anthropic-beta"].split(",") == [
        "claude-code-20250219",
        "tool-search-tool-2025-10-19",
        "effort-2025-11-24",
    ]
    assert "context_management" not in upstream.json


def test_one_m_alias_sends_the_beta(make_stack) -> None:
    gw = make_stack(settings={"models": {"sonnet": "claude-sonnet-4-5-20250929[1m]"}})
    assert (
        post(gw, "/v1/messages", {"model": "sonnet", "max_tokens": 5, "messages": [MSG]}).status_code == 200
    )
    upstream = gw.upstream_calls[0]
    assert upstream.path.endswith("claude-sonnet-4-5@20250929:rawPredict")
    assert upstream.headers["anthropic-beta"] == "context-1m-2025-08-07"


def test_prompt_caching_disabled_strips_markers(make_stack) -> None:
    gw = make_stack(settings={"caching": {"disable": True}})
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 5,
        "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
        "messages": [MSG],
    }
    assert post(gw, "/v1/messages", body).status_code == 200
    assert b"cache_control" not in gw.upstream_calls[0].body


def test_cache_usage_is_recorded(make_stack) -> None:
    gw = make_stack(emulator=EmulatorConfig(min_cacheable_tokens=16))
    system = [
        {"type": "text", "text": "You are a careful assistant. " * 40, "cache_control": {"type": "ephemeral"}}
    ]
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 5,
        "system": system,
        "messages": [MSG],
        "stream": True,
    }
    for _ in range(2):
        assert post(gw, "/v1/messages", body).status_code == 200
    first, second = gw.records(2)
    assert first.usage.cache_creation_input_tokens > 0 and first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "etype"),
    [
        ("rate_limit", 429, "rate_limit_error"),
        ("rate_limit_array", 429, "rate_limit_error"),
        ("not_found", 404, "not_found_error"),
        ("permission_denied", 403, "permission_error"),
        ("server_error", 500, "api_error"),
        ("overloaded", 529, "overloaded_error"),
    ],
)
def test_upstream_errors_in_each_format(gw_single: Stack, kind: str, status: int, etype: str) -> None:
    gw = gw_single
    gw.emulator.state.faults.add(Fault(kind=kind, times=2))
    a = post(gw, "/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [MSG]})
    assert a.status_code == status
    err = a.json()
    assert err["type"] == "error" and err["error"]["type"] == etype and err["error"]["message"]
    path = VERTEX_PATH.format(model="claude-sonnet-4-5@20250929", method="rawPredict")
    v = post(gw, path, {"anthropic_version": "vertex-2023-10-16", "max_tokens": 5, "messages": [MSG]})
    assert v.status_code == status
    if kind == "overloaded":
        assert v.json() == err  # Anthropic-shape upstream body reaches both doors unchanged
    else:
        doc = v.json()
        envelope = doc[0] if kind == "rate_limit_array" else doc
        assert envelope["error"]["code"] == status and envelope["error"]["message"] == err["error"]["message"]
    assert [r.status for r in gw.records(2)] == [status, status]


def test_error_pass_through_is_byte_for_byte(gw_single: Stack) -> None:
    gw = gw_single
    gw.emulator.state.faults.add(Fault(kind="rate_limit", times=2))
    path = VERTEX_PATH.format(model="claude-sonnet-4-5@20250929", method="rawPredict")
    through = post(gw, path, {"anthropic_version": "v", "max_tokens": 5, "messages": [MSG]})
    upstream_path = (
        f"/v1/projects/{UPSTREAM_PROJECT}/locations/us-east5/publishers/anthropic/models/"
        "claude-sonnet-4-5@20250929:rawPredict"
    )
    direct = requests.post(
        gw.emulator_server.url + upstream_path,
        json={"anthropic_version": "v", "max_tokens": 5, "messages": [MSG]},
        headers={"authorization": gw.upstream_calls[0].headers["authorization"]},
        timeout=10,
    )
    assert direct.status_code == through.status_code == 429
    assert through.content == direct.content


def test_slow_first_byte_times_out(make_stack) -> None:
    gw = make_stack(settings={"gateway": {"timeouts": {"first_byte": 0.3}}, **NO_FAILOVER})
    gw.emulator.state.faults.add(Fault(kind="slow_first_byte", delay=2.0, times=1))
    started = time.monotonic()
    resp = post(gw, "/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [MSG]})
    assert resp.status_code == 504 and resp.json()["error"]["type"] == "timeout_error"
    assert time.monotonic() - started < 1.5
    assert post(gw, "/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [MSG]}).ok


def test_stream_cut_midway_ends_with_an_error_event(gw: Stack) -> None:
    gw.emulator.state.faults.add(Fault(kind="cut_stream", after_events=3, times=1))
    resp = post(
        gw,
        "/v1/messages",
        {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [MSG], "stream": True},
    )
    assert resp.status_code == 200
    events = sse_events(resp)
    assert "message_stop" not in [n for n, _ in events]
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"] == "api_error"
    (record,) = gw.records(1)
    assert record.error_type == "api_error" and record.status == 502


def test_client_disconnect_cancels_the_upstream(make_stack) -> None:
    gw = make_stack(emulator=EmulatorConfig(stream_delay=0.2))
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4000,
        "messages": [{"role": "user", "content": "x " * 400}],
        "stream": True,
    }
    with requests.post(
        gw.url + "/v1/messages", json=body, headers={"x-api-key": gw.key}, stream=True, timeout=30
    ) as resp:
        next(resp.iter_content(chunk_size=None))
    (record,) = gw.records(1)
    assert record.status == 499 and record.error_type == "client_disconnected"
    assert record.duration_ms < 3000
    # The upstream saw its caller (the gateway) hang up too, instead of streaming on.
    deadline = time.monotonic() + 5
    while gw.emulator.state.abandoned_streams == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gw.emulator.state.abandoned_streams == 1
    # The gateway is fine afterwards.
    assert post(gw, "/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [MSG]}).ok


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"", "empty"),
        ({"max_tokens": 5, "messages": [MSG]}, "model: Field required"),
        ({"model": "claude-sonnet-4-5", "max_tokens": 5}, "messages: Field required"),
        ({"model": 7, "max_tokens": 5, "messages": [MSG]}, "model: Input should be"),
        ({"model": "m", "max_tokens": "5", "messages": [MSG]}, "max_tokens: Input should be a valid integer"),
        ({"model": "m", "max_tokens": 5, "messages": "hi"}, "messages: Input should be a valid list"),
        ({"model": "m", "max_tokens": 5, "messages": [MSG], "stream": "yes"}, "stream: Input should be"),
        ({"model": "m", "messages": [MSG]}, "max_tokens: Field required"),
    ],
)
def test_bad_anthropic_input(gw: Stack, body: object, needle: str) -> None:
    resp = post(gw, "/v1/messages", body)
    assert resp.status_code == 400
    err = resp.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert needle in err["error"]["message"]
    assert not gw.upstream_calls


@pytest.mark.parametrize(
    ("body", "status", "shape", "needle"),
    [
        (b"{not json", 400, "google", "not valid JSON"),
        ({"max_tokens": 5, "messages": [MSG]}, 400, "anthropic", "anthropic_version: Field required"),
        ({"anthropic_version": "v", "messages": [MSG]}, 400, "anthropic", "max_tokens: Field required"),
        (
            {"anthropic_version": "v", "max_tokens": 5, "messages": [MSG], "model": "x"},
            400,
            "anthropic",
            "Extra inputs",
        ),
    ],
)
def test_bad_vertex_input(gw: Stack, body: object, status: int, shape: str, needle: str) -> None:
    resp = post(gw, VERTEX_PATH.format(model="claude-sonnet-4-5@20250929", method="rawPredict"), body)
    assert resp.status_code == status
    doc = resp.json()
    if shape == "google":
        assert doc["error"]["status"] == "INVALID_ARGUMENT" and needle in doc["error"]["message"]
    else:
        assert doc["type"] == "error" and needle in doc["error"]["message"]


def test_oversized_body(make_stack) -> None:
    gw = make_stack(settings={"gateway": {"max_body_bytes": 2000}})
    big = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x" * 5000}],
    }
    resp = post(gw, "/v1/messages", big)
    assert resp.status_code == 413 and resp.json()["error"]["type"] == "request_too_large"
    path = VERTEX_PATH.format(model="claude-sonnet-4-5@20250929", method="rawPredict")
    resp = post(gw, path, big)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == 413


def test_unknown_paths_and_methods(gw: Stack) -> None:
    r = requests.get(gw.url + "/v1/messages", headers={"x-api-key": gw.key}, timeout=5)
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"
    r = requests.post(gw.url + "/v2/whatever", headers={"x-api-key": gw.key}, timeout=5)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = requests.post(gw.url + "/vertex_ai/v1/projects/p/locations/l/endpoints/e:predict", timeout=5)
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"
    r = requests.get(gw.url + VERTEX_PATH.format(model="m", method="rawPredict"), timeout=5)
    assert r.status_code == 405 and "error" in r.json()
    assert requests.get(gw.url + "/health", timeout=5).json()["status"] == "ok"


def test_missing_or_wrong_key(gw: Stack) -> None:
    a = post(gw, "/v1/messages", {"model": "m", "max_tokens": 5, "messages": [MSG]}, key="")
    assert a.status_code == 401 and a.json()["error"]["type"] == "authentication_error"
    path = VERTEX_PATH.format(model="claude-sonnet-4-5@20250929", method="rawPredict")
    v = post(gw, path, {"anthropic_version": "v", "max_tokens": 5, "messages": [MSG]}, key="wrong")
    assert v.status_code == 401 and v.json()["error"]["status"] == "UNAUTHENTICATED"
    assert not gw.upstream_calls
    assert [r.status for r in gw.records(2)] == [401, 401]


def test_gateway_survives_a_burst_of_garbage(gw: Stack) -> None:
    for junk in (b"\x00\xff" * 100, b"{" * 1000, json.dumps({"messages": [None] * 50}).encode()):
        assert post(gw, "/v1/messages", junk).status_code == 400
    assert post(gw, "/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [MSG]}).ok


def test_idle_stream_times_out_with_an_error_event(make_stack) -> None:
    gw = make_stack(
        emulator=EmulatorConfig(stream_delay=1.0), settings={"gateway": {"timeouts": {"idle": 0.3}}}
    )
    resp = post(
        gw, "/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [MSG], "stream": True}
    )
    assert resp.status_code == 200
    events = sse_events(resp)
    assert events[0][0] == "message_start"
    assert events[-1] == (
        "error",
        {"type": "error", "error": {"type": "timeout_error", "message": "vertex upstream timed out (idle)"}},
    )
    (record,) = gw.records(1)
    assert record.status == 504 and record.error_type == "timeout_error"


def test_connect_failure_is_a_502(make_stack) -> None:
    from cloudgate.util.server import free_port

    gw = make_stack(
        settings={"vertex": {"base_urls": {"us-east5": f"http://127.0.0.1:{free_port()}/v1"}}, **NO_FAILOVER}
    )
    resp = post(gw, "/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [MSG]})
    assert resp.status_code == 502 and resp.json()["error"]["type"] == "api_error"
    assert "unreachable" in resp.json()["error"]["message"]


def test_a_gateway_process_freezes_what_it_loaded_at_startup(tmp_path) -> None:
    import asyncio
    import gc

    from cloudgate.config import load_settings
    from cloudgate.gateway import create_gateway_app

    settings = load_settings(
        env={},
        overrides={
            "provider": "anthropic",
            "anthropic": {"api_key": "k"},
            "data_dir": str(tmp_path),
            "gateway": {"keys": ["cg-k"]},
        },
    )

    async def start_and_stop(freeze: bool) -> int:
        app = create_gateway_app(settings, governance=False)
        app.freeze_gc = freeze
        await app.startup()
        frozen = gc.get_freeze_count()
        await app.shutdown()
        return frozen

    gc.unfreeze()
    try:
        assert asyncio.run(start_and_stop(False)) == 0, "a library user's process is left alone"
        assert asyncio.run(start_and_stop(True)) > 0
    finally:
        gc.unfreeze()


def test_request_ids_are_unique_and_in_time_order() -> None:
    import os
    import re

    from cloudgate.gateway.app import RequestIds

    ids = RequestIds()
    first = [ids() for _ in range(2000)]
    assert all(re.fullmatch(r"req_cg[0-9a-f]{22}", i) for i in first)
    assert len(set(first)) == len(first)
    time.sleep(0.002)
    later = ids()
    assert later[:17] > first[-1][:17]  # the millisecond part sorts with time
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # a forked worker draws a process part of its own
        os.write(writer, ids().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(reader, 64).decode()
    os.close(reader)
    os.close(writer)
    assert child[17:22] != later[17:22]


def test_governance_off_forwards_with_configured_keys_and_keeps_no_store(make_stack, tmp_path) -> None:
    stack = make_stack(settings={"governance": False, "activity": {"sink": "files"}})
    assert stack.gateway.state.governor is None
    call = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [MSG]}
    resp = post(stack, "/v1/messages", call)
    assert resp.status_code == 200 and resp.json()["type"] == "message"
    refused = post(stack, "/v1/messages", call, key="cg-not-a-configured-key")
    assert refused.status_code == 401 and refused.json()["type"] == "error"
    assert not list(tmp_path.glob("data-*/*.db"))  # no database was created
