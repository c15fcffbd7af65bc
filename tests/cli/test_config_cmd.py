"""`cloudgate config show` and `cloudgate config set`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cloudgate.cli.main import main
from tests.clientconfig.isolation import ClaudeHome, isolate

CLOUDGATE = str(Path(sys.executable).parent / "cloudgate")


@pytest.fixture
def claude(monkeypatch, tmp_path) -> ClaudeHome:
    return isolate(monkeypatch, tmp_path)


def test_set_global_env_then_show(claude: ClaudeHome, capsys) -> None:
    env = '{"CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "global", "ANTHROPIC_VERTEX_PROJECT_ID": "p"}'
    assert main(["config", "set", "--global", "env", env]) == 0
    assert f"wrote {claude.user_file}" in capsys.readouterr().out
    assert main(["config", "show", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["platform"], doc["region"], doc["project"]) == ("vertex", "global", "p")
    assert doc["sources"]["CLOUD_ML_REGION"] == str(claude.user_file)


def test_set_project_merges_and_is_idempotent(claude: ClaudeHome, capsys) -> None:
    claude.project_file.parent.mkdir()
    claude.project_file.write_text(
        json.dumps({"permissions": {"deny": ["Read(.env)"]}, "env": {"A_VAR": "1"}})
    )
    for _ in range(2):
        assert main(["config", "set", "--project", "env", '{"ANTHROPIC_MODEL": "opus"}']) == 0
        assert main(["config", "set", "--project", "apiKeyHelper", "~/bin/key.sh"]) == 0
    assert json.loads(claude.project_file.read_text()) == {
        "permissions": {"deny": ["Read(.env)"]},
        "env": {"A_VAR": "1", "ANTHROPIC_MODEL": "opus"},
        "apiKeyHelper": "~/bin/key.sh",
    }
    out = capsys.readouterr().out
    assert "ANTHROPIC_MODEL=opus" in out


def test_set_masks_secrets_when_echoing(claude: ClaudeHome, capsys) -> None:
    assert main(["config", "set", "-g", "env", '{"ANTHROPIC_AUTH_TOKEN": "cg-0123456789abcdefWXYZ"}']) == 0
    out = capsys.readouterr().out
    assert "ANTHROPIC_AUTH_TOKEN=****WXYZ" in out and "0123456789" not in out


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["env", '{"CLAUDE_CODE_USE_VERTEX": "1"'], "not valid JSON"),
        (["env", '"CLAUDE_CODE_USE_VERTEX=1"'], "must be a JSON object"),
        (["theme", "dark"], "writes env, apiKeyHelper and model"),
    ],
)
def test_set_refuses_bad_input_with_one_line(claude: ClaudeHome, capsys, args, phrase) -> None:
    assert main(["config", "set", "--global", *args]) == 1
    err = capsys.readouterr().err
    assert phrase in err and err.count("\n") == 1
    assert not claude.user_file.exists()


def test_set_needs_a_scope(claude: ClaudeHome) -> None:
    with pytest.raises(SystemExit):
        main(["config", "set", "env", "{}"])


def test_show_plain_text_when_piped(claude: ClaudeHome, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CLAUDE_CODE_USE_VERTEX", "1")
    monkeypatch.setenv("CLOUD_ML_REGION", "us/east5")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    for heading in ("Claude Code configuration", "Models", "Variables", "Settings files", "Problems"):
        assert heading in out
    assert "not a region name" in out and "no project is set" in out
    assert "\x1b[" not in out  # no terminal colours in a pipe


def test_show_rich_tables_on_a_terminal(claude: ClaudeHome, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_MODEL", "sonnet[1m]")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "Models" in out and "sonnet[1m]" in out and "No problems found." in out


def test_show_with_a_settings_flag(claude: ClaudeHome, capsys, tmp_path) -> None:
    flag = tmp_path / "ci.json"
    flag.write_text(json.dumps({"env": {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "eu-central-1"}}))
    assert main(["config", "show", "--json", "--settings", str(flag)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["platform"] == "bedrock"
    assert doc["models"][0]["platform_id"] == "eu.anthropic.claude-sonnet-4-6"


def test_console_script_show_json(tmp_path: Path, monkeypatch) -> None:
    """The installed `cloudgate` script, with the environment and all settings levels it reads."""
    claude = isolate(monkeypatch, tmp_path)
    claude.user_file.write_text(
        json.dumps({"env": {"CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "global"}})
    )
    claude.project_file.parent.mkdir()
    claude.project_file.write_text(json.dumps({"env": {"ANTHROPIC_VERTEX_PROJECT_ID": "from-project"}}))
    (claude.project / ".claude" / "settings.local.json").write_text(
        json.dumps({"env": {"ANTHROPIC_MODEL": "claude-opus-4-1"}})
    )
    env = claude.env(VERTEX_REGION_CLAUDE_4_1_OPUS="europe-west1", CLOUD_ML_REGION="us-east5")
    done = subprocess.run(
        [CLOUDGATE, "config", "show", "--json"],
        cwd=claude.project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    doc = json.loads(done.stdout)
    assert doc["region"] == "global"  # the user file's env outranks the shell's CLOUD_ML_REGION
    assert doc["project"] == "from-project"
    main_model = doc["models"][0]
    assert (main_model["platform_id"], main_model["region"]) == ("claude-opus-4-1@20250805", "europe-west1")
    assert doc["sources"]["ANTHROPIC_MODEL"].endswith(".claude/settings.local.json")
    assert doc["sources"]["VERTEX_REGION_CLAUDE_4_1_OPUS"] == "environment"
