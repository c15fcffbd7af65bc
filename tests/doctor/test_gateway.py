"""Doctor through cloudgate: the gateway answers in each platform's format, so the same probes
and the same explanations work whether Claude Code talks to the cloud or to the gateway."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cloudgate.clientconfig import resolve
from cloudgate.doctor import Report, Verdict, diagnose
from cloudgate.emulator import EmulatorConfig
from cloudgate.emulator.faults import Fault
from tests.conftest import GATEWAY_KEY, NO_FAILOVER, Stack


def run(env: dict[str, str], tmp: Path) -> Report:
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", **env}
    return diagnose(resolve(env=env, cwd=tmp, home=home), base_env=env, home=home)


def vertex_via(stack: Stack) -> dict[str, str]:
    """The set-up the user guide gives for Vertex mode with the gateway holding the credentials."""
    return {
        "CLAUDE_CODE_USE_VERTEX": "1",
        "ANTHROPIC_VERTEX_BASE_URL": f"{stack.url}/vertex_ai/v1",
        "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",
        "ANTHROPIC_VERTEX_PROJECT_ID": "anything",
        "CLOUD_ML_REGION": "global",
        "ANTHROPIC_AUTH_TOKEN": GATEWAY_KEY,
    }


def test_all_green_through_the_gateway_on_every_door(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = make_stack()
    doors = {
        "vertex": vertex_via(stack),
        "bedrock": {
            "CLAUDE_CODE_USE_BEDROCK": "1",
            "ANTHROPIC_BEDROCK_BASE_URL": f"{stack.url}/bedrock",
            "AWS_BEARER_TOKEN_BEDROCK": GATEWAY_KEY,
            "AWS_REGION": "us-east-1",
        },
        "anthropic": {"ANTHROPIC_BASE_URL": stack.url, "ANTHROPIC_AUTH_TOKEN": GATEWAY_KEY},
    }
    for platform, env in doors.items():
        report = run(env, tmp_path)
        assert report.platform == platform
        assert report.exit_code == 0, (platform, [(c.id, c.verdict, c.message) for c in report.checks])
        assert {c.id for c in report.checks} >= {"model:main", "model:small-fast"}
        if platform == "vertex":
            creds = report.get("credentials")
            assert creds is not None and "the gateway holds them" in creds.message
    assert stack.upstream_calls, "the probes reached the emulator behind the gateway"


def test_a_wrong_gateway_key_is_named(make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    stack = make_stack()
    report = run({**vertex_via(stack), "ANTHROPIC_AUTH_TOKEN": "not-a-key"}, tmp_path)
    main = report.get("model:main")
    assert main is not None and main.cause == "credentials-rejected"
    assert "gateway" in main.fix


def test_upstream_quota_is_explained_through_the_gateway(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = make_stack(
        emulator=EmulatorConfig(faults=[Fault("rate_limit", platform="vertex")], count_tokens_global=True),
        settings=NO_FAILOVER,
    )
    main = run(vertex_via(stack), tmp_path).get("model:main")
    assert main is not None and main.verdict is Verdict.FAIL and main.cause == "quota", main
    assert main.details.get("quota") == "online_prediction_requests_per_base_model"
