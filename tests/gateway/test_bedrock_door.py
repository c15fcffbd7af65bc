"""The Bedrock front door over loopback, with the emulator as Vertex AI behind the gateway."""

from __future__ import annotations

import base64
from urllib.parse import quote

import orjson
import pytest
import requests
from botocore.eventstream import EventStreamBuffer

from cloudgate.emulator import Fault
from tests.conftest import Stack

MSG = {"role": "user", "content": "Hello from Bedrock land"}
SONNET = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def invoke(
    stack: Stack, model: str, body: object, action: str = "invoke", **headers: str
) -> requests.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    hdrs = {"authorization": f"Bearer {stack.key}", "content-type": "application/json"}
    hdrs.update({k.replace("_", "-"): v for k, v in headers.items()})
    return requests.post(
        f"{stack.url}/bedrock/model/{quote(model, safe='')}/{action}", data=data, headers=hdrs, timeout=30
    )


def frames(resp: requests.Response) -> list:
    buffer = EventStreamBuffer()
    buffer.add_data(resp.content)
    return list(buffer)


def body(**extra: object) -> dict:
    return {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100, "messages": [MSG], **extra}


def test_invoke_reaches_vertex_and_answers_the_message(gw: Stack) -> None:
    resp = invoke(gw, SONNET, body())
    assert resp.status_code == 200, resp.text
    msg = resp.json()
    assert msg["type"] == "message" and msg["content"][0]["text"]
    assert resp.headers["x-amzn-requestid"] and int(resp.headers["x-amzn-bedrock-output-token-count"]) > 0
    (upstream,) = gw.upstream_calls
    assert upstream.path.endswith("/models/claude-sonnet-4-5@20250929:rawPredict")
    assert upstream.json["anthropic_version"] == "vertex-2023-10-16"
    assert "anthropic_beta" not in upstream.json
    (record,) = gw.records(1)
    assert (record.frontdoor, record.provider, record.status) == ("bedrock", "vertex", 200)


def test_stream_is_an_aws_event_stream_botocore_can_read(gw: Stack) -> None:
    resp = invoke(gw, SONNET, body(), action="invoke-with-response-stream")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/vnd.amazon.eventstream"
    messages = frames(resp)
    assert all(
        m.headers[":event-type"] == "chunk" and m.headers[":message-type"] == "event" for m in messages
    )
    events = [orjson.loads(base64.b64decode(orjson.loads(m.payload)["bytes"])) for m in messages]
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    metrics = events[-1]["amazon-bedrock-invocationMetrics"]
    (record,) = gw.records(1)
    assert metrics["outputTokenCount"] == record.usage.output_tokens > 0
    assert metrics["inputTokenCount"] == record.usage.input_tokens > 0
    assert gw.upstream_calls[0].path.endswith(":streamRawPredict")


def test_betas_from_header_and_body_are_merged_then_filtered(gw: Stack) -> None:
    resp = invoke(
        gw,
        SONNET,
        body(anthropic_beta=["interleaved-thinking-2025-05-14", "context-management-2025-06-27"]),
        anthropic_beta="claude-code-20250219,effort-2025-11-24",
    )
    assert resp.status_code == 200, resp.text
    assert gw.upstream_calls[0].headers["anthropic-beta"].split(",") == [
        "claude-code-20250219",
        "effort-2025-11-24",
        "interleaved-thinking-2025-05-14",
    ]


def test_count_tokens_answers_in_bedrock_shape(make_stack) -> None:
    from cloudgate.emulator import EmulatorConfig

    gw = make_stack(emulator=EmulatorConfig(count_tokens_global=True))
    wrapped = {"input": {"invokeModel": {"body": base64.b64encode(orjson.dumps(body())).decode()}}}
    resp = invoke(gw, SONNET, wrapped, action="count-tokens")
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"inputTokens"} and resp.json()["inputTokens"] > 0
    assert gw.upstream_calls[0].path.endswith("/count-tokens:rawPredict")


def test_application_inference_profile_arn_in_the_path(gw: Stack) -> None:
    arn = "arn:aws:bedrock:us-east-2:111122223333:application-inference-profile/claude-sonnet-4-6"
    resp = invoke(gw, arn, body())
    # Vertex cannot know the account's own profile: it passes through and Vertex says not found.
    assert resp.status_code == 404 and resp.headers["x-amzn-errortype"] == "ResourceNotFoundException"
    assert "message" in resp.json()


