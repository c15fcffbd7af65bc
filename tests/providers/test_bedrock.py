"""BedrockProvider: URLs, body edits, beta filtering, zero-copy, and (against the emulator, which
checks SigV4 with botocore) sending with env, profile, credential_process and API-key auth,
event-stream answers, count-tokens and error mapping."""

from __future__ import annotations

import base64
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.credentials import Credentials

from cloudgate.config.settings import BedrockSettings
from cloudgate.emulator import EmulatorApp, EmulatorConfig, Fault
from cloudgate.emulator import create_emulator_app as make_emulator
from cloudgate.protocol.errors import GatewayError
from cloudgate.protocol.eventstream import EventStreamDecoder, chunk_event
from cloudgate.protocol.messages import MessagesCall, Operation, WireFormat
from cloudgate.providers.auth.aws import AwsSigner
from cloudgate.providers.base import Provider, Target
from cloudgate.providers.bedrock import BedrockProvider, default_base_url, model_path
from cloudgate.providers.transport import Timeouts, Transport
from cloudgate.util.server import free_port, serving

USER = [{"role": "user", "content": "hi"}]
MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
ACCESS_KEY, SECRET = "AKIDEMULATED", "emulated-secret"
SESSION_KEY, SESSION_SECRET, SESSION_TOKEN = "ASIAEMULATED", "session-secret", "session-token"
APP_PROFILE = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/team-a"


def signer(region: str = "us-east-1") -> AwsSigner:
    return AwsSigner(region=region, credentials=Credentials(ACCESS_KEY, SECRET))


def provider(**settings: Any) -> BedrockProvider:
    settings.setdefault("region", "us-east-1")
    return BedrockProvider(BedrockSettings(**settings), Transport(), signer(settings["region"]))


def call(**kw: Any) -> MessagesCall:
    kw.setdefault("operation", Operation.MESSAGES)
    kw.setdefault("model", MODEL)
    kw.setdefault("body", {"max_tokens": 16, "messages": USER})
    return MessagesCall(**kw)


def target(model: str = MODEL, region: str | None = "us-west-2") -> Target:
    return Target("bedrock", model, region)


# -- request building ----------------------------------------------------------------------------


def test_is_a_provider_and_base_urls() -> None:
    p: Provider = provider()
    assert (p.name, p.response_format) == ("bedrock", WireFormat.BEDROCK)
    assert default_base_url("eu-west-1") == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    assert provider().base_url_for("ap-south-1") == "https://bedrock-runtime.ap-south-1.amazonaws.com"
    assert (
        provider(base_url="http://gw.local/bedrock/").base_url_for("ap-south-1") == "http://gw.local/bedrock"
    )
    assert provider(region="eu-central-1").region == "eu-central-1"


async def test_messages_request() -> None:
    req = await provider().build_request(call(anthropic_version="2023-06-01"), target())
    assert req.method == "POST"
    assert req.url == f"https://bedrock-runtime.us-west-2.amazonaws.com/model/{MODEL}/invoke"
    assert orjson.loads(req.body) == {
        "max_tokens": 16,
        "messages": USER,
        "anthropic_version": "bedrock-2023-05-31",
    }
    assert req.headers["content-type"] == req.headers["accept"] == "application/json"
    assert "anthropic-version" not in req.headers  # the version travels in the body only
    assert req.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert "/us-west-2/bedrock/aws4_request" in req.headers["Authorization"]  # the target's region


async def test_streaming_request_drops_model_and_stream() -> None:
    c = call(stream=True, body={"max_tokens": 16, "messages": USER, "model": "x", "stream": True})
    req = await provider().build_request(c, Target("bedrock", MODEL))
    assert (
        req.url
        == f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{MODEL}/invoke-with-response-stream"
    )
    body = orjson.loads(req.body)
    assert "model" not in body and "stream" not in body
    assert c.body["stream"] is True  # the caller's body is never edited in place


async def test_count_tokens_request() -> None:
    c = call(operation=Operation.COUNT_TOKENS, body={"messages": USER, "system": "be brief"})
    req = await provider(anthropic_version="bedrock-2023-05-31").build_request(c, target())
    assert req.url.endswith(f"/model/{MODEL}/count-tokens")
    inner = orjson.loads(base64.b64decode(orjson.loads(req.body)["input"]["invokeModel"]["body"]))
    assert inner == {
        "messages": USER,
        "system": "be brief",
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 1,  # InvokeModel bodies need one; counting does not depend on it
    }


