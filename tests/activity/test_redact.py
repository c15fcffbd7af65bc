"""Redaction: real-looking secrets of every kind become [REDACTED], ordinary text stays as it was."""

from __future__ import annotations

import orjson
import pytest

from cloudgate.activity.redact import REDACTED, Redactor, literal_secrets, presented_secrets
from cloudgate.store.keys import generate_key

# Shapes as the services issue them (made up, never real).
ANTHROPIC_KEY = "sk-ant-api03-" + "Xy7_Qm2-Lp9" * 8 + "AA"
OAUTH_TOKEN = "sk-ant-oat01-" + "Zq4Rt8Wn2Ks6" * 5
GOOGLE_ACCESS = "ya29.a0AfB_byD8kLmN3pQrS5tUvW7xYz9AbCdEfGhIjKlMnOpQrStUvWxYz0123-_4567"
GOOGLE_REFRESH = "1//0gK8sLmN3pQrS5tUCgYIARAAGBASNwF-L9IrAbCdEfGhIjKlMnOpQrStUvWx"
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_TEMP_KEY_ID = "ASIAY34FZKBOKMUTVV7A"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6IjE2In0"
    ".eyJpc3MiOiJodHRwczovL2FjY291bnRzLmdvb2dsZS5jb20iLCJzdWIiOiIxMTAifQ"
    ".MEUCIQDn2x7Qb1r9a_Kq8Z4T-5sV0wYp3LhJcNfGdR6mUe"
)
PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
    "-----END PRIVATE KEY-----"
)
GITHUB_PAT = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2
GITHUB_FINE = "github_pat_11ABCDEFG0" + "aBcDeFgHiJ" * 6
SLACK = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
GATEWAY_KEY = generate_key().plaintext

SECRETS = [
    ANTHROPIC_KEY,
    OAUTH_TOKEN,
    GOOGLE_ACCESS,
    GOOGLE_REFRESH,
    AWS_KEY_ID,
    AWS_TEMP_KEY_ID,
    JWT,
    GITHUB_PAT,
    GITHUB_FINE,
    SLACK,
    GATEWAY_KEY,
]


@pytest.mark.parametrize("secret", SECRETS)
def test_each_shape_is_redacted_in_text_and_in_json(secret: str) -> None:
    redactor = Redactor()
    said = f"here it is: {secret} -- use it well"
    assert redactor.text(said) == f"here it is: {REDACTED} -- use it well"
    body = orjson.dumps({"messages": [{"role": "user", "content": said}]}).decode()
    redacted = redactor.text(body)
    assert secret not in redacted
    assert orjson.loads(redacted)["messages"][0]["content"] == f"here it is: {REDACTED} -- use it well"


def test_pem_private_keys_whole_or_cut() -> None:
    redactor = Redactor()
    body = orjson.dumps({"content": f"my key:\n{PEM}\nthanks"}).decode()
    redacted = redactor.text(body)
    assert "MIIEvQ" not in redacted and "MzEfYy" not in redacted
    assert orjson.loads(redacted)["content"] == f"my key:\n{REDACTED}\nthanks"
    # A body cut in the middle of the key: everything after BEGIN up to the string's end goes.
    cut = orjson.dumps({"content": PEM[:90]}).decode()[:-2]
    assert "MIIEvQ" not in redactor.text(cut)


def test_aws_secret_keys_next_to_their_names() -> None:
    redactor = Redactor()
    for text in (
        f"aws_secret_access_key = {AWS_SECRET}",
        f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
        f'"SecretAccessKey": "{AWS_SECRET}"',
        orjson.dumps({"content": f'aws_secret_access_key: "{AWS_SECRET}"'}).decode(),
    ):
        redacted = redactor.text(text)
        assert AWS_SECRET not in redacted and REDACTED in redacted, text
    # Forty base64 characters alone are not a key: plenty of hashes look like that.
    assert redactor.text(f"sha: {AWS_SECRET}") == f"sha: {AWS_SECRET}"


def test_credentials_after_header_names_and_bearer_tokens() -> None:
    redactor = Redactor()
    assert redactor.text('curl -H "x-api-key: opaque-key-value" https://x') == (
        f'curl -H "x-api-key: {REDACTED}" https://x'
    )
    assert (
        redactor.text("Authorization: Bearer some.opaque.token-value") == f"Authorization: Bearer {REDACTED}"
    )
    assert redactor.text("proxy-authorization=Basic dXNlcjpwYXNz") == f"proxy-authorization=Basic {REDACTED}"
    assert redactor.text("Cookie: session=abc123; theme=dark\nnext") == f"Cookie: {REDACTED}\nnext"
    assert redactor.text("send bearer AbCdEfGhIjKlMnOpQrSt") == f"send bearer {REDACTED}"


