"""The real Claude Code CLI (npm, pinned) driven through the gateway, with a tool round trip.

The emulator's script answers `RUN_TOOL` with a `tool_use` for Bash; the CLI runs the command,
sends the `tool_result` back, and prints the final text, which quotes the command's output.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests

from cloudgate.cli.demo import tool_round_trip_script
from cloudgate.emulator import EmulatorConfig, Fault
from tests.conftest import Stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
VERSION = "2.1.328"


def claude_binary() -> str:
    """The pinned CLI installed by scripts/install-claude-code.sh (or $CLOUDGATE_CLAUDE_BIN)."""
    candidate = os.environ.get("CLOUDGATE_CLAUDE_BIN") or str(
        ROOT / ".cache/claude-code/node_modules/.bin/claude"
    )
    if Path(candidate).exists():
        return candidate
    message = f"Claude Code {VERSION} is not installed: run scripts/install-claude-code.sh (needs npm)"
    if os.environ.get("CI"):
        pytest.fail(message)  # CI must run these, never skip them
    pytest.skip(message)


def run_claude(
    env: dict[str, str], home: Path, prompt: str = "RUN_TOOL please"
) -> subprocess.CompletedProcess[str]:
    """`claude -p PROMPT --allowedTools Bash` with a throw-away HOME and no outside traffic."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    return subprocess.run(
        [claude_binary(), "-p", prompt, "--allowedTools", "Bash"],
        env={**base, **env},
        cwd=home,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def scripted(make_stack) -> Stack:
    return make_stack(
        emulator=EmulatorConfig(script=tool_round_trip_script()),
        settings={"vertex": {"region": "global"}},
    )


def _streamed_upstream(stack: Stack) -> list:
    """Streaming calls that reached the emulator, on whichever platform it played."""
    ends = (":streamRawPredict", "/invoke-with-response-stream")
    return [
        c
        for c in stack.emulator.state.requests
        if c.path.endswith(ends) or (c.path == "/v1/messages" and (c.json or {}).get("stream"))
    ]


