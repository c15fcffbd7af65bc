"""Reading the clouds' error answers without a network: the texts are the services' own."""

from __future__ import annotations

import requests

from cloudgate.catalog import default_catalog
from cloudgate.doctor.explain import (
    Target,
    explain_bedrock,
    explain_connection,
    explain_vertex,
    parse_answer,
    quota_name,
)
from cloudgate.doctor.model import Verdict

CATALOG = default_catalog()


def vertex_target(model: str = "claude-sonnet-4-6", region: str = "us-east5") -> Target:
    return Target("vertex", "main", model, CATALOG.vertex_id(model), region, "p")


def test_parse_answer_reads_each_shape() -> None:
    google = parse_answer(
        429, b'[{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}]'
    )
    assert (google.error_type, google.message) == ("RESOURCE_EXHAUSTED", "Quota exceeded")
    aws = parse_answer(403, b'{"message":"denied"}', {"X-Amzn-ErrorType": "AccessDeniedException:http://x/"})
    assert (aws.error_type, aws.message) == ("AccessDeniedException", "denied")
    anthropic = parse_answer(401, b'{"type":"error","error":{"type":"authentication_error","message":"bad"}}')
    assert anthropic.error_type == "authentication_error"
    assert parse_answer(502, b"<html>Bad gateway</html>").message == "<html>Bad gateway</html>"


def test_quota_name_from_the_vertex_message() -> None:
    message = (
        "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model with "
        "base model: anthropic-claude-sonnet-4-6. Please submit a quota increase request."
    )
    assert quota_name(message) == "online_prediction_requests_per_base_model"
    assert quota_name("Quota exceeded for quota metric 'tokens_per_minute' and limit") == "tokens_per_minute"
    assert quota_name("Too many requests") is None


def test_vertex_404_for_an_unknown_model_id_points_at_spelling() -> None:
    answer = parse_answer(
        404, b'{"error":{"code":404,"message":"Publisher Model x was not found","status":"NOT_FOUND"}}'
    )
    finding = explain_vertex(answer, vertex_target("claude-sonet-4-6"), CATALOG)
    assert finding.cause == "not-enabled" and "check the spelling" in finding.message


def test_vertex_403_billing_and_401() -> None:
    billing = parse_answer(
        403,
        b'{"error":{"code":403,"message":"This API method requires billing to be enabled.",'
        b'"status":"PERMISSION_DENIED","details":[{"reason":"BILLING_DISABLED"}]}}',
    )
    assert explain_vertex(billing, vertex_target(), CATALOG).cause == "billing-disabled"
    unauth = parse_answer(
        401, b'{"error":{"code":401,"message":"Request had invalid authentication credentials."}}'
    )
    finding = explain_vertex(unauth, vertex_target(), CATALOG)
    assert finding.cause == "credentials-rejected" and "application-default login" in finding.fix


def test_vertex_overload_is_a_warning() -> None:
    answer = parse_answer(529, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')
    assert explain_vertex(answer, vertex_target(), CATALOG).verdict is Verdict.WARN


def test_bedrock_iam_denial_differs_from_model_access() -> None:
    answer = parse_answer(
        403,
        b'{"message":"User: arn:aws:iam::1:user/x is not authorized to perform: bedrock:InvokeModel"}',
        {"x-amzn-errortype": "AccessDeniedException"},
    )
    target = Target("bedrock", "main", "claude-sonnet-4-6", "us.anthropic.claude-sonnet-4-6", "us-east-1")
    assert explain_bedrock(answer, target, CATALOG).cause == "permission-denied"


def test_dns_failure_on_a_made_up_vertex_region() -> None:
    exc = requests.ConnectionError(
        "HTTPSConnectionPool(host='us-east-5-aiplatform.googleapis.com', port=443): Max retries exceeded "
        "(Caused by NameResolutionError(\"Failed to resolve 'us-east-5-aiplatform.googleapis.com'\"))"
    )
    finding = explain_connection(
        exc, "https://us-east-5-aiplatform.googleapis.com/v1", platform="vertex", region="us-east-5"
    )
    assert finding.cause == "wrong-region" and "Did you mean `us-east5`?" in finding.message
    assert "CLOUD_ML_REGION" in finding.fix


def test_dns_failure_on_a_real_region_is_a_network_problem() -> None:
    exc = requests.ConnectionError(
        "NameResolutionError: Failed to resolve 'us-east5-aiplatform.googleapis.com'"
    )
    finding = explain_connection(
        exc, "https://us-east5-aiplatform.googleapis.com/v1", platform="vertex", region="us-east5"
    )
    assert finding.cause == "dns" and "HTTPS_PROXY" in finding.fix


def test_tls_and_timeout() -> None:
    url = "https://gateway.internal/v1"
    tls = explain_connection(
        requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED"), url, platform="vertex", region=None
    )
    assert tls.cause == "tls" and "NODE_EXTRA_CA_CERTS" in tls.fix
    slow = explain_connection(
        requests.exceptions.ConnectTimeout("timed out"), url, platform="vertex", region=None
    )
    assert slow.cause == "timeout"