@pytest.mark.parametrize(
    ("model", "path"),
    [
        (MODEL, f"/model/{MODEL}/invoke"),
        (
            APP_PROFILE,
            "/model/arn:aws:bedrock:us-east-1:123456789012:application-inference-profile%2Fteam-a/invoke",
        ),
        (
            APP_PROFILE.replace("/", "%2F"),
            "/model/arn:aws:bedrock:us-east-1:123456789012:application-inference-profile%2Fteam-a/invoke",
        ),
        ("anthropic.claude x;v=1", "/model/anthropic.claude%20x;v%3D1/invoke"),
    ],
)
def test_model_path_quoting(model: str, path: str) -> None:
    assert model_path(model, "invoke") == path


@pytest.mark.parametrize("model", ["", ".", "..", ";x", "..;y"])
def test_bad_model_ids_are_refused(model: str) -> None:
    with pytest.raises(GatewayError) as info:
        model_path(model, "invoke")
    assert info.value.status == 400


async def test_betas_filtered_into_the_body() -> None:
    body = {"max_tokens": 16, "messages": USER, "context_management": {"edits": []}}
    c = call(
        body=body,
        betas=[
            "claude-code-20250219",
            "interleaved-thinking-2025-05-14",
            "context-management-2025-06-27",
            "advanced-tool-use-2025-11-20",
        ],
    )
    req = await provider(drop_betas=["interleaved-thinking-2025-05-14"]).build_request(c, target())
    sent = orjson.loads(req.body)
    assert sent["anthropic_beta"] == ["tool-search-tool-2025-10-19"]
    assert "context_management" not in sent
    assert req.headers["anthropic-beta"] == "tool-search-tool-2025-10-19"
    # With nothing left, neither the body list nor the header is sent.
    req = await provider().build_request(call(betas=["claude-code-20250219"]), target())
    assert "anthropic_beta" not in orjson.loads(req.body) and "anthropic-beta" not in req.headers


async def test_passthrough_headers_are_signed_and_never_override_auth() -> None:
    c = call(passthrough_headers={"x-claude-code-session-id": "s-1", "Authorization": "nope"})
    req = await provider().build_request(c, target())
    assert req.headers["x-claude-code-session-id"] == "s-1"
    assert req.headers["Authorization"].startswith("AWS4-HMAC-SHA256")
    assert "x-claude-code-session-id" in req.headers["Authorization"].split("SignedHeaders=")[1]


def door_call(raw: bytes, **kw: Any) -> MessagesCall:
    """What the Bedrock front door makes of `raw` (it lifts the version and the beta list)."""
    doc = orjson.loads(raw)
    version = doc.pop("anthropic_version", None)
    body_betas = doc.pop("anthropic_beta", [])
    header = kw.pop("header_betas", [])
    kw.setdefault("body_version", version)
    kw.setdefault("frontdoor", WireFormat.BEDROCK)
    return call(body=doc, betas=[*header, *[b for b in body_betas if b not in header]], raw_body=raw, **kw)


async def test_bedrock_door_bytes_forwarded_unchanged() -> None:
    raw = (
        b'{"max_tokens":16,"messages":[{"role":"user","content":"hi"}],'
        b'"anthropic_version":"bedrock-2023-05-31","anthropic_beta":["interleaved-thinking-2025-05-14"]}'
    )
    # Claude Code sends claude-code and effort in the header only: dropping them leaves the bytes intact.
    c = door_call(raw, header_betas=["claude-code-20250219", "effort-2025-11-24"])
    req = await provider().build_request(c, target())
    assert req.body is raw
    assert req.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"


async def test_bedrock_door_bytes_reencoded_when_a_dropped_beta_is_in_them() -> None:
    raw = (
        b'{"max_tokens":16,"messages":[{"role":"user","content":"hi"}],'
        b'"anthropic_version":"2023-06-01","anthropic_beta":["web-search-2025-03-05","context-1m-2025-08-07"]}'
    )
    req = await provider().build_request(door_call(raw), target())
    assert orjson.loads(req.body) == {
        "max_tokens": 16,
        "messages": USER,
        "anthropic_version": "2023-06-01",  # the caller's own version is kept
        "anthropic_beta": ["context-1m-2025-08-07"],
    }


async def test_bedrock_door_bytes_reencoded_when_filtering_edits_the_body() -> None:
    raw = (
        b'{"max_tokens":16,"messages":[{"role":"user","content":"hi"}],"context_management":{"edits":[]},'
        b'"anthropic_version":"bedrock-2023-05-31"}'
    )
    c = door_call(raw, header_betas=["context-management-2025-06-27"])
    sent = orjson.loads((await provider().build_request(c, target())).body)
    assert "context_management" not in sent and "anthropic_beta" not in sent


