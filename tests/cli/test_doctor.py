"""`cloudgate doctor` as users run it: the console script as a process (JSON, exit codes,
--settings), and the human report in-process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloudgate.cli.doctor import render
from cloudgate.cli.main import main
from cloudgate.cli.term import Spinner, Terminal
from tests.doctor.scenarios import PROJECT, Scenario, scenario_factory

CLOUDGATE = str(Path(sys.executable).parent / "cloudgate")


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[Callable[..., Scenario]]:
    """`machines(**emulator_settings)`: an emulator and a user's machine around it."""
    with scenario_factory(tmp_path) as make:
        yield make


def run_cli(scenario: Scenario, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, in the scenario's HOME and project directory only."""
    return subprocess.run(
        [CLOUDGATE, "doctor", *argv],
        env=env,
        cwd=scenario.tmp,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_console_script_json_green_then_failing(machines: Callable[..., Scenario]) -> None:
    scenario = machines(disabled_models={PROJECT: ["claude-opus-4-1"]})
    # The Vertex set-up lives in a settings file given with --settings, as `claude --settings`.
    env = scenario.vertex_env()
    claude_env = {
        k: env.pop(k) for k in list(env) if k.startswith(("CLAUDE_CODE_", "ANTHROPIC_", "CLOUD_ML"))
    }
    settings = scenario.tmp / "claude-settings.json"
    settings.write_text(json.dumps({"env": claude_env}))

    green = run_cli(scenario, env, "--settings", str(settings), "--json")
    assert green.returncode == 0, green.stdout + green.stderr
    doc = json.loads(green.stdout)
    assert doc["ok"] is True and doc["platform"] == "vertex"
    assert [c["id"] for c in doc["checks"]] == [
        "config", "credentials", "project", "reachable", "model:main", "model:small-fast",
    ]  # fmt: skip
    assert set(doc["checks"][0]) == {"id", "title", "verdict", "message", "fix", "cause", "details"}
    assert "\x1b[" not in green.stdout and green.stderr == ""  # no colour or spinner in a pipe

    failing = run_cli(scenario, env, "--settings", str(settings), "--json", "--model", "claude-opus-4-1")
    assert failing.returncode == 1
    checks = {c["id"]: c for c in json.loads(failing.stdout)["checks"]}
    assert checks["model:claude-opus-4-1"]["verdict"] == "fail"
    assert checks["model:claude-opus-4-1"]["cause"] == "not-enabled"


@pytest.fixture
def user_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[Scenario, dict[str, str]], None]:
    """Make this process look like the scenario's machine (doctor reads os.environ and the cwd)."""

    def apply(scenario: Scenario, env: dict[str, str]) -> None:
        for name in list(os.environ):
            if name.startswith(("ANTHROPIC_", "CLAUDE_", "AWS_", "GOOGLE_", "VERTEX_", "CLOUD_ML", "GCLOUD")):
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(scenario.tmp)

    return apply


def test_human_report_names_the_fix(machines: Callable[..., Scenario], user_env, capsys) -> None:  # type: ignore[no-untyped-def]
    scenario = machines()
    user_env(scenario, scenario.vertex_env(CLOUD_ML_REGION="global", ANTHROPIC_MODEL="claude-opus-4-1"))
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] Model main: claude-opus-4-1" in out
    assert (
        "Fix: Send this model to a region that serves it: `export VERTEX_REGION_CLAUDE_4_1_OPUS=us-east5`"
        in out
    )
    assert "[ok]   Credentials" in out
    assert out.rstrip().endswith("Problems found (5 ok, 1 fail).")


def test_human_report_all_green(machines: Callable[..., Scenario], user_env, capsys) -> None:  # type: ignore[no-untyped-def]
    scenario = machines()
    user_env(scenario, scenario.bedrock_env())
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "Claude Code should work" in out and "[FAIL]" not in out


def test_unreadable_settings_file_is_reported(machines: Callable[..., Scenario], user_env, capsys) -> None:  # type: ignore[no-untyped-def]
    scenario = machines()
    user_env(scenario, scenario.anthropic_env())
    bad = scenario.tmp / "bad.json"
    bad.write_text("{not json")
    # Claude Code ignores a settings file it cannot read: a warning, and the rest still works.
    assert main(["doctor", "--json", "--settings", str(bad)]) == 0
    config = json.loads(capsys.readouterr().out)["checks"][0]
    assert config["id"] == "config" and config["verdict"] == "warn"
    assert "bad.json: not valid JSON" in config["message"]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_and_spinner_only_at_a_terminal(machines: Callable[..., Scenario]) -> None:
    scenario = machines(disabled_models={PROJECT: ["claude-sonnet-4-6"]})
    report = scenario.doctor(scenario.vertex_env())
    tty, pipe = FakeTerminal(), io.StringIO()
    render(report, Terminal(tty))
    render(report, Terminal(pipe))
    assert "\x1b[" in tty.getvalue() and "\x1b[" not in pipe.getvalue()
    assert "[FAIL] Model main: claude-sonnet-4-6" in pipe.getvalue()
    quiet = io.StringIO()
    with Spinner(quiet).running("probing") as spinner:
        spinner.update("still probing")
    assert quiet.getvalue() == ""
