"""`cloudgate ask`: one request through Claude Code's configuration, direct or via the gateway."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cloudgate.cli.main import main
from cloudgate.emulator import EmulatorConfig
from tests.clientconfig.isolation import ClaudeHome, isolate
from tests.conftest import ANTHROPIC_API_KEY, Stack
from tests.test_client import gateway_env

CLOUDGATE = str(Path(sys.executable).parent / "cloudgate")


@pytest.fixture
def claude(monkeypatch, tmp_path) -> ClaudeHome:
    return isolate(monkeypatch, tmp_path)


def _use(monkeypatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_streams_the_answer_direct_and_prices_it_from_the_catalog(claude, gw: Stack, capsys, monkeypatch):
    _use(monkeypatch, ANTHROPIC_BASE_URL=gw.emulator_server.url, ANTHROPIC_API_KEY=ANTHROPIC_API_KEY)
    assert main(["ask", "Say hello", "--model", "haiku", "--max-tokens", "50"]) == 0
    out, err = capsys.readouterr()
    assert out.strip()
    assert "model   claude-haiku-4-5-20251001 (anthropic)" in err
    assert f"via {gw.emulator_server.url}" in err
    assert "tokens  in " in err and "(list price)" in err
    (call,) = gw.upstream_calls
    assert call.json["stream"] is True and call.json["max_tokens"] == 50
    assert call.json["messages"] == [{"role": "user", "content": "Say hello"}]


def test_no_stream_through_the_gateway_uses_the_gateways_cost(claude, gw: Stack, capsys, monkeypatch):
    _use(monkeypatch, **gateway_env(gw, "vertex"))
    assert main(["ask", "Say hello", "--no-stream"]) == 0
    out, err = capsys.readouterr()
    assert out.strip()
    assert "(vertex, global) via " in err and "(gateway)" in err
    (record,) = gw.records(1)
    assert record.frontdoor == "vertex" and not record.stream


def test_json_output(claude, gw: Stack, capsys, monkeypatch):
    _use(
        monkeypatch,
        CLAUDE_CODE_USE_BEDROCK="1",
        ANTHROPIC_BEDROCK_BASE_URL=f"{gw.url}/bedrock",
        AWS_BEARER_TOKEN_BEDROCK=gw.key,
        AWS_REGION="eu-west-1",
    )
    assert main(["ask", "Say hello", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["platform"] == "bedrock" and doc["platform_id"] == "eu.anthropic.claude-sonnet-4-6"
    assert doc["region"] == "eu-west-1" and doc["text"]
    assert doc["usage"]["output_tokens"] > 0
    assert doc["cost_source"] == "gateway" and doc["cost_usd"] > 0
    assert doc["request_id"] == gw.records(1)[0].request_id


def test_prompt_from_standard_input(claude, gw: Stack, capsys, monkeypatch):
    _use(monkeypatch, ANTHROPIC_BASE_URL=gw.url, ANTHROPIC_AUTH_TOKEN=gw.key)
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("piped prompt"))
    assert main(["ask", "--json"]) == 0
    assert gw.upstream_calls[0].json["messages"][0]["content"] == "piped prompt"


def test_unknown_model_is_one_line_pointing_at_doctor(claude, make_stack, capsys, monkeypatch):
    stack = make_stack(emulator=EmulatorConfig(strict_models=True))
    _use(monkeypatch, ANTHROPIC_BASE_URL=stack.emulator_server.url, ANTHROPIC_API_KEY=ANTHROPIC_API_KEY)
    assert main(["ask", "hi", "--model", "claude-nonexistent-9"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cloudgate ask: model claude-nonexistent-9 not found at ")
    assert err.endswith("see `cloudgate doctor`") and "\n" not in err


def test_refused_credentials(claude, gw: Stack, capsys, monkeypatch):
    _use(monkeypatch, **{**gateway_env(gw, "vertex"), "ANTHROPIC_AUTH_TOKEN": "not-a-key"})
    assert main(["ask", "hi"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cloudgate ask: 401 from ") and "(vertex-skip-auth) were refused" in err


def test_unreachable_endpoint(claude, capsys, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _use(monkeypatch, ANTHROPIC_BASE_URL=f"http://127.0.0.1:{port}", ANTHROPIC_AUTH_TOKEN="k")
    assert main(["ask", "hi"]) == 1
    assert f"cannot reach http://127.0.0.1:{port}" in capsys.readouterr().err


def test_console_script_streams_through_the_gateway(tmp_path: Path, monkeypatch, gw: Stack) -> None:
    """The installed script, configured only by a user settings file as `config set` writes it."""
    claude = isolate(monkeypatch, tmp_path)
    claude.user_file.write_text(json.dumps({"env": gateway_env(gw, "vertex")}))
    done = subprocess.run(
        [CLOUDGATE, "ask", "Say hello", "--model", "claude-opus-4-6"],
        cwd=claude.project,
        env=claude.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert "model   claude-opus-4-6 (vertex, global)" in done.stderr
    (record,) = gw.records(1)
    assert record.stream and record.status == 200