async def test_zero_copy_needs_the_bedrock_door_and_a_body_version() -> None:
    raw = b'{"max_tokens":16,"messages":[{"role":"user","content":"hi"}],"anthropic_version":"bedrock-2023-05-31"}'
    for c in (door_call(raw, frontdoor=WireFormat.ANTHROPIC), door_call(raw, body_version=None)):
        req = await provider().build_request(c, target())
        assert req.body is not raw
        assert orjson.loads(req.body)["anthropic_version"] == "bedrock-2023-05-31"


# -- against the emulator ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[EmulatorApp, str]]:
    config = EmulatorConfig(
        aws_credentials={
            ACCESS_KEY: SECRET,
            SESSION_KEY: {"secret": SESSION_SECRET, "session_token": SESSION_TOKEN},
            "AKID1": "secret1",
        },
        bedrock_api_keys=["br-api-key"],
        application_profiles={APP_PROFILE: "global.anthropic.claude-opus-4-6-v1"},
    )
    app = make_emulator(config)
    with serving(app) as srv:
        app.state.base_url = srv.url
        yield app, srv.url


@pytest.fixture
def aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An AWS environment holding nothing but what the test writes."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


@pytest.fixture
async def bedrock(
    emulator: tuple[EmulatorApp, str], aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[EmulatorApp, BedrockProvider]]:
    """A provider signing with keys from the environment, pointed at the emulator."""
    app, url = emulator
    app.state.faults.clear()
    app.state.requests.clear()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    prov = await started(url, region="us-east-1")
    try:
        yield app, prov
    finally:
        await prov.close()
        await prov.transport.close()


async def started(url: str, **settings: Any) -> BedrockProvider:
    transport = Transport(timeouts=Timeouts(connect=2, first_byte=5, idle=5, total=10))
    prov = BedrockProvider(BedrockSettings(base_url=url, **settings), transport)
    await prov.start()
    return prov


async def read_events(resp: Any) -> list[dict[str, Any]]:
    decoder = EventStreamDecoder()
    frames = [f async for chunk in resp.iter_chunks() for f in decoder.feed(chunk)]
    assert decoder.pending == 0
    assert {f.message_type for f in frames} == {"event"}
    return [orjson.loads(chunk_event(f)) for f in frames]


