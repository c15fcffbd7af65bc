"""AwsSigner: botocore's credential chain resolved once, region resolution, SigV4 and API-key signing.

Every test runs in an empty AWS environment (tmp HOME and config files, instance metadata off),
so only the credentials a test writes are found.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import stat
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from cloudgate.config.settings import BedrockSettings
from cloudgate.protocol.errors import GatewayError
from cloudgate.providers.auth.aws import AwsCredentialsError, AwsSigner

URL = (
    "https://bedrock-runtime.us-west-2.amazonaws.com/model/us.anthropic.claude-haiku-4-5-20251001-v1:0/invoke"
)
BODY = b'{"max_tokens":1,"messages":[],"anthropic_version":"bedrock-2023-05-31"}'
HEADERS = {"content-type": "application/json", "accept": "application/json", "Connection": "keep-alive"}


@pytest.fixture
def aws_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An AWS environment with nothing in it."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_BEARER_TOKEN_BEDROCK",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def verify(headers: dict[str, str], secret: str, region: str, url: str = URL, body: bytes = BODY) -> str:
    """Recompute the signature from the secret; return the access key id it was made for."""
    auth = headers["Authorization"]
    fields = dict(p.strip().split("=", 1) for p in auth.removeprefix("AWS4-HMAC-SHA256 ").split(","))
    access_key, date, scope_region, service, _ = fields["Credential"].split("/")
    assert (scope_region, service, date) == (region, "bedrock", headers["X-Amz-Date"][:8])
    lower = {k.lower(): v for k, v in headers.items()}
    signed = fields["SignedHeaders"].split(";")
    request = AWSRequest("POST", url, headers={h: lower[h] for h in signed if h in lower}, data=body)
    request.context["timestamp"] = headers["X-Amz-Date"]
    signer = SigV4Auth(Credentials(access_key, secret, lower.get("x-amz-security-token")), "bedrock", region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    assert fields["Signature"] == expected
    return access_key


def credential_process(
    home: Path, *, first_expires_in: float, then_expires_in: float = 3600
) -> tuple[str, Path]:
    """A credential_process script that logs each run and prints fresh keys (`AKID<run>`); the
    first run's keys expire after `first_expires_in` seconds, later ones after `then_expires_in`."""
    log = home / "process.log"
    now = dt.datetime.now(dt.UTC)
    first, then = (
        (now + dt.timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for s in (first_expires_in, then_expires_in)
    )
    script = home / "creds.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'echo run >> "{log}"\n'
        f'n=$(wc -l < "{log}" | tr -d " ")\n'
        f'exp="{then}"; [ "$n" = 1 ] && exp="{first}"\n'
        'printf \'{"Version": 1, "AccessKeyId": "AKID%s", "SecretAccessKey": "secret%s", '
        '"SessionToken": "token%s", "Expiration": "%s"}\' "$n" "$n" "$n" "$exp"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script), log


async def test_env_credentials_resolved_once(aws_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    signer = AwsSigner(region="us-west-2")
    await signer.start()
    assert signer.method == "env"
    assert signer.region == "us-west-2"
    headers = signer.sign("POST", URL, HEADERS, BODY)
    assert verify(headers, "env-secret", "us-west-2") == "AKIDENV"
    # Keys changed after start() are not seen: the chain is not walked per request.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDOTHER")
    assert verify(signer.sign("POST", URL, HEADERS, BODY), "env-secret", "us-west-2") == "AKIDENV"
    assert signer.resolve_count == 1
    # The SDK never signs `connection` (a proxy may drop it); the rest is signed.
    signed = headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert signed == ["accept", "content-type", "host", "x-amz-date"]


async def test_shared_credentials_file_and_profile_region(
    aws_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (aws_home / "credentials").write_text(
        "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s-default\n\n"
        "[dev]\naws_access_key_id = AKIDDEV\naws_secret_access_key = s-dev\naws_session_token = tok-dev\n"
    )
    (aws_home / "config").write_text(
        "[default]\nregion = ap-northeast-1\n\n[profile dev]\nregion = eu-central-1\n"
    )

    default = AwsSigner()
    await default.start()
    assert default.region == "ap-northeast-1"
    assert verify(default.sign("POST", URL, HEADERS, BODY), "s-default", "ap-northeast-1") == "AKIDDEFAULT"

    monkeypatch.setenv("AWS_PROFILE", "dev")
    from_env = AwsSigner()
    await from_env.start()
    assert from_env.region == "eu-central-1"
    headers = from_env.sign("POST", URL, HEADERS, BODY)
    assert headers["X-Amz-Security-Token"] == "tok-dev"
    assert verify(headers, "s-dev", "eu-central-1") == "AKIDDEV"

    monkeypatch.delenv("AWS_PROFILE")
    named = AwsSigner.from_settings(BedrockSettings(profile="dev", region="us-west-2"))
    await named.start()
    assert named.region == "us-west-2"  # the configured region beats the profile's
    assert verify(named.sign("POST", URL, HEADERS, BODY), "s-dev", "us-west-2") == "AKIDDEV"


async def test_region_defaults_to_us_east_1(aws_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    signer = AwsSigner()
    await signer.start()
    assert signer.region == "us-east-1"


async def test_sign_for_another_region(aws_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    signer = AwsSigner(region="us-east-1")
    await signer.start()
    url = URL.replace("us-west-2", "eu-west-1")
    assert (
        verify(signer.sign("POST", url, HEADERS, BODY, region="eu-west-1"), "s", "eu-west-1", url) == "AKID"
    )


async def test_credential_process_runs_once_for_long_lived_keys(aws_home: Path) -> None:
    script, log = credential_process(aws_home, first_expires_in=3600)
    (aws_home / "config").write_text(f"[profile proc]\ncredential_process = {script}\nregion = us-west-2\n")
    signer = AwsSigner(profile="proc")
    await signer.start()
    for _ in range(20):
        await signer.refresh_if_needed()
        headers = signer.sign("POST", URL, HEADERS, BODY)
    assert verify(headers, "secret1", "us-west-2") == "AKID1"
    assert log.read_text().count("run") == 1
    assert signer.resolve_count == 1


async def test_expiring_keys_are_refreshed_off_the_loop(aws_home: Path) -> None:
    # The first keys start inside botocore's advisory window (15 min): a refresh is due.
    script, log = credential_process(aws_home, first_expires_in=12 * 60)
    (aws_home / "config").write_text(f"[profile proc]\ncredential_process = {script}\n")
    signer = AwsSigner(profile="proc", region="us-west-2")
    await signer.start()
    assert log.read_text().count("run") == 1
    # Concurrent requests share one refresh.
    await asyncio.gather(*(signer.refresh_if_needed() for _ in range(5)))
    assert log.read_text().count("run") == 2
    # The refreshed keys last an hour: signing reads them without running the process again.
    for _ in range(5):
        await signer.refresh_if_needed()
        assert verify(signer.sign("POST", URL, HEADERS, BODY), "secret2", "us-west-2") == "AKID2"
    assert log.read_text().count("run") == 2
    assert signer.resolve_count == 1
    await signer.close()


async def test_no_credentials_is_a_clear_error(aws_home: Path) -> None:
    signer = AwsSigner()
    with pytest.raises(AwsCredentialsError) as info:
        await signer.start()
    assert isinstance(info.value, GatewayError)
    assert info.value.status == 500
    assert "no AWS credentials found" in info.value.message
    assert "AWS_ACCESS_KEY_ID" in info.value.message and "bedrock.api_key" in info.value.message
    with pytest.raises(AwsCredentialsError, match="not started"):
        signer.sign("POST", URL, HEADERS, BODY)


async def test_unknown_profile_is_a_clear_error(aws_home: Path) -> None:
    with pytest.raises(AwsCredentialsError, match="profile not found"):
        await AwsSigner(profile="nope").start()


async def test_failing_credential_process_is_a_clear_error(aws_home: Path) -> None:
    (aws_home / "config").write_text("[profile bad]\ncredential_process = /bin/false\n")
    with pytest.raises(AwsCredentialsError, match="could not be loaded"):
        await AwsSigner(profile="bad", region="us-east-1").start()


async def test_api_key_mode_needs_no_credentials(aws_home: Path) -> None:
    signer = AwsSigner.from_settings(BedrockSettings(api_key="br-key", region="eu-west-3"))
    await signer.start()
    assert signer.uses_api_key and signer.method == "bedrock-api-key"
    await signer.refresh_if_needed()
    headers = signer.sign("POST", URL, HEADERS, BODY)
    assert headers == {**HEADERS, "Authorization": "Bearer br-key"}
    assert signer.resolve_count == 0


async def test_api_key_mode_takes_the_profile_region(aws_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (aws_home / "config").write_text("[default]\nregion = ca-central-1\n")
    signer = AwsSigner(api_key="br-key")
    await signer.start()
    assert signer.region == "ca-central-1"
    assert signer.resolve_count == 0
