"""Writing Claude Code's settings files the way `claude config set --global env '{...}'` does."""

from __future__ import annotations

import json

import pytest

from cloudgate.clientconfig import SettingsFileError, parse_env_argument, update_settings_file


def test_creates_the_file_and_its_directories(tmp_path):
    path = tmp_path / "home" / ".claude" / "settings.json"
    doc = update_settings_file(path, env=parse_env_argument('{"CLAUDE_CODE_USE_VERTEX": "1"}'))
    assert doc == {"env": {"CLAUDE_CODE_USE_VERTEX": "1"}}
    assert path.read_text() == '{\n  "env": {\n    "CLAUDE_CODE_USE_VERTEX": "1"\n  }\n}\n'


def test_merges_into_env_and_keeps_every_other_key(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"permissions": {"allow": ["Bash(ls)"]}, "env": {"A_VAR": "a", "B_VAR": "b"}}))
    update_settings_file(path, env=parse_env_argument('{"B_VAR": "new", "C_VAR": 3, "A_VAR": null}'))
    assert json.loads(path.read_text()) == {
        "permissions": {"allow": ["Bash(ls)"]},
        "env": {"B_VAR": "new", "C_VAR": "3"},
    }


def test_writing_twice_changes_nothing(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"theme": "dark"}))
    update_settings_file(path, env={"CLOUD_ML_REGION": "global"}, values={"apiKeyHelper": "echo k"})
    first = path.read_text()
    update_settings_file(path, env={"CLOUD_ML_REGION": "global"}, values={"apiKeyHelper": "echo k"})
    assert path.read_text() == first
    assert json.loads(first) == {
        "theme": "dark",
        "env": {"CLOUD_ML_REGION": "global"},
        "apiKeyHelper": "echo k",
    }


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ('{"CLAUDE_CODE_USE_VERTEX": "1",}', "not valid JSON"),
        ('["CLAUDE_CODE_USE_VERTEX"]', "must be a JSON object"),
        ('{"X": {"nested": 1}}', "env.X must be a string"),
    ],
)
def test_bad_env_arguments_are_refused(text, phrase):
    with pytest.raises(SettingsFileError, match=phrase):
        parse_env_argument(text)


def test_a_broken_existing_file_is_not_overwritten(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    with pytest.raises(SettingsFileError, match="not valid JSON"):
        update_settings_file(path, env={"A_VAR": "1"})
    assert path.read_text() == "{not json"
