import os
import re
import socket
import subprocess
import sys

from cloudgate.util.server import free_port


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cloudgate.cli.main", "demo", "--once", *args],
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_demo_runs_with_zero_configuration():
    port, emulator_port = free_port(), free_port()
    result = _demo("--port", str(port), "--emulator-port", str(emulator_port), "--key", "cg-demo-fixed")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "POST /v1/messages -> 200" in out and ":streamRawPredict -> 200" in out
    assert f"export ANTHROPIC_BASE_URL=http://127.0.0.1:{port}" in out
    assert f"export ANTHROPIC_VERTEX_BASE_URL=http://127.0.0.1:{port}/vertex_ai/v1" in out
    assert "export CLAUDE_CODE_SKIP_VERTEX_AUTH=1" in out and "ANTHROPIC_AUTH_TOKEN=cg-demo-fixed" in out
    assert f"export ANTHROPIC_BEDROCK_BASE_URL=http://127.0.0.1:{port}/bedrock" in out
    assert "AWS_BEARER_TOKEN_BEDROCK=cg-demo-fixed" in out
    assert "/invoke-with-response-stream -> 200" in out
    assert out.count("status 200, tokens in") == 3
    assert re.search(
        rf"console   http://127\.0\.0\.1:{port}/ui   sign in with the admin key cg-admin-[0-9a-f]{{24}}", out
    )


def test_demo_plays_each_upstream():
    for provider, upstream in (
        ("bedrock", "us.anthropic.claude-sonnet-4-5"),
        ("anthropic", "anthropic claude-sonnet-4-5"),
    ):
        result = _demo("--port", "0", "--emulator-port", "0", "--provider", provider)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count(upstream) == 3


def test_demo_explains_a_busy_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = _demo("--port", str(busy.getsockname()[1]), "--emulator-port", str(free_port()))
    assert result.returncode == 1
    assert "could not listen on port" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
