"""The SDK client built from Claude Code's configuration, against the emulator directly (as if
against the clouds) and against the gateway, for each platform: a plain and a streamed request."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import anthropic
import pytest

from cloudgate.client import (
    ClientConfigError,
    api_key_from_helper,
    async_client_from_claude_code,
    client_from_claude_code,
    main_model,
    model_choice,
)
from cloudgate.clientconfig import resolve
from cloudgate.emulator import EmulatorConfig
from tests.conftest import ANTHROPIC_API_KEY, Stack

MSG = [{"role": "user", "content": "Hello from Claude Code's settings"}]
AWS_KEY_ID, AWS_SECRET = "AKIDEMULATED", "emulated-secret-access-key"


@pytest.fixture
def stack(make_stack) -> Stack:
    return make_stack(emulator=EmulatorConfig(aws_credentials={AWS_KEY_ID: AWS_SECRET}))


def _direct_env(stack: Stack, platform: str, tmp_path: Path) -> dict[str, str]:
    """Claude Code pointed at the clouds (played by the emulator) with the clouds' own credentials."""
    emu = stack.emulator_server.url
    if platform == "vertex":
        return {
            "CLAUDE_CODE_USE_VERTEX": "1",
            "ANTHROPIC_VERTEX_BASE_URL": f"{emu}/v1",
            "ANTHROPIC_VERTEX_PROJECT_ID": "my-project",
            "CLOUD_ML_REGION": "global",
            "ANTHROPIC_MODEL": "claude-opus-4-1",
            "VERTEX_REGION_CLAUDE_4_1_OPUS": "europe-west1",
            # A service-account key the emulator's token endpoint trusts: the real JWT flow.
            "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / f"sa-{stack.emulator_server.port}.json"),
        }
    if platform == "bedrock":
        return {
            "CLAUDE_CODE_USE_BEDROCK": "1",
            "ANTHROPIC_BEDROCK_BASE_URL": emu,
            "AWS_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        }
    return {"ANTHROPIC_BASE_URL": emu, "ANTHROPIC_API_KEY": ANTHROPIC_API_KEY}


def gateway_env(stack: Stack, platform: str) -> dict[str, str]:
    """Claude Code's gateway set-ups from the user guide: the gateway holds the credentials."""
    if platform == "vertex":
        return {
            "CLAUDE_CODE_USE_VERTEX": "1",
            "ANTHROPIC_VERTEX_BASE_URL": f"{stack.url}/vertex_ai/v1",
            "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",
            "ANTHROPIC_VERTEX_PROJECT_ID": "anything",
            "CLOUD_ML_REGION": "global",
            "ANTHROPIC_AUTH_TOKEN": stack.key,
        }
    if platform == "bedrock":
        return {
            "CLAUDE_CODE_USE_BEDROCK": "1",
            "ANTHROPIC_BEDROCK_BASE_URL": f"{stack.url}/bedrock",
            "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1",
            "AWS_REGION": "us-east-1",
            "ANTHROPIC_CUSTOM_HEADERS": f"X-Cloudgate-Key: {stack.key}",
        }
    return {"ANTHROPIC_BASE_URL": stack.url, "ANTHROPIC_AUTH_TOKEN": stack.key}


def _exchange(client, model: str) -> None:
    message = client.messages.create(model=model, max_tokens=60, messages=MSG)
    assert message.content[0].text and message.usage.output_tokens > 0
    with client.messages.stream(model=model, max_tokens=60, messages=MSG) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and text == final.content[0].text


def _isolated(tmp_path: Path) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"cwd": tmp_path, "home": home, "managed_file": tmp_path / "no-managed.json"}


@pytest.mark.parametrize("platform", ["anthropic", "vertex", "bedrock"])
def test_direct_to_the_cloud(stack: Stack, tmp_path: Path, platform: str) -> None:
    resolved = resolve(_direct_env(stack, platform, tmp_path), **_isolated(tmp_path))
    assert resolved.auth == {"anthropic": "api-key", "vertex": "adc-file", "bedrock": "sigv4-env"}[platform]
    client = client_from_claude_code(resolved=resolved, max_retries=0)
    _exchange(client, main_model(resolved))
    calls = stack.upstream_calls
    assert len(calls) == 2
    if platform == "vertex":
        # The key file's project outranks ANTHROPIC_VERTEX_PROJECT_ID, as in Claude Code, and
        # VERTEX_REGION_CLAUDE_4_1_OPUS sends the main model to its own region.
        key_file = Path(resolved.env["GOOGLE_APPLICATION_CREDENTIALS"])
        key_project = json.loads(key_file.read_text())["project_id"]
        assert resolved.project == key_project != "my-project"
        assert calls[0].path == (
            f"/v1/projects/{key_project}/locations/europe-west1/publishers/anthropic/models/"
            "claude-opus-4-1@20250805:rawPredict"
        )
        assert calls[1].path.endswith(":streamRawPredict")
        assert calls[0].headers["authorization"].startswith("Bearer ")
    elif platform == "bedrock":
        assert calls[0].path == "/model/eu.anthropic.claude-sonnet-4-6/invoke"
        assert calls[0].headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/")
        assert "/eu-west-1/bedrock/" in calls[0].headers["authorization"]
    else:
        assert calls[0].path == "/v1/messages" and calls[0].headers["x-api-key"] == ANTHROPIC_API_KEY
    assert not stack.sink.records  # the gateway was not involved


