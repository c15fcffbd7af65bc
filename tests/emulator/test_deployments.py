"""Per-deployment behaviour: prompt caches per region, and Bedrock's region taken from the signature.

A deployment is a provider, a project or account, and a region. The gateway's failover and
cache-affinity tests need each region to behave as the real clouds do: its own prompt cache,
its own inference profiles, its own faults.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import botocore.exceptions
import httpx2 as httpx
import pytest

from cloudgate.emulator import EmulatorConfig, Fault
from cloudgate.emulator.bedrock import geography_serves, profile_serves_region
from cloudgate.protocol.sigv4 import sign_request

from .conftest import MODEL, TOKEN, Emulator, aws_client, bedrock_body, vertex_client

KEY = "AKIDREGIONS"
SECRET = "regions-secret"
API_KEY = "bedrock-regions-key"
BASE = "anthropic.claude-sonnet-4-5-20250929-v1:0"
LONG_SYSTEM: Any = [{"type": "text", "text": "house rules " * 200, "cache_control": {"type": "ephemeral"}}]


def _bedrock_config(**kw: Any) -> EmulatorConfig:
    return EmulatorConfig(
        aws_credentials={KEY: SECRET}, bedrock_api_keys=[API_KEY], min_cacheable_tokens=100, **kw
    )


@pytest.fixture
def bedrock_emulator(make_emulator: Callable[..., Emulator]) -> Emulator:
    """An emulator that knows the test AWS key and Bedrock API key, caching prefixes of 100+ tokens."""
    return make_emulator(_bedrock_config())


def _runtime(srv: Any, region: str) -> Any:
    return aws_client(srv, region=region, key=KEY, secret=SECRET)


def _body(text: str = "hello regions", **kw: Any) -> dict[str, Any]:
    return bedrock_body(text, max_tokens=50, **kw)


def _invoke(srv: Any, region: str, model: str, **body: Any) -> dict[str, Any]:
    out = _runtime(srv, region).invoke_model(modelId=model, body=json.dumps(_body(**body)))
    doc: dict[str, Any] = json.loads(out["body"].read())
    return doc


def _invoke_error(srv: Any, region: str, model: str) -> tuple[str, str, int]:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        _invoke(srv, region, model)
    err = info.value.response
    return err["Error"]["Code"], err["Error"]["Message"], err["ResponseMetadata"]["HTTPStatusCode"]


# ---------------------------------------------------------------------------------------------
# Vertex: the cache is per project and location


def test_vertex_prompt_cache_is_per_location(make_emulator: Callable[..., Emulator]) -> None:
    _, srv = make_emulator(EmulatorConfig(static_tokens=[TOKEN], min_cacheable_tokens=100))

    def ask(region: str) -> Any:
        return vertex_client(srv, region=region).messages.create(
            model=MODEL, max_tokens=20, system=LONG_SYSTEM, messages=[{"role": "user", "content": "hi"}]
        )

    written = ask("us-east5").usage.cache_creation_input_tokens
    assert written and ask("us-east5").usage.cache_read_input_tokens == written
    # Another region, the global endpoint included, has its own cache: a new write, no read.
    for elsewhere in ("europe-west1", "global"):
        usage = ask(elsewhere).usage
        assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (0, written)
    assert ask("europe-west1").usage.cache_read_input_tokens == written
    assert ask("us-east5").usage.cache_read_input_tokens == written


# ---------------------------------------------------------------------------------------------
# Bedrock: the region comes from the SigV4 credential scope


def test_bedrock_prompt_cache_is_per_signed_region(bedrock_emulator: Emulator) -> None:
    _, srv = bedrock_emulator
    model = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"  # one id valid in every region
    first = _invoke(srv, "us-east-1", model, system=LONG_SYSTEM)["usage"]
    written = first["cache_creation_input_tokens"]
    assert written and first["cache_read_input_tokens"] == 0
    assert _invoke(srv, "us-east-1", model, system=LONG_SYSTEM)["usage"]["cache_read_input_tokens"] == written
    eu = _invoke(srv, "eu-west-1", model, system=LONG_SYSTEM)["usage"]
    assert (eu["cache_read_input_tokens"], eu["cache_creation_input_tokens"]) == (0, written)
    assert _invoke(srv, "eu-west-1", model, system=LONG_SYSTEM)["usage"]["cache_read_input_tokens"] == written


def test_bedrock_profiles_follow_the_signed_region(bedrock_emulator: Emulator) -> None:
    _, srv = bedrock_emulator
    assert _invoke(srv, "eu-west-1", f"eu.{BASE}")["content"]
    assert _invoke(srv, "us-west-2", f"us.{BASE}")["content"]
    assert _invoke(srv, "ap-northeast-1", f"apac.{BASE}")["content"]
    for region in ("us-east-1", "eu-central-1", "ap-southeast-2"):
        assert _invoke(srv, region, f"global.{BASE}")["content"]
    # A profile of another geography is, in that region, an id that does not exist.
    for region, model in (
        ("eu-west-1", f"us.{BASE}"),
        ("us-east-1", f"eu.{BASE}"),
        ("eu-west-3", f"apac.{BASE}"),
    ):
        assert _invoke_error(srv, region, model) == (
            "ValidationException",
            "The provided model identifier is invalid.",
            400,
        )


@pytest.mark.parametrize(
    ("geo", "region", "serves"),
    [
        ("us", "us-east-1", True), ("us", "us-west-2", True), ("us", "eu-west-1", False),
        ("us", "us-gov-west-1", False), ("us-gov", "us-gov-west-1", True),
        ("eu", "eu-central-1", True), ("eu", "us-east-1", False),
        ("apac", "ap-south-1", True), ("apac", "ap-northeast-1", True), ("apac", "eu-west-1", False),
        ("jp", "ap-northeast-1", True), ("jp", "ap-northeast-3", True), ("jp", "ap-northeast-2", False),
        ("au", "ap-southeast-2", True), ("au", "ap-southeast-4", True), ("au", "ap-southeast-1", False),
        ("ca", "ca-central-1", True), ("ca", "us-east-1", False),
        ("global", "us-east-1", True), ("global", "ap-southeast-4", True), ("global", "sa-east-1", True),
    ],
)  # fmt: skip
def test_geography_rules(geo: str, region: str, serves: bool) -> None:
    assert geography_serves(geo, region) is serves
    assert profile_serves_region(f"{geo}.{BASE}", region) is serves
    assert profile_serves_region(BASE, region)  # a base id is no profile


def test_bedrock_faults_match_the_signed_region(bedrock_emulator: Emulator) -> None:
    app, srv = bedrock_emulator
    app.state.faults.add(Fault("server_error", status=503, location="eu-west-1"))
    model = f"global.{BASE}"
    assert _invoke(srv, "us-east-1", model)["content"]
    assert _invoke_error(srv, "eu-west-1", model)[0::2] == ("ServiceUnavailableException", 503)
    assert app.state.faults.active()[0].hits == 1


def test_the_signature_binds_the_region(bedrock_emulator: Emulator) -> None:
    """A request cannot claim a region it was not signed for, nor one its real host contradicts."""
    _, srv = bedrock_emulator
    body = json.dumps(_body()).encode()
    path = f"/model/global.{BASE}/invoke"

    def post_signed(signed_url: str, **extra: str) -> httpx.Response:
        headers = sign_request("POST", signed_url, {}, body, key=KEY, secret=SECRET, region="eu-west-1")
        for old, replacement in extra.items():
            headers["authorization"] = headers["authorization"].replace(old, replacement)
        host = {"host": signed_url.split("/")[2]}
        return httpx.post(srv.url + path, content=body, headers={**headers, **host})

    assert post_signed(srv.url + path).status_code == 200
    tampered = post_signed(srv.url + path, **{"/eu-west-1/": "/us-east-1/"})
    assert tampered.status_code == 403
    assert tampered.headers["x-amzn-errortype"].startswith("InvalidSignatureException")
    elsewhere = post_signed(f"https://bedrock-runtime.us-east-1.amazonaws.com{path}")
    assert elsewhere.status_code == 403
    assert "Credential should be scoped to a valid region, not 'eu-west-1'" in elsewhere.json()["message"]


def test_unsigned_and_api_key_requests_use_the_configured_region(
    make_emulator: Callable[..., Emulator],
) -> None:
    app, srv = make_emulator(_bedrock_config(aws_region="eu-west-3"))
    auth = {"authorization": f"Bearer {API_KEY}"}

    def post(model: str, **headers: str) -> httpx.Response:
        return httpx.post(f"{srv.url}/model/{model}/invoke", json=_body(), headers={**auth, **headers})

    assert post(f"eu.{BASE}").status_code == 200
    refused = post(f"us.{BASE}")
    assert refused.status_code == 400 and refused.json() == {
        "message": "The provided model identifier is invalid."
    }
    # A bearer call to a real endpoint's host is served in the region the host names.
    assert post(f"us.{BASE}", host="bedrock-runtime.us-west-2.amazonaws.com").status_code == 200
    app.state.config.require_auth = False
    assert httpx.post(f"{srv.url}/model/eu.{BASE}/invoke", json=_body()).status_code == 200


def test_sdk_region_reaches_the_emulator(bedrock_emulator: Emulator) -> None:
    _, srv = bedrock_emulator

    def sdk(region: str) -> anthropic.AnthropicBedrock:
        return anthropic.AnthropicBedrock(
            aws_region=region, aws_access_key=KEY, aws_secret_key=SECRET, base_url=srv.url, max_retries=0
        )

    messages: Any = [{"role": "user", "content": "hi"}]
    assert sdk("eu-west-1").messages.create(model=f"eu.{BASE}", max_tokens=10, messages=messages).content
    with pytest.raises(anthropic.BadRequestError, match="model identifier is invalid"):
        sdk("us-east-1").messages.create(model=f"eu.{BASE}", max_tokens=10, messages=messages)


def test_control_plane_speaks_for_the_signed_region(bedrock_emulator: Emulator) -> None:
    _, srv = bedrock_emulator
    client = aws_client(srv, "bedrock", region="eu-west-1", key=KEY, secret=SECRET)
    every = [
        p["inferenceProfileId"]
        for page in client.get_paginator("list_inference_profiles").paginate(typeEquals="SYSTEM_DEFINED")
        for p in page["inferenceProfileSummaries"]
    ]
    assert f"eu.{BASE}" in every and f"global.{BASE}" in every
    assert not any(p.startswith(("us.", "apac.")) for p in every)
    one = client.get_inference_profile(inferenceProfileIdentifier=f"eu.{BASE}")
    assert one["inferenceProfileArn"] == f"arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.{BASE}"
    global_one = client.get_inference_profile(inferenceProfileIdentifier=f"global.{BASE}")
    assert global_one["models"] == [{"modelArn": f"arn:aws:bedrock:eu-west-1::foundation-model/{BASE}"}]
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_inference_profile(inferenceProfileIdentifier=f"us.{BASE}")
