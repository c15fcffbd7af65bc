"""Bedrock-format callers that sign with SigV4, the secret access key being a gateway key."""

from __future__ import annotations

import anthropic
import boto3
import botocore.exceptions
import orjson
import pytest
import requests
from botocore.config import Config

from cloudgate.gateway.auth import key_id
from cloudgate.protocol.sigv4 import sign_request
from tests.conftest import Stack

SONNET = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
BODY = orjson.dumps(
    {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
    }
)


def runtime(stack: Stack, access_key: str, secret: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=stack.url,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.mark.parametrize("access_key", ["AKIAANYTHING", None])
def test_boto3_invoke_and_stream(gw: Stack, access_key: str | None) -> None:
    client = runtime(gw, access_key or key_id(gw.key), gw.key)
    answer = client.invoke_model(modelId=SONNET, body=BODY)
    assert orjson.loads(answer["body"].read())["type"] == "message"
    streamed = client.invoke_model_with_response_stream(modelId=SONNET, body=BODY)
    events = [orjson.loads(e["chunk"]["bytes"]) for e in streamed["body"]]
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    records = gw.records(2)
    assert {r.caller for r in records} == {key_id(gw.key)}
    assert {r.status for r in records} == {200}


def test_wrong_secret_is_an_invalid_signature(gw: Stack) -> None:
    client = runtime(gw, "AKIAANYTHING", "not-a-gateway-key")
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.invoke_model(modelId=SONNET, body=BODY)
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert not gw.upstream_calls


def test_tampered_body_is_refused(gw: Stack) -> None:
    url = f"{gw.url}/model/{SONNET}/invoke"
    headers = sign_request(
        "POST",
        url,
        {"content-type": "application/json"},
        BODY,
        key="AKIAX",
        secret=gw.key,
        region="us-east-1",
    )
    ok = requests.post(url, data=BODY, headers=headers, timeout=10)
    assert ok.status_code == 200, ok.text
    tampered = requests.post(url, data=BODY.replace(b"hi", b"yo"), headers=headers, timeout=10)
    assert tampered.status_code == 403 and tampered.headers["x-amzn-errortype"] == "InvalidSignatureException"


def test_anthropic_bedrock_sdk_with_aws_keys(gw: Stack) -> None:
    client = anthropic.AnthropicBedrock(
        aws_access_key="AKIAEXAMPLE",
        aws_secret_key=gw.key,
        aws_region="us-east-1",
        base_url=f"{gw.url}/bedrock",
        max_retries=0,
    )
    message = client.messages.create(
        model=SONNET, max_tokens=50, messages=[{"role": "user", "content": "Hello"}]
    )
    assert message.content[0].text
    with client.messages.stream(
        model=SONNET, max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens > 0
    assert {r.caller for r in gw.records(2)} == {key_id(gw.key)}