def test_inference_profiles_for_claude_code(gw: Stack) -> None:
    headers = {"authorization": f"Bearer {gw.key}"}
    listed = requests.get(
        f"{gw.url}/bedrock/inference-profiles?type=SYSTEM_DEFINED&maxResults=5", headers=headers, timeout=5
    )
    assert listed.status_code == 200
    page = listed.json()
    assert len(page["inferenceProfileSummaries"]) == 5 and page["nextToken"]
    ids = {p["inferenceProfileId"] for p in page["inferenceProfileSummaries"]}
    assert all(i.startswith(("us.", "global.")) for i in ids)
    one = requests.get(
        f"{gw.url}/bedrock/inference-profiles/{quote(SONNET, safe='')}", headers=headers, timeout=5
    )
    assert one.status_code == 200 and one.json()["inferenceProfileId"] == SONNET
    missing = requests.get(f"{gw.url}/bedrock/inference-profiles/nope", headers=headers, timeout=5)
    assert missing.status_code == 404 and missing.headers["x-amzn-errortype"] == "ResourceNotFoundException"
    assert requests.get(f"{gw.url}/bedrock/inference-profiles", timeout=5).status_code == 403


@pytest.mark.parametrize(
    ("kind", "status", "name"),
    [
        ("rate_limit", 429, "ThrottlingException"),
        ("not_found", 404, "ResourceNotFoundException"),
        ("permission_denied", 403, "AccessDeniedException"),
        ("server_error", 500, "InternalServerException"),
        ("overloaded", 503, "ServiceUnavailableException"),
    ],
)
def test_vertex_errors_keep_their_meaning_in_aws_terms(
    gw_single: Stack, kind: str, status: int, name: str
) -> None:
    gw = gw_single
    gw.emulator.state.faults.add(Fault(kind=kind, times=1))
    resp = invoke(gw, SONNET, body())
    assert resp.status_code == status
    assert resp.headers["x-amzn-errortype"] == name
    assert set(resp.json()) == {"message"} and resp.json()["message"]


def test_mid_stream_failure_becomes_an_exception_frame(gw: Stack) -> None:
    gw.emulator.state.faults.add(Fault(kind="cut_stream", after_events=3, times=1))
    resp = invoke(gw, SONNET, body(), action="invoke-with-response-stream")
    messages = frames(resp)
    assert messages[-1].headers[":message-type"] == "exception"
    assert messages[-1].headers[":exception-type"] == "modelStreamErrorException"


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"{nope", "Malformed input request"),
        ({"max_tokens": 5, "messages": [MSG]}, "required key [anthropic_version] not found"),
        (body(model="claude"), "extraneous key [model] is not permitted"),
        (body(stream=True), "extraneous key [stream] is not permitted"),
        ({"anthropic_version": "bedrock-2023-05-31", "messages": [MSG]}, "max_tokens: Field required"),
        (body(messages="hi"), "messages: Input should be a valid list"),
        (body(anthropic_beta="x"), "anthropic_beta"),
    ],
)
def test_bad_input_gets_a_validation_exception(gw: Stack, payload: object, needle: str) -> None:
    resp = invoke(gw, SONNET, payload)
    assert resp.status_code == 400
    assert resp.headers["x-amzn-errortype"] == "ValidationException"
    assert needle in resp.json()["message"]
    assert not gw.upstream_calls


def test_auth_wrong_paths_and_methods(gw: Stack) -> None:
    resp = invoke(gw, SONNET, body(), authorization="Bearer wrong")
    assert resp.status_code == 403 and resp.headers["x-amzn-errortype"] == "UnrecognizedClientException"
    get = requests.get(
        f"{gw.url}/bedrock/model/{SONNET}/invoke", headers={"authorization": f"Bearer {gw.key}"}, timeout=5
    )
    assert get.status_code == 405 and "x-amzn-errortype" in get.headers
    other = requests.post(f"{gw.url}/bedrock/guardrails", timeout=5)
    assert other.status_code == 404 and other.headers["x-amzn-errortype"] == "ResourceNotFoundException"