@pytest.mark.parametrize("platform", ["anthropic", "vertex", "bedrock"])
def test_through_the_gateway(make_stack, tmp_path: Path, platform: str) -> None:
    stack = make_stack(settings={"gateway": {"auth_header": "X-Cloudgate-Key"}})
    resolved = resolve(gateway_env(stack, platform), **_isolated(tmp_path))
    client = client_from_claude_code(resolved=resolved, max_retries=0)
    _exchange(client, main_model(resolved))
    records = stack.records(2)
    assert {(r.frontdoor, r.status) for r in records} == {(platform, 200)}
    assert [r.stream for r in records] == [False, True]


def test_skip_auth_sends_no_cloud_credentials(make_stack, tmp_path: Path) -> None:
    # An upstream that accepts anything, so the headers the client sends can be inspected.
    stack = make_stack(emulator=EmulatorConfig(require_auth=False))
    emu = stack.emulator_server.url
    common = {"ANTHROPIC_CUSTOM_HEADERS": "X-Team: blue", "AWS_BEARER_TOKEN_BEDROCK": "must-not-be-sent"}
    envs = [
        {**common, "CLAUDE_CODE_USE_VERTEX": "1", "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",
         "ANTHROPIC_VERTEX_BASE_URL": f"{emu}/v1", "ANTHROPIC_VERTEX_PROJECT_ID": "p"},
        {**common, "CLAUDE_CODE_USE_BEDROCK": "1", "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1",
         "ANTHROPIC_BEDROCK_BASE_URL": emu, "AWS_REGION": "us-west-2"},
    ]  # fmt: skip
    for env in envs:
        resolved = resolve(env, **_isolated(tmp_path))
        client = client_from_claude_code(resolved=resolved, max_retries=0)
        client.messages.create(model=main_model(resolved), max_tokens=10, messages=MSG)
    vertex_call, bedrock_call = stack.upstream_calls
    for call in (vertex_call, bedrock_call):
        assert "authorization" not in call.headers and call.headers["x-team"] == "blue"
    assert "/locations/us-east5/" in vertex_call.path
    assert bedrock_call.path == "/model/us.anthropic.claude-sonnet-4-6/invoke"


def test_async_client(stack: Stack, tmp_path: Path) -> None:
    resolved = resolve(gateway_env(stack, "vertex"), **_isolated(tmp_path))

    async def go() -> str:
        client = async_client_from_claude_code(resolved=resolved, max_retries=0)
        assert isinstance(client, anthropic.AsyncAnthropicVertex)
        message = await client.messages.create(model=main_model(resolved), max_tokens=20, messages=MSG)
        return message.content[0].text

    assert asyncio.run(go())
    assert stack.records(1)[0].frontdoor == "vertex"


def test_api_key_helper_supplies_the_key(stack: Stack, tmp_path: Path) -> None:
    iso = _isolated(tmp_path)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"apiKeyHelper": f"printf '%s\\n' {stack.key}"}))
    resolved = resolve({"ANTHROPIC_BASE_URL": stack.url}, settings_file=settings, **iso)
    assert resolved.auth == "api-key-helper"
    client = client_from_claude_code(resolved=resolved, max_retries=0)
    assert client.messages.create(model=main_model(resolved), max_tokens=10, messages=MSG).content


def test_a_failing_api_key_helper_is_one_clear_error() -> None:
    with pytest.raises(
        ClientConfigError, match=r"apiKeyHelper `echo oops >&2; exit 3` failed \(exit 3\) oops"
    ):
        api_key_from_helper("echo oops >&2; exit 3")
    with pytest.raises(ClientConfigError, match="printed nothing"):
        api_key_from_helper("true")


def test_model_choice_follows_aliases_and_platform_ids(tmp_path: Path) -> None:
    resolved = resolve(
        {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "ap-northeast-1"}, **_isolated(tmp_path)
    )
    assert model_choice(resolved, "haiku").platform_id == "apac.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert model_choice(resolved).platform_id == main_model(resolved)