async def test_send_plain_with_env_credentials(bedrock: tuple[EmulatorApp, BedrockProvider]) -> None:
    app, prov = bedrock
    resp = await prov.send(call(betas=["claude-code-20250219", "interleaved-thinking-2025-05-14"]), target())
    assert resp.status == 200
    msg = orjson.loads(await resp.read())
    assert msg["type"] == "message" and msg["content"]
    (seen,) = app.state.requests
    assert seen.path == f"/model/{MODEL}/invoke"
    assert seen.json["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]
    assert seen.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")


async def test_send_streaming(bedrock: tuple[EmulatorApp, BedrockProvider]) -> None:
    app, prov = bedrock
    resp = await prov.send(call(stream=True), target("global.anthropic.claude-opus-4-6-v1"))
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/vnd.amazon.eventstream"
    events = await read_events(resp)
    types = [e["type"] for e in events]
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert "content_block_delta" in types
    assert app.state.requests[0].path.endswith("/invoke-with-response-stream")


async def test_send_to_an_application_inference_profile(bedrock: tuple[EmulatorApp, BedrockProvider]) -> None:
    _app, prov = bedrock
    resp = await prov.send(call(), target(APP_PROFILE))
    assert resp.status == 200
    await resp.read()


async def test_count_tokens(bedrock: tuple[EmulatorApp, BedrockProvider]) -> None:
    _, prov = bedrock
    resp = await prov.send(call(operation=Operation.COUNT_TOKENS, body={"messages": USER}), target())
    doc = orjson.loads(await resp.read())
    assert list(doc) == ["inputTokens"] and doc["inputTokens"] > 0  # left in Bedrock's shape


async def test_profile_with_session_credentials(emulator: tuple[EmulatorApp, str], aws_env: Path) -> None:
    _app, url = emulator
    (aws_env / "credentials").write_text(
        f"[team]\naws_access_key_id = {SESSION_KEY}\naws_secret_access_key = {SESSION_SECRET}\n"
        f"aws_session_token = {SESSION_TOKEN}\n"
    )
    (aws_env / "config").write_text("[profile team]\nregion = eu-west-1\n")
    prov = await started(url, profile="team")
    try:
        assert prov.region == "eu-west-1"
        resp = await prov.send(call(stream=True), Target("bedrock", MODEL.replace("us.", "eu.", 1)))
        assert [e["type"] for e in await read_events(resp)][-1] == "message_stop"
    finally:
        await prov.transport.close()


async def test_credentials_resolved_once(emulator: tuple[EmulatorApp, str], aws_env: Path) -> None:
    _, url = emulator
    log = aws_env / "process.log"
    script = aws_env / "creds.sh"
    script.write_text(
        f'#!/bin/sh\necho run >> "{log}"\n'
        'echo \'{"Version": 1, "AccessKeyId": "AKID1", "SecretAccessKey": "secret1"}\'\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    (aws_env / "config").write_text(f"[default]\ncredential_process = {script}\n")
    prov = await started(url, region="us-east-1")
    try:
        for stream in (False, True, False, True, False):
            resp = await prov.send(call(stream=stream), target())
            assert resp.status == 200
            await resp.read()
        assert log.read_text().count("run") == 1
        assert prov.signer.resolve_count == 1
    finally:
        await prov.transport.close()


async def test_bedrock_api_key(emulator: tuple[EmulatorApp, str], aws_env: Path) -> None:
    app, url = emulator
    app.state.requests.clear()
    prov = await started(url, region="us-east-1", api_key="br-api-key")
    try:
        resp = await prov.send(call(), target())
        await resp.read()
        assert app.state.requests[0].headers["authorization"] == "Bearer br-api-key"
        bad = await started(url, region="us-east-1", api_key="wrong")
        with pytest.raises(GatewayError) as info:
            await bad.send(call(), target())
        assert (info.value.status, info.value.error_type) == (403, "authentication_error")
        await bad.transport.close()
    finally:
        await prov.transport.close()


async def test_wrong_secret_is_an_auth_error(
    emulator: tuple[EmulatorApp, str], aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = emulator
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    prov = await started(url, region="us-east-1")
    try:
        with pytest.raises(GatewayError) as info:
            await prov.send(call(), target())
        err = info.value
        assert (err.status, err.error_type, err.raw_shape) == (403, "authentication_error", "aws")
        assert err.headers["x-amzn-errortype"].startswith("InvalidSignatureException")
    finally:
        await prov.transport.close()


@pytest.mark.parametrize(
    ("fault", "status", "aws_name", "error_type"),
    [
        (Fault(kind="rate_limit"), 429, "ThrottlingException", "rate_limit_error"),
        (Fault(kind="rate_limit", stream=True), 429, "ThrottlingException", "rate_limit_error"),
        (Fault(kind="permission_denied"), 403, "AccessDeniedException", "permission_error"),
        (Fault(kind="not_found"), 404, "ResourceNotFoundException", "not_found_error"),
        (Fault(kind="server_error"), 500, "InternalServerException", "api_error"),
        (Fault(kind="server_error", status=503), 503, "ServiceUnavailableException", "overloaded_error"),
    ],
    ids=lambda v: (
        v.kind + (f"-{v.status}" if v.status else "") + ("-stream" if v.stream else "")
        if isinstance(v, Fault)
        else None
    ),
)
async def test_upstream_errors_map_to_gateway_errors(
    bedrock: tuple[EmulatorApp, BedrockProvider], fault: Fault, status: int, aws_name: str, error_type: str
) -> None:
    app, prov = bedrock
    fault.times = 1
    app.state.faults.add(fault)
    with pytest.raises(GatewayError) as info:
        await prov.send(call(stream=bool(fault.stream)), target())
    err = info.value
    assert (err.status, err.error_type, err.raw_shape) == (status, error_type, "aws")
    assert err.headers["x-amzn-errortype"].split(":")[0] == aws_name
    assert orjson.loads(err.raw_body or b"")["message"] == err.message  # kept as Bedrock sent it
    assert "x-amzn-requestid" in err.headers


async def test_on_demand_base_id_is_a_validation_error(bedrock: tuple[EmulatorApp, BedrockProvider]) -> None:
    _, prov = bedrock
    with pytest.raises(GatewayError) as info:
        await prov.send(call(), target("anthropic.claude-opus-4-6-v1"))
    err = info.value
    assert (err.status, err.error_type, err.raw_shape) == (400, "invalid_request_error", "aws")
    assert "on-demand throughput isn't supported" in err.message


async def test_unreachable_upstream(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    prov = await started(f"http://127.0.0.1:{free_port()}", region="us-east-1")
    try:
        with pytest.raises(GatewayError) as info:
            await prov.send(call(), target())
        assert info.value.status == 502
    finally:
        await prov.transport.close()
