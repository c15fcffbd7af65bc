"""SigV4 verification against requests signed by real botocore and boto3."""

from __future__ import annotations

import contextlib
import hashlib
import time
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.awsrequest
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from cloudgate.protocol.sigv4 import (
    INVALID_SIGNATURE_MESSAGE,
    UNRECOGNIZED_CLIENT_MESSAGE,
    SigV4Error,
    verify_sigv4,
)

KEY = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
BODY = b'{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[]}'


def _sign(
    url: str, *, body: bytes = BODY, token: str | None = None, extra: dict[str, str] | None = None
) -> Any:
    headers = {"content-type": "application/json", **(extra or {})}
    request = AWSRequest(method="POST", url=url, headers=headers, data=body)
    SigV4Auth(Credentials(KEY, SECRET, token), "bedrock", REGION).add_auth(request)
    return request.prepare()


def _parts(prepared: Any) -> tuple[str, str, dict[str, str]]:
    split = urllib.parse.urlsplit(prepared.url)
    headers = {k.lower(): v for k, v in prepared.headers.items()}
    headers.setdefault("host", split.netloc)
    return split.path, split.query, headers


def _verify(prepared: Any, body: bytes = BODY, **kw: Any) -> Any:
    path, query, headers = _parts(prepared)
    kw.setdefault("secret_for", {KEY: SECRET}.get)
    return verify_sigv4(prepared.method, path, query, headers, body, **kw)


def test_botocore_signed_request_verifies() -> None:
    prepared = _sign("http://127.0.0.1:9/model/anthropic.claude-3-haiku-20240307-v1:0/invoke")
    identity = _verify(prepared)
    assert (identity.access_key_id, identity.region, identity.service) == (KEY, REGION, "bedrock")


@pytest.mark.parametrize(
    "raw_path",
    [
        # botocore sends ':' as %3A and signs it encoded again (%253A)
        "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke",
        # the anthropic SDK sends ':' bare
        "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke-with-response-stream",
        # ARNs arrive with '/' as %2F
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.x/invoke",
    ],
)
def test_encoded_paths_verify(raw_path: str) -> None:
    prepared = _sign(f"http://127.0.0.1:9{raw_path}")
    assert urllib.parse.urlsplit(prepared.url).path == raw_path
    _verify(prepared)
    # The decoded path is NOT what was signed: verifying it must fail.
    path, query, headers = _parts(prepared)
    if urllib.parse.unquote(path) != path:
        with pytest.raises(SigV4Error):
            verify_sigv4("POST", urllib.parse.unquote(path), query, headers, BODY, secret_for=[SECRET])


def test_query_string_and_get() -> None:
    request = AWSRequest(method="GET", url="http://h:1/inference-profiles?type=SYSTEM_DEFINED&maxResults=5")
    SigV4Auth(Credentials(KEY, SECRET), "bedrock", REGION).add_auth(request)
    prepared = request.prepare()
    path, query, headers = _parts(prepared)
    verify_sigv4("GET", path, query, headers, b"", secret_for=[SECRET])
    with pytest.raises(SigV4Error):
        verify_sigv4("GET", path, "type=APPLICATION&maxResults=5", headers, b"", secret_for=[SECRET])


