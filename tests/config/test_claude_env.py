import json

import pytest

from cloudgate.config.claude_env import (
    VERTEX_REGION_TABLE,
    region_overrides_from_env,
    resolve_vertex_project,
    resolve_vertex_region,
    vertex_region_env_var,
)

# Every row of Claude Code's table: a model id of that prefix -> the variable it reads.
ROWS = [
    ("claude-haiku-4-5@20251001", "VERTEX_REGION_CLAUDE_HAIKU_4_5"),
    ("claude-3-5-haiku@20241022", "VERTEX_REGION_CLAUDE_3_5_HAIKU"),
    ("claude-3-5-sonnet-v2@20241022", "VERTEX_REGION_CLAUDE_3_5_SONNET"),
    ("claude-3-7-sonnet@20250219", "VERTEX_REGION_CLAUDE_3_7_SONNET"),
    ("claude-opus-4-1@20250805", "VERTEX_REGION_CLAUDE_4_1_OPUS"),
    ("claude-opus-4-5@20251101", "VERTEX_REGION_CLAUDE_4_5_OPUS"),
    ("claude-opus-4-6", "VERTEX_REGION_CLAUDE_4_6_OPUS"),
    ("claude-opus-4-7", "VERTEX_REGION_CLAUDE_4_7_OPUS"),
    ("claude-opus-4-8", "VERTEX_REGION_CLAUDE_4_8_OPUS"),
    ("claude-opus-4@20250514", "VERTEX_REGION_CLAUDE_4_0_OPUS"),
    ("claude-sonnet-4-5@20250929", "VERTEX_REGION_CLAUDE_4_5_SONNET"),
    ("claude-sonnet-4-6", "VERTEX_REGION_CLAUDE_4_6_SONNET"),
    ("claude-sonnet-4@20250514", "VERTEX_REGION_CLAUDE_4_0_SONNET"),
    ("claude-sonnet-5", "VERTEX_REGION_CLAUDE_5_SONNET"),
    ("claude-opus-5-5", "VERTEX_REGION_CLAUDE_5_OPUS"),
]


def test_rows_cover_the_whole_table():
    assert {var for _, var in ROWS} == {var for _, var in VERTEX_REGION_TABLE}


@pytest.mark.parametrize(("model", "var"), ROWS)
def test_each_row_maps_model_to_its_variable(model, var):
    assert vertex_region_env_var(model) == var
    env = {var: "europe-west4"}
    assert resolve_vertex_region(model, "global", region_overrides_from_env(env)) == "europe-west4"


@pytest.mark.parametrize(("model", "var"), ROWS)
def test_other_rows_variables_do_not_apply(model, var):
    env = {other: "asia-east1" for _, other in VERTEX_REGION_TABLE if other != var}
    assert resolve_vertex_region(model, "global", region_overrides_from_env(env)) == "global"


def test_unlisted_models_use_the_default_region():
    assert vertex_region_env_var("claude-3-haiku@20240307") is None
    env = {var: "us-east5" for _, var in VERTEX_REGION_TABLE}
    assert (
        resolve_vertex_region("claude-3-haiku@20240307", "global", region_overrides_from_env(env)) == "global"
    )


@pytest.mark.parametrize("bad", ["us-east5/x", "us.east5", "us east5", "", "   "])
def test_values_with_slash_dot_or_space_are_ignored(bad):
    assert region_overrides_from_env({"VERTEX_REGION_CLAUDE_3_5_HAIKU": bad}) == {}


def test_project_precedence(tmp_path):
    creds = tmp_path / "key.json"
    creds.write_text(json.dumps({"type": "service_account", "project_id": "from-file"}))
    full = {
        "GCLOUD_PROJECT": "gcloud",
        "GOOGLE_CLOUD_PROJECT": "google-cloud",
        "GOOGLE_APPLICATION_CREDENTIALS": str(creds),
        "ANTHROPIC_VERTEX_PROJECT_ID": "anthropic",
    }
    order = [
        "GCLOUD_PROJECT",
        "GOOGLE_CLOUD_PROJECT",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "ANTHROPIC_VERTEX_PROJECT_ID",
    ]
    expected = ["gcloud", "google-cloud", "from-file", "anthropic"]
    for i, want in enumerate(expected):
        env = {k: full[k] for k in order[i:]}
        assert resolve_vertex_project(env, "configured") == want
    assert resolve_vertex_project({}, "configured") == "configured"
    assert resolve_vertex_project({"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent"}, None) is None
