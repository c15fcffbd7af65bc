"""Which value wins: the environment and Claude Code's five settings files, in Claude Code's order."""

from __future__ import annotations

import pytest

from cloudgate.clientconfig import SCOPES

# Highest precedence first: managed, --settings, .claude/settings.local.json,
# .claude/settings.json, the user's settings, then the process environment below them all.
LEVELS = ["managed", "flag", "local", "project", "user", "environment"]


@pytest.fixture
def five_levels(machine):
    """Every level sets ANTHROPIC_TEST_N for each N up to its own height, so variable N is
    set by the N lowest levels and must resolve to the highest of those."""
    docs: dict[str, dict[str, str]] = {level: {} for level in LEVELS}
    for n in range(6):  # ANTHROPIC_TEST_0 .. _5: the environment alone .. every level
        for level in LEVELS[5 - n :]:
            docs[level][f"ANTHROPIC_TEST_{n}"] = level
    paths = {
        "managed": machine.write(machine.managed, {"env": docs["managed"]}),
        "flag": machine.write(machine.home / "flag.json", {"env": docs["flag"]}),
        "local": machine.write(machine.local_file, {"env": docs["local"]}),
        "project": machine.write(machine.project_file, {"env": docs["project"]}),
        "user": machine.write(machine.user_file, {"env": docs["user"]}),
    }
    return docs["environment"], paths


def test_scopes_are_in_claude_codes_order():
    assert tuple(LEVELS[:5]) == SCOPES


def test_each_level_overrides_every_level_below_it(machine, five_levels):
    env, paths = five_levels
    resolved = machine.resolve(env, settings_file=paths["flag"])
    expected = {
        "ANTHROPIC_TEST_5": ("managed", str(paths["managed"])),
        "ANTHROPIC_TEST_4": ("flag", str(paths["flag"])),
        "ANTHROPIC_TEST_3": ("local", str(paths["local"])),
        "ANTHROPIC_TEST_2": ("project", str(paths["project"])),
        "ANTHROPIC_TEST_1": ("user", str(paths["user"])),
        "ANTHROPIC_TEST_0": ("environment", "environment"),
    }
    for var, (value, source) in expected.items():
        assert (resolved.env[var], resolved.sources[var]) == (value, source), var
    assert [f["scope"] for f in resolved.files] == LEVELS[:5]
    assert all(f["exists"] for f in resolved.files)


@pytest.mark.parametrize("removed", ["managed", "flag", "local", "project", "user"])
def test_removing_a_level_hands_its_variables_to_the_next_one_down(machine, five_levels, removed):
    env, paths = five_levels
    paths[removed].unlink()
    resolved = machine.resolve(env, settings_file=paths["flag"] if removed != "flag" else None)
    n = 5 - LEVELS.index(removed)  # the variable this level was the top of
    assert resolved.env[f"ANTHROPIC_TEST_{n}"] == LEVELS[LEVELS.index(removed) + 1]


def test_a_settings_file_env_overrides_the_shell_environment(machine):
    # Claude Code applies each settings file's env over process.env (see decision 0025).
    machine.write(machine.user_file, {"env": {"ANTHROPIC_BASE_URL": "http://from-settings"}})
    resolved = machine.resolve({"ANTHROPIC_BASE_URL": "http://from-shell"})
    assert resolved.base_url == "http://from-settings"
    assert resolved.sources["ANTHROPIC_BASE_URL"] == str(machine.user_file)


def test_env_objects_merge_variable_by_variable(machine):
    machine.write(machine.user_file, {"env": {"CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "global"}})
    machine.write(machine.project_file, {"env": {"ANTHROPIC_VERTEX_PROJECT_ID": "proj"}})
    resolved = machine.resolve({})
    assert (resolved.platform, resolved.region, resolved.project) == ("vertex", "global", "proj")


def test_api_key_helper_comes_from_the_highest_file_that_sets_it(machine):
    machine.write(machine.user_file, {"apiKeyHelper": "echo user"})
    machine.write(machine.project_file, {"apiKeyHelper": "echo project"})
    machine.write(machine.local_file, {"env": {}})  # sets other things, not the helper
    resolved = machine.resolve({})
    assert (resolved.auth, resolved.api_key_helper) == ("api-key-helper", "echo project")
    assert resolved.api_key_helper_source == str(machine.project_file)


def test_the_model_setting_yields_to_anthropic_model(machine):
    machine.write(machine.user_file, {"model": "opus"})
    assert machine.resolve({}).model("main").name == "claude-opus-4-6"
    assert machine.resolve({"ANTHROPIC_MODEL": "haiku"}).model("main").name == "claude-haiku-4-5-20251001"


def test_claude_config_dir_moves_the_user_file(machine, tmp_path):
    config_dir = tmp_path / "cfg"
    machine.write(config_dir / "settings.json", {"env": {"ANTHROPIC_MODEL": "from-config-dir"}})
    machine.write(machine.user_file, {"env": {"ANTHROPIC_MODEL": "from-home"}})
    resolved = machine.resolve({"CLAUDE_CONFIG_DIR": str(config_dir)})
    assert resolved.env["ANTHROPIC_MODEL"] == "from-config-dir"


def test_inline_json_settings_act_as_the_flag_level(machine):
    machine.write(machine.user_file, {"env": {"ANTHROPIC_MODEL": "user"}})
    resolved = machine.resolve({}, settings_file='{"env": {"ANTHROPIC_MODEL": "inline"}}')
    assert resolved.env["ANTHROPIC_MODEL"] == "inline"
    assert resolved.sources["ANTHROPIC_MODEL"] == "--settings (inline JSON)"


def test_non_string_env_values_read_as_node_would(machine):
    machine.write(machine.user_file, {"env": {"CLAUDE_CODE_USE_BEDROCK": 1, "DISABLE_PROMPT_CACHING": True}})
    resolved = machine.resolve({})
    assert resolved.env["CLAUDE_CODE_USE_BEDROCK"] == "1" and resolved.platform == "bedrock"
    assert resolved.env["DISABLE_PROMPT_CACHING"] == "true" and resolved.caching.disabled


def test_unrelated_shell_variables_stay_out_but_settings_variables_show(machine):
    machine.write(machine.user_file, {"env": {"MY_TOOL_HOME": "/opt/tool"}})
    resolved = machine.resolve({"PATH": "/usr/bin", "EDITOR": "vi", "ANTHROPIC_MODEL": "opus"})
    assert set(resolved.env) == {"ANTHROPIC_MODEL", "MY_TOOL_HOME"}
