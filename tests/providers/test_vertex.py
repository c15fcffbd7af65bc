"""VertexProvider: URLs, body and header edits, beta filtering, zero-copy, and (against the emulator)
sending, auth refresh, the count-tokens fallback and error mapping."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from cloudgate.config.settings import VertexSettings
from cloudgate.protocol.errors import GatewayError
from cloudgate.protocol.messages import MessagesCall, Operation, WireFormat
from cloudgate.providers.auth.google import GoogleTokenSource
from cloudgate.providers.base import Provider, Target
from cloudgate.providers.transport import Transport
from cloudgate.providers.vertex import VertexProvider, default_base_url

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
