import orjson
import pytest

from cloudgate.protocol.errors import (
    GatewayError,
    anthropic_type_for_status,
    google_status_for,
    parse_error_body,
)

QUOTA = (
    b'{"error":{"code":429,"message":"Quota exceeded for aiplatform.googleapis.com/'
    b'online_prediction_requests_per_base_model","status":"RESOURCE_EXHAUSTED"}}'
)


@pytest.mark.parametrize(
    ("status", "etype", "gstatus"),
    [
        (400, "invalid_request_error", "INVALID_ARGUMENT"),
        (401, "authentication_error", "UNAUTHENTICATED"),
        (403, "permission_error", "PERMISSION_DENIED"),
        (404, "not_found_error", "NOT_FOUND"),
        (413, "request_too_large", "INVALID_ARGUMENT"),
        (429, "rate_limit_error", "RESOURCE_EXHAUSTED"),
        (500, "api_error", "INTERNAL"),
        (503, "overloaded_error", "UNAVAILABLE"),
        (504, "timeout_error", "DEADLINE_EXCEEDED"),
        (529, "overloaded_error", "UNAVAILABLE"),
        (418, "invalid_request_error", "FAILED_PRECONDITION"),
        (599, "api_error", "UNKNOWN"),
    ],
)
def test_status_tables(status, etype, gstatus):
    assert anthropic_type_for_status(status) == etype
    assert google_status_for(status) == gstatus


def test_parse_google_envelope_plain_and_array_wrapped():
    plain = parse_error_body(429, QUOTA)
    wrapped = parse_error_body(429, b"[" + QUOTA + b"]")
    for parsed in (plain, wrapped):
        assert parsed.shape == "google"
        assert parsed.error_type == "rate_limit_error"
        assert parsed.google_status == "RESOURCE_EXHAUSTED"
        assert parsed.message.startswith("Quota exceeded")


def test_parse_anthropic_shape_keeps_its_type():
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    parsed = parse_error_body(529, body)
    assert (parsed.shape, parsed.error_type, parsed.message) == (
        "anthropic",
        "overloaded_error",
        "Overloaded",
    )


def test_parse_unknown_bodies_keep_their_text():
    assert parse_error_body(502, b"<html>bad gateway</html>").message == "<html>bad gateway</html>"
    assert parse_error_body(500, b"").message == "upstream returned HTTP 500"
    aws = parse_error_body(429, b'{"message":"Too many requests"}')
    assert (aws.shape, aws.message, aws.error_type) == ("unknown", "Too many requests", "rate_limit_error")


def test_gateway_error_renders_both_shapes():
    err = GatewayError(404, "no such model")
    assert orjson.loads(err.anthropic_body()) == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "no such model"},
    }
    assert orjson.loads(err.google_body()) == {
        "error": {"code": 404, "message": "no such model", "status": "NOT_FOUND"}
    }


def test_parse_aws_errors_by_exception_name():
    parsed = parse_error_body(
        400,
        b'{"message":"Too many tokens"}',
        "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
    )
    assert (parsed.shape, parsed.error_type, parsed.message) == ("aws", "rate_limit_error", "Too many tokens")
    odd = parse_error_body(424, b'{"Message":"model failed"}', "ModelErrorException")
    assert (odd.error_type, odd.message) == ("api_error", "model failed")
    bare = parse_error_body(403, b"", "AccessDeniedException")
    assert (bare.error_type, bare.message) == ("permission_error", "AccessDeniedException")


@pytest.mark.parametrize(
    ("status", "aws"),
    [
        (400, (400, "ValidationException")),
        (401, (403, "UnrecognizedClientException")),
        (403, (403, "AccessDeniedException")),
        (404, (404, "ResourceNotFoundException")),
        (429, (429, "ThrottlingException")),
        (500, (500, "InternalServerException")),
        (504, (408, "ModelTimeoutException")),
        (529, (503, "ServiceUnavailableException")),
    ],
)
def test_gateway_errors_in_aws_terms(status, aws):
    assert GatewayError(status, "x").aws_error() == aws