def test_ordinary_text_is_left_alone() -> None:
    redactor = Redactor()
    text = (
        "Write a function about authorization policies; the cg- prefix and sk-ant are documented. "
        'Ask AKIA about it. eyJ is base64 for {". ya29 and 1//2 are not tokens.'
    )
    assert redactor.text(text) == text


def test_configured_patterns_and_literal_secrets() -> None:
    redactor = Redactor(
        patterns=[r"ACME-\d{6}", r"(?i)internal-[a-z]+"], secrets=["s3cr3t-v@lue!", "short", None]
    )
    assert redactor.text("order ACME-123456 from INTERNAL-payroll") == f"order {REDACTED} from {REDACTED}"
    assert redactor.text("the value s3cr3t-v@lue! appears") == f"the value {REDACTED} appears"
    assert redactor.text("short words stay") == "short words stay"  # too short to replace verbatim
    assert redactor.text("per request: my-odd-key-1", ["my-odd-key-1"]) == f"per request: {REDACTED}"


def test_headers_keep_a_useful_subset_and_never_a_credential() -> None:
    redactor = Redactor()
    headers = {
        "authorization": f"Bearer {GATEWAY_KEY}",
        "x-api-key": "cg-config-key",
        "x-goog-api-key": "AIzaSyExample",
        "x-amz-security-token": "FwoGZXIvYXdzEXAMPLE",
        "cookie": "a=b",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "prompt-caching-2024-07-31",
        "user-agent": f"claude-cli/2.0.1 token={GOOGLE_ACCESS}",
        "x-claude-code-session-id": "sess-1",
        "x-stainless-lang": "js",
        "content-type": "application/json",
        "host": "gateway.internal",
        "x-custom-thing": "dropped",
    }
    kept = redactor.headers(headers)
    assert kept == {
        "authorization": REDACTED,
        "x-api-key": REDACTED,
        "x-goog-api-key": REDACTED,
        "x-amz-security-token": REDACTED,
        "cookie": REDACTED,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "prompt-caching-2024-07-31",
        "user-agent": f"claude-cli/2.0.1 token={REDACTED}",
        "x-claude-code-session-id": "sess-1",
        "x-stainless-lang": "js",
        "content-type": "application/json",
    }
    extra = redactor.headers({"x-gateway-key": "whatever"}, credential_headers=frozenset({"x-gateway-key"}))
    assert extra == {"x-gateway-key": REDACTED}


def test_presented_secrets_with_and_without_their_scheme() -> None:
    found = presented_secrets(
        {"authorization": "Bearer cg-config-key-123", "x-api-key": "k", "user-agent": "ua-not-a-secret"},
        frozenset({"authorization", "x-api-key"}),
    )
    assert found == ("Bearer cg-config-key-123", "cg-config-key-123")
    assert literal_secrets(["abcdefgh", "abcdefghij", "abcdefgh", "  "]) == ("abcdefghij", "abcdefgh")


def test_remembered_header_values_still_lose_the_requests_own_secrets() -> None:
    redactor = Redactor(secrets=["configured-secret-value"])
    agent = "claude-cli/2.1.328 (external, cli) token-holder-0123456789"
    assert redactor.short_text(agent) == agent  # remembered as it is
    # The same value, now presented by a request whose credential it contains.
    assert (
        redactor.short_text(agent, ("token-holder-0123456789",))
        == f"claude-cli/2.1.328 (external, cli) {REDACTED}"
    )
    assert redactor.short_text("x configured-secret-value") == f"x {REDACTED}"
    long = "a" * 600 + " Bearer abcdefghijklmnopqrstuvwxyz"
    assert redactor.short_text(long) == redactor.text(long) != long


def test_kept_headers_lose_the_requests_own_secrets_wherever_they_are_echoed() -> None:
    redactor = Redactor()
    key = "odd-key-without-a-known-shape-42"
    headers = {
        "user-agent": "claude-cli/2.1.328 (external, cli)",
        "x-api-key": key,
        "x-claude-code-session-id": f"session-of-{key}",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    secrets = presented_secrets(headers, frozenset({"x-api-key"}))
    first = redactor.headers(headers, secrets)
    assert first == {
        "user-agent": "claude-cli/2.1.328 (external, cli)",
        "x-api-key": REDACTED,
        "x-claude-code-session-id": f"session-of-{REDACTED}",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    assert list(first) == list(headers)  # in the order they came
    # Values remembered from a request without the secret are not trusted for one with it.
    plain = {"x-claude-code-session-id": f"session-of-{key}"}
    assert redactor.headers(plain) == plain
    assert redactor.headers(headers, secrets) == first