def test_session_token_and_content_sha256() -> None:
    prepared = _sign(
        "http://h:1/model/m/invoke", token="session-token", extra={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
    )
    identity = _verify(prepared)
    assert identity.session_token == "session-token"
    path, query, headers = _parts(prepared)
    headers["x-amz-security-token"] = "another-token"
    with pytest.raises(SigV4Error) as err:
        verify_sigv4("POST", path, query, headers, BODY, secret_for=[SECRET])
    assert err.value.code == "InvalidSignatureException"


def test_declared_payload_hash_must_match() -> None:
    prepared = _sign(
        "http://h:1/model/m/invoke", extra={"x-amz-content-sha256": hashlib.sha256(BODY).hexdigest()}
    )
    _verify(prepared)
    with pytest.raises(SigV4Error) as err:
        _verify(prepared, body=BODY + b" ")
    assert err.value.code == "InvalidSignatureException"


def test_candidate_secrets_mode() -> None:
    prepared = _sign("http://h:1/model/m/invoke")
    identity = _verify(prepared, secret_for=["nope", SECRET, "other"])
    assert identity.access_key_id == KEY
    with pytest.raises(SigV4Error) as err:
        _verify(prepared, secret_for=["nope", "other"])
    assert (err.value.code, err.value.message) == ("InvalidSignatureException", INVALID_SIGNATURE_MESSAGE)
    assert err.value.status == 403


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        (lambda h, b: (h, b + b"x"), "InvalidSignatureException"),
        (lambda h, b: ({**h, "content-type": "text/plain"}, b), "InvalidSignatureException"),
        (lambda h, b: ({**h, "x-amz-date": h["x-amz-date"][:-3] + "59Z"}, b), "InvalidSignatureException"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "authorization"}, b), "MissingAuthenticationTokenException"),
        (lambda h, b: ({**h, "authorization": "AWS4-HMAC-SHA256 Signature=abc"}, b), "IncompleteSignatureException"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "x-amz-date"}, b), "IncompleteSignatureException"),
        (lambda h, b: ({**h, "authorization": h["authorization"].replace(KEY, "AKIDUNKNOWN")}, b), "UnrecognizedClientException"),
    ],
)  # fmt: skip
def test_tampering_is_rejected(tamper: Any, code: str) -> None:
    prepared = _sign("http://h:1/model/m/invoke")
    path, query, headers = _parts(prepared)
    headers, body = tamper(headers, BODY)
    with pytest.raises(SigV4Error) as err:
        verify_sigv4("POST", path, query, headers, body, secret_for={KEY: SECRET}.get)
    assert err.value.code == code
    if code == "UnrecognizedClientException":
        assert err.value.message == UNRECOGNIZED_CLIENT_MESSAGE


def test_wrong_secret_and_service_and_region() -> None:
    prepared = _sign("http://h:1/model/m/invoke")
    with pytest.raises(SigV4Error, match="does not match"):
        _verify(prepared, secret_for={KEY: "wrong"}.get)
    with pytest.raises(SigV4Error, match="correct service"):
        _verify(prepared, service="s3")
    with pytest.raises(SigV4Error, match="valid region"):
        _verify(prepared, region="eu-west-1")
    _verify(prepared, region=REGION)


def test_clock_skew() -> None:
    prepared = _sign("http://h:1/model/m/invoke")
    _verify(prepared, now=time.time() + 200)
    with pytest.raises(SigV4Error, match="Signature expired") as err:
        _verify(prepared, now=time.time() + 400)
    assert err.value.code == "InvalidSignatureException"
    with pytest.raises(SigV4Error, match="not yet current"):
        _verify(prepared, now=datetime.now(UTC).timestamp() - 400)


def test_boto3_bedrock_runtime_requests_verify() -> None:
    """What boto3's bedrock-runtime client really puts on the wire verifies (captured before send)."""
    captured: list[Any] = []

    def capture(request: Any, **_: Any) -> Any:
        captured.append(request)
        return botocore.awsrequest.AWSResponse(request.url, 200, {}, None)

    client = boto3.client(
        "bedrock-runtime",
        endpoint_url="http://127.0.0.1:9",
        region_name=REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        aws_session_token="tok",
    )
    client.meta.events.register("before-send", capture)
    for model in (
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123",
    ):
        # The fake 200 has no body, so parsing may fail; only the request matters.
        with contextlib.suppress(Exception):
            client.invoke_model(modelId=model, body=BODY)
    assert len(captured) == 2
    assert "%3A" in captured[0].url and "%2F" in captured[1].url
    for request in captured:
        split = urllib.parse.urlsplit(request.url)
        headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
        headers.setdefault("host", split.netloc)
        identity = verify_sigv4(
            "POST",
            split.path,
            split.query,
            headers,
            request.body,
            secret_for={KEY: SECRET}.get,
            region=REGION,
        )
        assert identity.session_token == "tok"