def _assert_round_trip(stack: Stack, result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Tool said: cloudgate-tool-ok" in result.stdout
    streamed = _streamed_upstream(stack)
    assert len(streamed) >= 2
    # The follow-up request carried the command's output back as a tool_result.
    last_user = streamed[-1].json["messages"][-1]
    results = [b for b in last_user["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]
    assert results and "cloudgate-tool-ok" in str(results[0]["content"])
    records = stack.sink.records
    assert records and all(r.status == 200 for r in records if r.stream)
    assert any(r.session_id for r in records)


def test_anthropic_mode(scripted: Stack, tmp_path: Path) -> None:
    env = {"ANTHROPIC_BASE_URL": scripted.url, "ANTHROPIC_AUTH_TOKEN": scripted.key}
    _assert_round_trip(scripted, run_claude(env, tmp_path))
    assert {r.frontdoor for r in scripted.sink.records} == {"anthropic"}


def test_vertex_mode(scripted: Stack, tmp_path: Path) -> None:
    env = {
        "CLAUDE_CODE_USE_VERTEX": "1",
        "ANTHROPIC_VERTEX_BASE_URL": f"{scripted.url}/vertex_ai/v1",
        "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",
        "ANTHROPIC_VERTEX_PROJECT_ID": "developer-laptop-project",
        "CLOUD_ML_REGION": "global",
        "ANTHROPIC_AUTH_TOKEN": scripted.key,
    }
    _assert_round_trip(scripted, run_claude(env, tmp_path))
    assert {r.frontdoor for r in scripted.sink.records} == {"vertex"}
    # The developer's project name never reaches Google: the gateway's own project does.
    assert all("/projects/upstream-project/" in c.path for c in scripted.upstream_calls)


def test_vertex_mode_with_key_in_a_custom_header(make_stack, tmp_path: Path) -> None:
    stack = make_stack(
        emulator=EmulatorConfig(script=tool_round_trip_script()),
        settings={"vertex": {"region": "global"}, "gateway": {"auth_header": "X-Cloudgate-Key"}},
    )
    env = {
        "CLAUDE_CODE_USE_VERTEX": "1",
        "ANTHROPIC_VERTEX_BASE_URL": f"{stack.url}/vertex_ai/v1",
        "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",
        "ANTHROPIC_VERTEX_PROJECT_ID": "p",
        "CLOUD_ML_REGION": "global",
        "ANTHROPIC_CUSTOM_HEADERS": f"X-Cloudgate-Key: {stack.key}",
    }
    _assert_round_trip(stack, run_claude(env, tmp_path))


def _bedrock_env(stack: Stack) -> dict[str, str]:
    return {
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "ANTHROPIC_BEDROCK_BASE_URL": f"{stack.url}/bedrock",
        "AWS_REGION": "us-east-1",
    }


def test_bedrock_mode_with_a_bearer_key(scripted: Stack, tmp_path: Path) -> None:
    env = {**_bedrock_env(scripted), "AWS_BEARER_TOKEN_BEDROCK": scripted.key}
    _assert_round_trip(scripted, run_claude(env, tmp_path))
    doors = {r.frontdoor for r in scripted.sink.records}
    assert doors == {"bedrock"}
    # Claude Code's Bedrock ids (us.anthropic...) reached Vertex as Vertex ids.
    assert all("/models/claude-" in c.path and "anthropic." not in c.path for c in scripted.upstream_calls)


@pytest.mark.parametrize("backend", ["vertex", "bedrock"])
def test_bedrock_mode_skipping_auth_with_a_custom_header(make_stack, tmp_path: Path, backend: str) -> None:
    stack = make_stack(
        emulator=EmulatorConfig(script=tool_round_trip_script()),
        settings={
            "provider": backend,
            "vertex": {"region": "global"},
            "gateway": {"auth_header": "X-Cloudgate-Key"},
        },
    )
    env = {
        **_bedrock_env(stack),
        "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1",
        "ANTHROPIC_CUSTOM_HEADERS": f"X-Cloudgate-Key: {stack.key}",
    }
    _assert_round_trip(stack, run_claude(env, tmp_path))
    assert {(r.frontdoor, r.provider) for r in stack.sink.records} == {("bedrock", backend)}


@pytest.mark.parametrize("backend", ["bedrock", "anthropic"])
def test_bedrock_mode_served_by_other_clouds(make_stack, tmp_path: Path, backend: str) -> None:
    stack = make_stack(
        emulator=EmulatorConfig(script=tool_round_trip_script()), settings={"provider": backend}
    )
    env = {**_bedrock_env(stack), "AWS_BEARER_TOKEN_BEDROCK": stack.key}
    _assert_round_trip(stack, run_claude(env, tmp_path))
    assert {(r.frontdoor, r.provider) for r in stack.sink.records} == {("bedrock", backend)}


@pytest.mark.parametrize("backend", ["bedrock", "anthropic"])
def test_anthropic_and_vertex_modes_served_by_other_clouds(make_stack, tmp_path: Path, backend: str) -> None:
    stack = make_stack(
        emulator=EmulatorConfig(script=tool_round_trip_script()), settings={"provider": backend}
    )
    _assert_round_trip(
        stack, run_claude({"ANTHROPIC_BASE_URL": stack.url, "ANTHROPIC_AUTH_TOKEN": stack.key}, tmp_path)
    )
    vertex = {
        "CLAUDE_CODE_USE_VERTEX": "1",
        "ANTHROPIC_VERTEX_BASE_URL": f"{stack.url}/vertex_ai/v1",
        "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",
        "ANTHROPIC_VERTEX_PROJECT_ID": "p",
        "CLOUD_ML_REGION": "global",
        "ANTHROPIC_AUTH_TOKEN": stack.key,
    }
    second_home = tmp_path / "second"
    second_home.mkdir()
    _assert_round_trip(stack, run_claude(vertex, second_home))
    assert {r.provider for r in stack.sink.records} == {backend}


def test_claude_code_never_sees_a_quota_storm_or_an_outage(make_stack, tmp_path: Path) -> None:
    """Global is out of quota and Vertex is down altogether: Bedrock serves the whole session."""
    stack = make_stack(
        emulator=EmulatorConfig(script=tool_round_trip_script()),
        settings={
            "routing": {
                "deployments": [
                    {"provider": "vertex", "region": "global"},
                    {"provider": "vertex", "region": "us-east5"},
                    {"provider": "bedrock", "region": "us-east-1", "priority": 1},
                ]
            }
        },
    )
    stack.emulator.state.faults.add(Fault(kind="rate_limit", location="global"))
    stack.emulator.state.faults.add(Fault(kind="drop_connection", location="us-east5"))
    env = {"ANTHROPIC_BASE_URL": stack.url, "ANTHROPIC_AUTH_TOKEN": stack.key}
    _assert_round_trip(stack, run_claude(env, tmp_path))
    streamed = [r for r in stack.sink.records if r.stream]
    assert streamed and {r.provider for r in streamed} == {"bedrock"}
    assert any(len(r.attempts) == 3 for r in streamed), [r.attempts for r in streamed]
    # One session, one deployment: the session id kept it on Bedrock once it got there.
    assert len({r.deployment for r in streamed}) == 1


def test_store_key_then_exhausted_budget(scripted: Stack, tmp_path: Path) -> None:
    import asyncio

    from cloudgate.governance.types import Period, Scope
    from cloudgate.store.repositories import Store

    async def with_store(fn):  # type: ignore[no-untyped-def]
        store = Store.open(scripted.db_url)
        try:
            return await fn(store)
        finally:
            await store.close()

    created = asyncio.run(with_store(lambda s: s.keys.create("developer")))
    env = {"ANTHROPIC_BASE_URL": scripted.url, "ANTHROPIC_AUTH_TOKEN": created.plaintext}
    _assert_round_trip(scripted, run_claude(env, tmp_path))
    assert {r.caller for r in scripted.sink.records} == {created.key.id}

    asyncio.run(with_store(lambda s: s.budgets.set(Scope.KEY, created.key.id, Period.MONTHLY, 1)))
    scripted.gateway.state.governor.cache_seconds = 0.0  # type: ignore[union-attr]
    scripted.gateway.state.governor._cache.clear()  # type: ignore[union-attr]
    second = tmp_path / "again"
    second.mkdir()
    result = run_claude(env, second, prompt="say hi")
    assert "budget" in (result.stdout + result.stderr).lower(), result.stdout + result.stderr
    # The gateway stays healthy and other keys still work.
    assert requests.get(f"{scripted.url}/health", timeout=5).json()["status"] == "ok"
