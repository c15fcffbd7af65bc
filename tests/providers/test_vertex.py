"""VertexProvider: URLs, body and header edits, beta filtering, zero-copy, and (against the emulator)
sending, auth refresh, the count-tokens fallback and error mapping."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from cloudgate.config.settings import VertexSettings
from cloudgate.emulator import (
    EmulatorApp,
    EmulatorConfig,
    Fault,
    RecordedRequest,
    create_emulator_app,
    write_service_account_key,
)
from cloudgate.protocol.errors import GatewayError
from cloudgate.protocol.messages import MessagesCall, Operation, WireFormat
from cloudgate.providers.auth.google import GoogleTokenSource
from cloudgate.providers.base import Provider, Target
from cloudgate.providers.transport import Timeouts, Transport
from cloudgate.providers.vertex import VertexProvider, default_base_url
from cloudgate.util.server import free_port, serving

USER = [{"role": "user", "content": "hi"}]
MODEL = "claude-sonnet-4-5@20250929"


def provider(**settings: Any) -> VertexProvider:
    return VertexProvider(VertexSettings(**settings), Transport(), GoogleTokenSource(access_token="tok"))


def call(**kw: Any) -> MessagesCall:
    kw.setdefault("operation", Operation.MESSAGES)
    kw.setdefault("model", MODEL)
    kw.setdefault("body", {"max_tokens": 16, "messages": USER})
    return MessagesCall(**kw)


def target(model: str = MODEL, region: str | None = "us-east5", project: str | None = "p1") -> Target:
    return Target("vertex", model, region, project)


# -- base URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "url"),
    [
        ("global", "https://aiplatform.googleapis.com/v1"),
        ("us", "https://aiplatform.us.rep.googleapis.com/v1"),
        ("eu", "https://aiplatform.eu.rep.googleapis.com/v1"),
        ("us-east5", "https://us-east5-aiplatform.googleapis.com/v1"),
        ("europe-west1", "https://europe-west1-aiplatform.googleapis.com/v1"),
    ],
)
def test_default_base_urls(region: str, url: str) -> None:
    assert default_base_url(region) == url
    assert provider().base_url_for(region) == url


def test_base_url_overrides() -> None:
    p = provider(base_url="http://gw.local/vertex/v1/", base_urls={"eu": "http://eu.local/v1"})
    assert p.base_url_for("eu") == "http://eu.local/v1"
    assert p.base_url_for("global") == "http://gw.local/vertex/v1"
    assert p.base_url_for("us-east5") == "http://gw.local/vertex/v1"
    only_one = provider(base_urls={"us-east5": "http://east.local/v1"})
    assert only_one.base_url_for("us-east5") == "http://east.local/v1"
    assert only_one.base_url_for("global") == "https://aiplatform.googleapis.com/v1"


def test_is_a_provider() -> None:
    p: Provider = provider()
    assert p.name == "vertex"
    assert p.response_format is WireFormat.ANTHROPIC


# -- request building ----------------------------------------------------------------------------


async def test_messages_request() -> None:
    req = await provider().build_request(call(anthropic_version="2023-06-01"), target())
    assert req.method == "POST"
    assert req.url == (
        "https://us-east5-aiplatform.googleapis.com/v1/projects/p1/locations/us-east5"
        "/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    )
    assert orjson.loads(req.body) == {
        "max_tokens": 16,
        "messages": USER,
        "anthropic_version": "vertex-2023-10-16",
    }
    assert req.headers == {
        "Authorization": "Bearer tok",
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
    }


async def test_streaming_request_and_defaults() -> None:
    c = call(stream=True, body={"max_tokens": 16, "messages": USER, "model": "x", "stream": False})
    req = await provider(region="global", project_id="cfg-proj").build_request(
        c, Target("vertex", "claude-opus-4-6")
    )
    assert req.url.endswith(
        "/projects/cfg-proj/locations/global/publishers/anthropic/models/claude-opus-4-6:streamRawPredict"
    )
    assert req.url.startswith("https://aiplatform.googleapis.com/v1/")
    body = orjson.loads(req.body)
    assert body["stream"] is True
    assert "model" not in body
    assert req.headers["anthropic-version"] == "2023-06-01"  # caller sent none
    assert c.body["stream"] is False  # the caller's body is never edited in place


async def test_non_streaming_drops_a_stray_stream_field() -> None:
    req = await provider().build_request(
        call(body={"max_tokens": 1, "messages": USER, "stream": True}), target()
    )
    assert "stream" not in orjson.loads(req.body)
    assert req.url.endswith(":rawPredict")


async def test_count_tokens_request_keeps_the_model() -> None:
    c = call(operation=Operation.COUNT_TOKENS, model="sonnet", body={"messages": USER})
    req = await provider().build_request(c, target())
    assert req.url == (
        "https://us-east5-aiplatform.googleapis.com/v1/projects/p1/locations/us-east5"
        "/publishers/anthropic/models/count-tokens:rawPredict"
    )
    assert orjson.loads(req.body) == {
        "messages": USER,
        "model": MODEL,  # the routed id, not the caller's alias
        "anthropic_version": "vertex-2023-10-16",
    }


async def test_anthropic_version_sources() -> None:
    p = provider(anthropic_version="vertex-2099-01-01")
    plain = await p.build_request(call(body_version="ignored-on-anthropic-door"), target())
    assert orjson.loads(plain.body)["anthropic_version"] == "vertex-2099-01-01"
    vertex = await p.build_request(
        call(frontdoor=WireFormat.VERTEX, body_version="vertex-2025-01-01"), target()
    )
    assert orjson.loads(vertex.body)["anthropic_version"] == "vertex-2025-01-01"
    missing = await p.build_request(call(frontdoor=WireFormat.VERTEX), target())
    assert orjson.loads(missing.body)["anthropic_version"] == "vertex-2099-01-01"


async def test_project_resolution() -> None:
    assert provider(project_id="cfg").project_for(Target("vertex", MODEL, None, "routed")) == "routed"
    assert provider(project_id="cfg").project_for(Target("vertex", MODEL)) == "cfg"
    from_creds = VertexProvider(
        VertexSettings(), Transport(), GoogleTokenSource(access_token="t", project_id="from-creds")
    )
    assert from_creds.project_for(Target("vertex", MODEL)) == "from-creds"
    with pytest.raises(GatewayError) as err:
        await provider().build_request(call(), Target("vertex", MODEL))
    assert err.value.status == 500
    assert "ANTHROPIC_VERTEX_PROJECT_ID" in err.value.message


async def test_path_quoting() -> None:
    req = await provider().build_request(call(), target(model="claude-x;v=1@2025", project="a b"))
    assert "/projects/a%20b/" in req.url
    assert req.url.endswith("/models/claude-x%3Bv=1@2025:rawPredict")
    for bad in ("..", ".", ";x"):
        with pytest.raises(GatewayError) as err:
            await provider().build_request(call(), target(model=bad))
        assert err.value.status == 400


async def test_passthrough_headers_never_override_auth() -> None:
    c = call(passthrough_headers={"x-claude-code-session-id": "s1", "Authorization": "Bearer caller"})
    req = await provider().build_request(c, target())
    assert req.headers["x-claude-code-session-id"] == "s1"
    assert req.headers["Authorization"] == "Bearer tok"


# -- betas ---------------------------------------------------------------------------------------


async def test_betas_filtered_and_context_management_dropped() -> None:
    body = {"max_tokens": 16, "messages": USER, "context_management": {"edits": [{"type": "x"}]}}
    c = call(
        body=body,
        betas=["claude-code-20250219", "context-management-2025-06-27", "advanced-tool-use-2025-11-20"],
    )
    req = await provider().build_request(c, target())
    assert req.headers["anthropic-beta"] == "claude-code-20250219,tool-search-tool-2025-10-19"
    sent = orjson.loads(req.body)
    assert "context_management" not in sent
    assert "context_management" in body


async def test_configured_drop_betas_and_empty_header_omitted() -> None:
    p = provider(drop_betas=["interleaved-thinking-2025-05-14"])
    req = await p.build_request(call(betas=["interleaved-thinking-2025-05-14", "oauth-2025-04-20"]), target())
    assert "anthropic-beta" not in req.headers


# -- zero copy -----------------------------------------------------------------------------------


def vertex_call(raw: bytes, **kw: Any) -> MessagesCall:
    doc = orjson.loads(raw)
    version = doc.pop("anthropic_version", None)
    stream = bool(doc.pop("stream", False))
    kw.setdefault("model", MODEL)
    return call(
        body=doc, stream=stream, frontdoor=WireFormat.VERTEX, raw_body=raw, body_version=version, **kw
    )


async def test_vertex_door_bytes_forwarded_unchanged() -> None:
    raw = b'{"messages": [{"role":"user","content":"hi"}],  "max_tokens":16,"anthropic_version":"v-x"}'
    req = await provider().build_request(vertex_call(raw, betas=["claude-code-20250219"]), target())
    assert req.body is raw


async def test_vertex_door_bytes_reencoded_when_filtering_edits_the_body() -> None:
    raw = b'{"max_tokens":16,"messages":[],"context_management":{},"anthropic_version":"v-x","stream":true}'
    c = vertex_call(raw, betas=["context-management-2025-06-27"])
    req = await provider().build_request(c, target())
    assert orjson.loads(req.body) == {
        "max_tokens": 16,
        "messages": [],
        "anthropic_version": "v-x",
        "stream": True,
    }
    assert req.url.endswith(":streamRawPredict")


async def test_vertex_door_needs_a_body_version_and_matching_count_model() -> None:
    raw = b'{"max_tokens":16,"messages":[]}'
    req = await provider().build_request(vertex_call(raw), target())
    assert req.body != raw
    assert orjson.loads(req.body)["anthropic_version"] == "vertex-2023-10-16"
    count_raw = b'{"messages":[],"model":"alias","anthropic_version":"v"}'
    c = vertex_call(count_raw, operation=Operation.COUNT_TOKENS, model="alias")
    c.body.pop("model")
    req = await provider().build_request(c, target())
    assert orjson.loads(req.body)["model"] == MODEL
    same = vertex_call(count_raw.replace(b"alias", MODEL.encode()), operation=Operation.COUNT_TOKENS)
    same.body.pop("model")
    req = await provider().build_request(same, target())
    assert req.body is same.raw_body


# -- against the emulator ------------------------------------------------------------------------


class Upstream:
    """The emulator served on loopback, and a provider pointed at it with a service-account key."""

    def __init__(self, app: EmulatorApp, url: str, key_file: Path) -> None:
        self.app = app
        self.url = url
        self.key_file = key_file

    def settings(self, **kw: Any) -> VertexSettings:
        kw.setdefault("project_id", "p1")
        kw.setdefault("region", "us-east5")
        kw.setdefault("base_url", f"{self.url}/v1")
        kw.setdefault("credentials_file", str(self.key_file))
        return VertexSettings(**kw)

    def token_hits(self) -> int:
        return sum(1 for r in self.app.state.requests if r.path == "/token")

    def model_calls(self) -> list[RecordedRequest]:
        return [r for r in self.app.state.requests if "/publishers/anthropic/" in r.path]


@contextlib.contextmanager
def run_emulator(tmp_path: Path, **config: Any) -> Iterator[Upstream]:
    key = tmp_path / "sa.json"
    app = create_emulator_app(EmulatorConfig(service_account_files=[str(key)], **config))
    with serving(app) as srv:
        app.state.base_url = srv.url
        write_service_account_key(key, token_uri=f"{srv.url}/token")
        yield Upstream(app, srv.url, key)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    with run_emulator(tmp_path_factory.mktemp("vertex")) as upstream:
        yield upstream


@pytest.fixture
async def upstream(emulator: Upstream) -> AsyncIterator[tuple[Upstream, VertexProvider]]:
    emulator.app.state.faults.clear()
    emulator.app.state.requests.clear()
    transport = Transport(timeouts=Timeouts(connect=2, first_byte=5, idle=5, total=10))
    prov = VertexProvider(emulator.settings(), transport)
    await prov.start()
    try:
        yield emulator, prov
    finally:
        await prov.close()
        await transport.close()


async def test_send_plain(upstream: tuple[Upstream, VertexProvider]) -> None:
    emu, prov = upstream
    resp = await prov.send(call(betas=["claude-code-20250219"]), target())
    assert resp.status == 200
    assert resp.headers["request-id"].startswith("req_vrtx_")
    msg = orjson.loads(await resp.read())
    assert msg["type"] == "message"
    assert msg["id"].startswith("msg_vrtx_")
    (seen,) = emu.model_calls()
    assert seen.path == (
        "/v1/projects/p1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    )
    assert seen.json == {"max_tokens": 16, "messages": USER, "anthropic_version": "vertex-2023-10-16"}
    assert seen.headers["anthropic-beta"] == "claude-code-20250219"
    assert emu.app.state.tokens.is_valid(seen.headers["authorization"].removeprefix("Bearer "))


async def test_send_streaming(upstream: tuple[Upstream, VertexProvider]) -> None:
    emu, prov = upstream
    resp = await prov.send(call(stream=True), target(model="claude-opus-4-6"))
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    data = b"".join([chunk async for chunk in resp.iter_chunks()])
    assert data.startswith(b"event: message_start")
    assert b"event: message_stop" in data
    (seen,) = emu.model_calls()
    assert seen.path.endswith("/models/claude-opus-4-6:streamRawPredict")
    assert seen.json["stream"] is True


async def test_rejected_betas_never_reach_vertex(upstream: tuple[Upstream, VertexProvider]) -> None:
    # The emulator, like Vertex, answers 400 for betas it does not know: filtering makes this pass.
    emu, prov = upstream
    body = {"max_tokens": 16, "messages": USER, "context_management": {"edits": []}}
    c = call(body=body, betas=["context-management-2025-06-27", "advanced-tool-use-2025-11-20"])
    resp = await prov.send(c, target())
    assert resp.status == 200
    await resp.read()
    (seen,) = emu.model_calls()
    assert seen.headers["anthropic-beta"] == "tool-search-tool-2025-10-19"
    assert "context_management" not in seen.json


async def test_token_fetched_once_and_refreshed_after_expiry(tmp_path: Path) -> None:
    with run_emulator(tmp_path, token_ttl=1) as emu:
        transport = Transport()
        prov = VertexProvider(emu.settings(token_refresh_margin=0), transport)
        await prov.start()
        try:
            for _ in range(5):
                resp = await prov.send(call(), target())
                assert resp.status == 200
                await resp.read()
            assert emu.token_hits() == 1  # no token I/O per request
            await asyncio.sleep(1.1)
            resp = await prov.send(call(), target())
            assert resp.status == 200
            await resp.read()
            assert 2 <= emu.token_hits() <= 3
            tokens = {r.headers["authorization"] for r in emu.model_calls()}
            assert len(tokens) == 2
        finally:
            await prov.close()
            await transport.close()


async def test_401_invalidates_the_token_and_retries_once(upstream: tuple[Upstream, VertexProvider]) -> None:
    emu, prov = upstream
    hits = emu.token_hits()
    emu.app.state.faults.add(Fault(kind="unauthenticated", times=1))
    resp = await prov.send(call(), target())
    assert resp.status == 200
    await resp.read()
    first, second = emu.model_calls()
    assert first.headers["authorization"] != second.headers["authorization"]
    assert emu.token_hits() == hits + 1

    emu.app.state.faults.add(Fault(kind="unauthenticated", times=2))
    with pytest.raises(GatewayError) as err:
        await prov.send(call(), target())
    assert err.value.status == 401
    assert err.value.google_status == "UNAUTHENTICATED"
    assert len(emu.model_calls()) == 4  # one retry, not a loop


async def test_401_with_a_fixed_token_is_not_retried(emulator: Upstream) -> None:
    emulator.app.state.requests.clear()
    transport = Transport()
    settings = emulator.settings(access_token="not-issued", credentials_file=None)
    prov = VertexProvider(settings, transport)
    try:
        with pytest.raises(GatewayError) as err:
            await prov.send(call(), target())
        assert err.value.status == 401
        assert len(emulator.model_calls()) == 1
        assert emulator.token_hits() == 0
    finally:
        await transport.close()


async def test_count_tokens_falls_back_from_global_and_remembers(
    upstream: tuple[Upstream, VertexProvider],
) -> None:
    emu, prov = upstream
    c = call(operation=Operation.COUNT_TOKENS, body={"messages": USER})
    for _ in range(2):
        resp = await prov.send(c, target(region="global"))
        assert resp.status == 200
        assert orjson.loads(await resp.read())["input_tokens"] > 0
    paths = [r.path.split("/locations/")[1].split("/")[0] for r in emu.model_calls()]
    assert paths == ["global", "us-east5", "us-east5"]
    # Messages at global are unaffected, and other projects still try global first.
    resp = await prov.send(call(), target(region="global"))
    await resp.read()
    assert "/locations/global/" in emu.model_calls()[-1].path
    resp = await prov.send(c, target(region="global", project="p2"))
    await resp.read()
    assert [r.path.split("/")[5] for r in emu.model_calls()[-2:]] == ["global", "us-east5"]


def _google(status: int, google_status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": google_status}}


@pytest.mark.parametrize(
    ("fault", "status", "shape", "error_type"),
    [
        (Fault(kind="rate_limit"), 429, "google", "rate_limit_error"),
        (Fault(kind="rate_limit_array", stream=True), 429, "google", "rate_limit_error"),
        (Fault(kind="not_found"), 404, "google", "not_found_error"),
        (Fault(kind="permission_denied"), 403, "google", "permission_error"),
        (Fault(kind="server_error"), 500, "google", "api_error"),
        (Fault(kind="server_error", status=503), 503, "google", "overloaded_error"),
        (Fault(kind="overloaded"), 529, "anthropic", "overloaded_error"),
    ],
    ids=lambda v: v.kind + (f"-{v.status}" if v.status else "") if isinstance(v, Fault) else None,
)
async def test_upstream_errors_map_to_gateway_errors(
    upstream: tuple[Upstream, VertexProvider], fault: Fault, status: int, shape: str, error_type: str
) -> None:
    emu, prov = upstream
    fault.times = 1
    emu.app.state.faults.add(fault)
    with pytest.raises(GatewayError) as err:
        await prov.send(call(stream=bool(fault.stream)), target())
    exc = err.value
    assert exc.status == status
    assert exc.raw_shape == shape
    assert exc.error_type == error_type
    assert exc.raw_body
    doc = orjson.loads(exc.raw_body)
    if fault.kind == "rate_limit_array":
        assert exc.raw_body.startswith(b"[") and isinstance(doc, list)  # kept as sent, array and all
        doc = doc[0]
    if shape == "google":
        assert doc["error"]["code"] == status
        assert doc["error"]["message"] == exc.message
    else:
        assert doc == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    if fault.kind.startswith("rate_limit"):
        assert "Quota exceeded" in exc.message
    assert len(emu.model_calls()) == 1  # errors other than 401 are the router's to retry


async def test_unreachable_and_slow_upstreams(emulator: Upstream) -> None:
    emulator.app.state.faults.clear()
    transport = Transport(timeouts=Timeouts(connect=1, first_byte=0.3, idle=1, total=5))
    prov = VertexProvider(emulator.settings(access_token="x", credentials_file=None), transport)
    emulator.app.state.config.static_tokens.append("x")
    try:
        emulator.app.state.faults.add(Fault(kind="slow_first_byte", delay=1.0, times=1))
        with pytest.raises(GatewayError) as err:
            await prov.send(call(), target())
        assert err.value.status == 504
        closed = VertexProvider(
            VertexSettings(project_id="p1", base_url=f"http://127.0.0.1:{free_port()}/v1", access_token="x"),
            transport,
        )
        with pytest.raises(GatewayError) as err:
            await closed.send(call(), target())
        assert err.value.status == 502
        assert "unreachable" in err.value.message
    finally:
        emulator.app.state.config.static_tokens.remove("x")
        await transport.close()


async def test_retry_after_and_request_id_are_kept(tmp_path: Path) -> None:
    # The emulator sends no retry-after, so a minimal real server plays the throttling upstream.
    body = b'{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}'

    async def throttling(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", b"7"),
                    (b"request-id", b"req_vrtx_1"),
                    (b"x-unrelated", b"1"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    transport = Transport()
    with serving(throttling) as srv:
        prov = VertexProvider(
            VertexSettings(project_id="p1", base_url=f"{srv.url}/v1", access_token="x"), transport
        )
        try:
            with pytest.raises(GatewayError) as err:
                await prov.send(call(), target())
        finally:
            await transport.close()
    assert err.value.status == 429
    assert err.value.raw_body == body
    # Names keep aiohttp's spelling (`Retry-After`): compare case-insensitively.
    assert {k.lower(): v for k, v in err.value.headers.items()} == {
        "retry-after": "7",
        "request-id": "req_vrtx_1",
    }


async def test_project_from_the_credentials_when_none_is_configured(emulator: Upstream) -> None:
    emulator.app.state.requests.clear()
    transport = Transport()
    prov = VertexProvider(emulator.settings(project_id=None, region="global"), transport)  # not started
    try:
        resp = await prov.send(
            call(operation=Operation.COUNT_TOKENS, body={"messages": USER}), target(project=None, region=None)
        )
        assert resp.status == 200
        await resp.read()
        assert all("/projects/emulated-project/" in r.path for r in emulator.model_calls())
    finally:
        await prov.close()
        await transport.close()
