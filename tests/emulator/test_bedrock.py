"""The Bedrock runtime and control plane, driven by boto3 and anthropic.AnthropicBedrock on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import botocore.exceptions
import httpx2 as httpx
import pytest

from cloudgate.emulator import EmulatorConfig, Fault
from cloudgate.protocol.eventstream import EventStreamDecoder, chunk_event

from .conftest import Emulator, aws_client, bedrock_body

KEY = "AKIDEMULATOR"
SECRET = "emulator-secret"
SESSION_KEY = "ASIAEMULATOR"
SESSION_TOKEN = "session-token-1"
API_KEY = "bedrock-api-key-1"
REGION = "us-east-1"
PROFILE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
BASE = "anthropic.claude-sonnet-4-5-20250929-v1:0"
APP_ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/app123"


def _config(**kw: Any) -> EmulatorConfig:
    return EmulatorConfig(
        aws_credentials={KEY: SECRET, SESSION_KEY: {"secret": SECRET, "session_token": SESSION_TOKEN}},
        bedrock_api_keys=[API_KEY],
        application_profiles={APP_ARN: PROFILE},
        **kw,
    )


@pytest.fixture
def bedrock_emulator(make_emulator: Callable[..., Emulator]) -> Emulator:
    """An emulator that knows the test AWS credentials and Bedrock API key."""
    return make_emulator(_config())


def _runtime(srv: Any, key: str = KEY, secret: str = SECRET, token: str | None = None) -> Any:
    return aws_client(srv, region=REGION, key=key, secret=secret, token=token)


_body = bedrock_body


def _error(exc: botocore.exceptions.ClientError) -> tuple[str, str, int]:
    err = exc.response["Error"]
    return err["Code"], err["Message"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def test_invoke_with_boto3(bedrock_emulator: Emulator) -> None:
    _, srv = bedrock_emulator
    out = _runtime(srv).invoke_model(modelId=PROFILE, body=json.dumps(_body()))
    doc = json.loads(out["body"].read())
    assert doc["id"].startswith("msg_bdrk_") and len(doc["id"]) == len("msg_bdrk_") + 24
    assert doc["model"] == "claude-sonnet-4-5-20250929"
    assert "You said: hello there" in doc["content"][0]["text"]
    headers = out["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-bedrock-input-token-count"] == str(doc["usage"]["input_tokens"])
    assert headers["x-amzn-bedrock-output-token-count"] == str(doc["usage"]["output_tokens"])
    assert int(headers["x-amzn-bedrock-invocation-latency"]) > 0
    assert out["contentType"] == "application/json"


def test_same_answer_as_vertex(bedrock_emulator: Emulator) -> None:
    app, srv = bedrock_emulator
    body = _body("same everywhere")
    bedrock_doc = json.loads(
        _runtime(srv).invoke_model(modelId=PROFILE, body=json.dumps(body))["body"].read()
    )
    reply = app.state.engine.reply({k: v for k, v in body.items()}, model="x", cache_scope="other")
    assert bedrock_doc["content"] == reply.content
    assert bedrock_doc["usage"]["input_tokens"] == app.state.engine.count_tokens(body)


def test_stream_with_boto3(bedrock_emulator: Emulator) -> None:
    _, srv = bedrock_emulator
    out = _runtime(srv).invoke_model_with_response_stream(modelId=PROFILE, body=json.dumps(_body()))
    events = [json.loads(part["chunk"]["bytes"]) for part in out["body"]]
    assert [e["type"] for e in events][:2] == ["message_start", "ping"]
    assert events[-1]["type"] == "message_stop"
    metrics = events[-1]["amazon-bedrock-invocationMetrics"]
    assert set(metrics) == {"inputTokenCount", "outputTokenCount", "invocationLatency", "firstByteLatency"}
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert "You said: hello there" in text


def test_raw_stream_frames_have_padding(bedrock_emulator: Emulator) -> None:
    app, srv = bedrock_emulator
    app.state.config.require_auth = False
    with httpx.stream("POST", f"{srv.url}/model/{PROFILE}/invoke-with-response-stream", json=_body()) as r:
        assert r.headers["content-type"] == "application/vnd.amazon.eventstream"
        decoder = EventStreamDecoder()
        frames = [f for chunk in r.iter_bytes() for f in decoder.feed(chunk)]
    assert all(f.event_type == "chunk" for f in frames)
    assert all(json.loads(f.payload)["p"] for f in frames)
    assert json.loads(chunk_event(frames[0]))["type"] == "message_start"


def test_session_credentials_and_bad_auth(bedrock_emulator: Emulator) -> None:
    _, srv = bedrock_emulator
    body = json.dumps(_body())
    _runtime(srv, SESSION_KEY, SECRET, SESSION_TOKEN).invoke_model(modelId=PROFILE, body=body)
    cases = [
        (_runtime(srv, SESSION_KEY, SECRET, "stolen"), "UnrecognizedClientException"),
        (_runtime(srv, KEY, "wrong-secret"), "InvalidSignatureException"),
        (_runtime(srv, "AKIDNOBODY", SECRET), "UnrecognizedClientException"),
    ]
    for client, code in cases:
        with pytest.raises(botocore.exceptions.ClientError) as err:
            client.invoke_model(modelId=PROFILE, body=body)
        assert _error(err.value)[0] == code
        assert _error(err.value)[2] == 403
    r = httpx.post(f"{srv.url}/model/{PROFILE}/invoke", json=_body())
    assert r.status_code == 403
    assert r.headers["x-amzn-errortype"].startswith("MissingAuthenticationTokenException")
    assert r.json() == {"message": "Missing Authentication Token"}


def test_bedrock_api_key(bedrock_emulator: Emulator) -> None:
    _, srv = bedrock_emulator
    good = httpx.post(
        f"{srv.url}/model/{PROFILE}/invoke", json=_body(), headers={"authorization": f"Bearer {API_KEY}"}
    )
    assert good.status_code == 200
    bad = httpx.post(
        f"{srv.url}/model/{PROFILE}/invoke", json=_body(), headers={"authorization": "Bearer nope"}
    )
    assert bad.status_code == 403
    assert bad.headers["x-amzn-errortype"].startswith("UnrecognizedClientException")


@pytest.mark.parametrize(
    ("model", "status", "code", "fragment"),
    [
        (BASE, 400, "ValidationException", "with on-demand throughput isn't supported"),
        ("anthropic.claude-3-haiku-20240307-v1:0", 200, None, None),
        ("us.anthropic.claude-opus-5-5", 200, None, None),
        ("global.anthropic.claude-haiku-4-5-20251001-v1:0", 200, None, None),
        (f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{PROFILE}", 200, None, None),
        (APP_ARN, 200, None, None),
        (APP_ARN + "x", 404, "ResourceNotFoundException", "not found"),
        ("meta.llama3-70b-instruct-v1:0", 400, "ValidationException", "The provided model identifier is invalid."),
    ],
)  # fmt: skip
def test_model_ids(
    bedrock_emulator: Emulator, model: str, status: int, code: str | None, fragment: str
) -> None:
    _, srv = bedrock_emulator
    client = _runtime(srv)
    if code is None:
        out = client.invoke_model(modelId=model, body=json.dumps(_body()))
        assert out["ResponseMetadata"]["HTTPStatusCode"] == 200
        return
    with pytest.raises(botocore.exceptions.ClientError) as err:
        client.invoke_model(modelId=model, body=json.dumps(_body()))
    got_code, message, got_status = _error(err.value)
    assert (got_code, got_status) == (code, status)
    assert fragment in message


def test_strict_models(make_emulator: Callable[..., Emulator]) -> None:
    _, srv = make_emulator(_config(strict_models=True))
    with pytest.raises(botocore.exceptions.ClientError) as err:
        _runtime(srv).invoke_model(modelId="us.anthropic.claude-opus-5-5", body=json.dumps(_body()))
    assert _error(err.value)[0] == "ValidationException"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({**_body(), "model": "x"}, "extraneous key [model] is not permitted"),
        ({**_body(), "stream": True}, "extraneous key [stream] is not permitted"),
        ({k: v for k, v in _body().items() if k != "max_tokens"}, "#: required key [max_tokens] not found"),
        ({k: v for k, v in _body().items() if k != "anthropic_version"}, "required key [anthropic_version]"),
        ({**_body(), "anthropic_version": "vertex-2023-10-16"}, "anthropic_version"),
        ({**_body(), "anthropic_beta": ["claude-code-20250219"]}, "invalid beta flag: claude-code-20250219"),
        ({**_body(), "messages": [{"role": "user"}]}, "messages.0.content: Field required"),
        ([1, 2], "Malformed input request"),
    ],
)
def test_body_validation(bedrock_emulator: Emulator, body: Any, fragment: str) -> None:
    _, srv = bedrock_emulator
    with pytest.raises(botocore.exceptions.ClientError) as err:
        _runtime(srv).invoke_model(modelId=PROFILE, body=json.dumps(body))
    code, message, status = _error(err.value)
    assert (code, status) == ("ValidationException", 400)
    assert fragment in message


def test_accepted_betas_pass(bedrock_emulator: Emulator) -> None:
    _, srv = bedrock_emulator
    body = _body(anthropic_beta=["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"])
    _runtime(srv).invoke_model(modelId=PROFILE, body=json.dumps(body))


def test_count_tokens(bedrock_emulator: Emulator) -> None:
    app, srv = bedrock_emulator
    body = _body("count me please")
    out = _runtime(srv).count_tokens(
        modelId=PROFILE, input={"invokeModel": {"body": json.dumps(body).encode()}}
    )
    assert out["inputTokens"] == app.state.engine.count_tokens(body)


@pytest.mark.parametrize(
    ("fault", "code", "status"),
    [
        (Fault("rate_limit"), "ThrottlingException", 429),
        (Fault("rate_limit_array"), "ThrottlingException", 429),
        (Fault("not_found"), "ResourceNotFoundException", 404),
        (Fault("permission_denied"), "AccessDeniedException", 403),
        (Fault("server_error"), "InternalServerException", 500),
        (Fault("server_error", status=503), "ServiceUnavailableException", 503),
        (Fault("overloaded"), "ServiceUnavailableException", 503),
        (Fault("overloaded", status=429), "ModelNotReadyException", 429),
        (Fault("unauthenticated"), "UnrecognizedClientException", 403),
    ],
)
def test_faults_in_aws_terms(bedrock_emulator: Emulator, fault: Fault, code: str, status: int) -> None:
    app, srv = bedrock_emulator
    app.state.faults.add(fault)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        _runtime(srv).invoke_model(modelId=PROFILE, body=json.dumps(_body()))
    assert _error(err.value)[0::2] == (code, status)


def test_fault_platform_targeting(bedrock_emulator: Emulator) -> None:
    app, srv = bedrock_emulator
    app.state.faults.add(Fault("rate_limit", platform="vertex"))
    _runtime(srv).invoke_model(modelId=PROFILE, body=json.dumps(_body()))
    app.state.faults.add(Fault("rate_limit", platform="bedrock", times=1))
    with pytest.raises(botocore.exceptions.ClientError):
        _runtime(srv).invoke_model(modelId=PROFILE, body=json.dumps(_body()))


def test_mid_stream_exception_frame(bedrock_emulator: Emulator) -> None:
    app, srv = bedrock_emulator
    app.state.faults.add(Fault("rate_limit", stream=True, after_events=3))
    out = _runtime(srv).invoke_model_with_response_stream(modelId=PROFILE, body=json.dumps(_body()))
    seen = []
    with pytest.raises(botocore.exceptions.EventStreamError) as err:
        for part in out["body"]:
            seen.append(part)
    assert len(seen) == 3
    assert err.value.response["Error"]["Code"] == "throttlingException"


def test_cut_stream(bedrock_emulator: Emulator) -> None:
    app, srv = bedrock_emulator
    app.state.faults.add(Fault("cut_stream", after_events=2))
    out = _runtime(srv).invoke_model_with_response_stream(modelId=PROFILE, body=json.dumps(_body()))
    with pytest.raises(Exception):  # noqa: B017 -- botocore surfaces a dropped connection variously
        list(out["body"])


# ---------------------------------------------------------------------------------------------
# The anthropic SDK


def _sdk(srv: Any, **kw: Any) -> anthropic.AnthropicBedrock:
    kw.setdefault("max_retries", 0)
    if "api_key" not in kw:
        kw.setdefault("aws_access_key", KEY)
        kw.setdefault("aws_secret_key", SECRET)
    return anthropic.AnthropicBedrock(aws_region=REGION, base_url=srv.url, **kw)


def test_sdk_plain_stream_and_api_key(bedrock_emulator: Emulator) -> None:
    _, srv = bedrock_emulator
    for client in (_sdk(srv), _sdk(srv, api_key=API_KEY)):
        msg = client.messages.create(
            model=PROFILE, max_tokens=50, messages=[{"role": "user", "content": "hi sdk"}]
        )
        assert msg.id.startswith("msg_bdrk_")
        with client.messages.stream(
            model=PROFILE, max_tokens=50, messages=[{"role": "user", "content": "hi stream"}]
        ) as stream:
            text = "".join(stream.text_stream)
        assert "You said: hi stream" in text


def test_sdk_tool_use_from_script(make_emulator: Callable[..., Emulator]) -> None:
    script = [
        {"when": {"last_user_has_tool_result": True}, "reply": [{"type": "text", "text": "Got {tool_result}"}]},
        {"when": {"last_user_text_contains": "weather"}, "reply": [{"type": "tool_use", "name": "get_weather", "input": {"city": "Paris"}}]},
    ]  # fmt: skip
    _, srv = make_emulator(_config(script=script))
    client = _sdk(srv)
    tools = [{"name": "get_weather", "description": "w", "input_schema": {"type": "object"}}]
    first = client.messages.create(
        model=PROFILE, max_tokens=200, tools=tools, messages=[{"role": "user", "content": "weather?"}]
    )
    use = first.content[0]
    assert first.stop_reason == "tool_use" and use.type == "tool_use" and use.id.startswith("toolu_bdrk_")
    second = client.messages.create(
        model=PROFILE,
        max_tokens=200,
        tools=tools,
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [use.model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
        ],
    )
    assert second.content[0].text == "Got sunny"


def test_sdk_typed_errors(bedrock_emulator: Emulator) -> None:
    app, srv = bedrock_emulator
    app.state.faults.add(Fault("rate_limit", times=1))
    with pytest.raises(anthropic.RateLimitError):
        _sdk(srv).messages.create(model=PROFILE, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.PermissionDeniedError):
        _sdk(srv, aws_secret_key="wrong").messages.create(
            model=PROFILE, max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.BadRequestError):
        _sdk(srv).messages.create(model=BASE, max_tokens=5, messages=[{"role": "user", "content": "x"}])


# ---------------------------------------------------------------------------------------------
# Control plane


def _control(srv: Any) -> Any:
    return aws_client(srv, "bedrock", region=REGION, key=KEY, secret=SECRET)


def test_list_and_get_inference_profiles(bedrock_emulator: Emulator) -> None:
    _, srv = bedrock_emulator
    client = _control(srv)
    first = client.list_inference_profiles(typeEquals="SYSTEM_DEFINED", maxResults=5)
    assert len(first["inferenceProfileSummaries"]) == 5 and "nextToken" in first
    paginator = client.get_paginator("list_inference_profiles")
    every = [
        p
        for page in paginator.paginate(typeEquals="SYSTEM_DEFINED")
        for p in page["inferenceProfileSummaries"]
    ]
    ids = {p["inferenceProfileId"] for p in every}
    assert {
        PROFILE,
        "global.anthropic.claude-opus-4-6-v1",
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
    } <= ids
    # A region lists its own geography's profiles and the global ones, not another geography's.
    assert "eu.anthropic.claude-haiku-4-5-20251001-v1:0" not in ids
    assert all(p["type"] == "SYSTEM_DEFINED" and p["status"] == "ACTIVE" for p in every)
    one = client.get_inference_profile(inferenceProfileIdentifier=PROFILE)
    assert one["inferenceProfileArn"] == f"arn:aws:bedrock:{REGION}:123456789012:inference-profile/{PROFILE}"
    assert one["models"][0]["modelArn"].endswith(f"foundation-model/{BASE}")
    by_arn = client.get_inference_profile(inferenceProfileIdentifier=one["inferenceProfileArn"])
    assert by_arn["inferenceProfileId"] == PROFILE
    apps = client.list_inference_profiles(typeEquals="APPLICATION")["inferenceProfileSummaries"]
    assert [p["inferenceProfileArn"] for p in apps] == [APP_ARN]
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_inference_profile(inferenceProfileIdentifier="us.anthropic.nothing")


def test_requests_are_recorded(bedrock_emulator: Emulator) -> None:
    app, srv = bedrock_emulator
    _runtime(srv).invoke_model(modelId=PROFILE, body=json.dumps(_body()))
    recorded = app.state.requests[-1]
    assert recorded.path == f"/model/{PROFILE}/invoke"
    assert recorded.json["anthropic_version"] == "bedrock-2023-05-31"


def test_config_file_with_aws_fields(tmp_path: Any) -> None:
    path = tmp_path / "emulator.yaml"
    path.write_text(
        "aws_credentials:\n"
        f"  {KEY}: {SECRET}\n"
        f"  {SESSION_KEY}: {{secret: {SECRET}, session_token: {SESSION_TOKEN}}}\n"
        f"bedrock_api_keys: [{API_KEY}]\n"
        "anthropic_api_keys: [sk-1]\n"
        "aws_region: eu-west-1\n"
        "aws_account_id: '111122223333'\n"
        f"application_profiles: {{'{APP_ARN}': {PROFILE}}}\n"
        "faults: [{kind: rate_limit, platform: bedrock}]\n"
    )
    config = EmulatorConfig.from_file(path)
    assert config.aws_secret(KEY) == SECRET and config.aws_session_token(KEY) is None
    assert (config.aws_secret(SESSION_KEY), config.aws_session_token(SESSION_KEY)) == (SECRET, SESSION_TOKEN)
    assert config.aws_secret("other") is None
    assert config.bedrock_api_keys == [API_KEY] and config.anthropic_api_keys == ["sk-1"]
    assert (config.aws_region, config.aws_account_id) == ("eu-west-1", "111122223333")
    assert config.application_profiles == {APP_ARN: PROFILE}
    assert config.faults[0].platform == "bedrock"
    with pytest.raises(ValueError, match="platform"):
        Fault.from_dict({"kind": "rate_limit", "platform": "azure"})


def test_faults_aimed_at_one_platform() -> None:
    from cloudgate.emulator.faults import FaultSet, platform_of

    faults = FaultSet([Fault("rate_limit", platform="bedrock")])
    vertex_path = "/v1/projects/p/locations/us-east5/publishers/anthropic/models/m:rawPredict"
    assert (
        faults.take(path=vertex_path, model="m", location="us-east5", stream=False, platform="vertex") == []
    )
    bedrock_path = f"/model/{PROFILE}/invoke"
    assert (
        len(faults.take(path=bedrock_path, model=PROFILE, location=None, stream=False, platform="bedrock"))
        == 1
    )
    assert (platform_of(vertex_path), platform_of(bedrock_path), platform_of("/v1/messages")) == (
        "vertex",
        "bedrock",
        "anthropic",
    )
