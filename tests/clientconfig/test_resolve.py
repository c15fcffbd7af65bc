"""What the resolved configuration says: platform, models and regions, credentials, problems."""

from __future__ import annotations

import json

import pytest

from cloudgate.clientconfig import AUTH_KINDS

VERTEX = {"CLAUDE_CODE_USE_VERTEX": "1", "ANTHROPIC_VERTEX_PROJECT_ID": "proj"}
BEDROCK = {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "us-east-1"}


# -- credentials ---------------------------------------------------------------------------


def _sa_file(machine):
    path = machine.home / "sa.json"
    path.write_text(json.dumps({"type": "service_account", "project_id": "sa-proj"}))
    return path


def _gcloud_user(machine):
    path = machine.home / ".config" / "gcloud" / "application_default_credentials.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"type": "authorized_user"}))
    return path


def _aws_files(machine):
    aws = machine.home / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text(
        "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s\n"
    )
    (aws / "config").write_text("[profile work]\nregion = eu-west-3\n")


# fmt: off
AUTH_CASES = [
    # (name, env, helper setting, set-up, expected kind, expected text in the detail)
    ("anthropic-auth-token", {"ANTHROPIC_AUTH_TOKEN": "t", "ANTHROPIC_API_KEY": "k"}, "echo h", None, "auth-token", "ANTHROPIC_AUTH_TOKEN"),
    ("anthropic-api-key", {"ANTHROPIC_API_KEY": "k"}, "echo h", None, "api-key", "x-api-key"),
    ("anthropic-helper", {}, "echo h", None, "api-key-helper", "echo h"),
    ("anthropic-none", {}, None, None, "none", "claude.ai"),
    ("vertex-skip", {**VERTEX, "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1", "ANTHROPIC_VERTEX_BASE_URL": "http://gw", "ANTHROPIC_AUTH_TOKEN": "k"}, None, None, "vertex-skip-auth", "ANTHROPIC_AUTH_TOKEN"),
    ("vertex-adc-file", VERTEX, None, _sa_file, "adc-file", "service_account"),
    ("vertex-gcloud-user", VERTEX, None, _gcloud_user, "gcloud-user", "application_default_credentials.json"),
    ("vertex-metadata", VERTEX, None, None, "metadata-server", "metadata server"),
    ("bedrock-skip", {**BEDROCK, "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1", "AWS_BEARER_TOKEN_BEDROCK": "b", "ANTHROPIC_BEDROCK_BASE_URL": "http://gw"}, None, None, "bedrock-skip-auth", "no Authorization"),
    ("bedrock-api-key", {**BEDROCK, "AWS_BEARER_TOKEN_BEDROCK": "b", "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s"}, None, None, "bedrock-api-key", "AWS_BEARER_TOKEN_BEDROCK"),
    ("bedrock-sigv4-env", {**BEDROCK, "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "st"}, None, None, "sigv4-env", "AKIDENV with AWS_SESSION_TOKEN"),
    ("bedrock-profile", {**BEDROCK, "AWS_PROFILE": "work"}, None, None, "sigv4-profile", "work"),
    ("bedrock-default-profile", BEDROCK, None, _aws_files, "sigv4-profile", "default"),
    ("bedrock-none", BEDROCK, None, None, "none", "no AWS credentials"),
]
# fmt: on


def test_the_cases_cover_every_auth_kind():
    assert {case[4] for case in AUTH_CASES} == set(AUTH_KINDS)


@pytest.mark.parametrize(
    ("env", "helper", "setup", "kind", "detail"), [c[1:] for c in AUTH_CASES], ids=[c[0] for c in AUTH_CASES]
)
def test_auth_kind(machine, env, helper, setup, kind, detail):
    env = dict(env)
    if setup is _sa_file:
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(_sa_file(machine))
    elif setup is not None:
        setup(machine)
    if helper:
        machine.write(machine.user_file, {"apiKeyHelper": helper})
    resolved = machine.resolve(env)
    assert resolved.auth == kind
    assert detail in (resolved.auth_detail or "")
    assert resolved.skip_auth == kind.endswith("skip-auth")
    for secret in ("t", "k", "b", "s", "st"):  # the secrets above never appear as a detail
        assert resolved.auth_detail != secret


def test_the_project_comes_from_the_credentials_file_before_anthropic_vertex_project_id(machine):
    env = {**VERTEX, "GOOGLE_APPLICATION_CREDENTIALS": str(_sa_file(machine))}
    assert machine.resolve(env).project == "sa-proj"
    assert machine.resolve({**env, "GOOGLE_CLOUD_PROJECT": "gcp"}).project == "gcp"


# -- models and regions --------------------------------------------------------------------


def test_defaults_are_the_catalog_family_defaults(machine):
    resolved = machine.resolve({})
    assert [(m.role, m.name, m.platform_id, m.region) for m in resolved.models] == [
        ("main", "claude-sonnet-4-6", "claude-sonnet-4-6", None),
        ("small-fast", "claude-haiku-4-5-20251001", "claude-haiku-4-5-20251001", None),
    ]


def test_vertex_per_model_regions(machine):
    env = {
        **VERTEX,
        "CLOUD_ML_REGION": "global",
        "ANTHROPIC_MODEL": "claude-opus-4-1",
        "VERTEX_REGION_CLAUDE_4_1_OPUS": "europe-west1",
        "VERTEX_REGION_CLAUDE_4_0_OPUS": "asia-east1",  # a shorter prefix: never applies to 4-1
        "ANTHROPIC_DEFAULT_SONNET_MODEL": "claude-sonnet-4-5",
        "VERTEX_REGION_CLAUDE_4_5_SONNET": "us-east5",
    }
    resolved = machine.resolve(env)
    got = {m.role: (m.platform_id, m.region) for m in resolved.models}
    assert got == {
        "main": ("claude-opus-4-1@20250805", "europe-west1"),
        "small-fast": ("claude-haiku-4-5@20251001", "global"),
        "sonnet": ("claude-sonnet-4-5@20250929", "us-east5"),
    }
    assert resolved.region == "global" and resolved.problems == []
    endpoints = {m["role"]: m["endpoint"] for m in resolved.as_dict()["models"]}
    assert endpoints["main"] == "https://europe-west1-aiplatform.googleapis.com/v1"
    assert endpoints["small-fast"] == "https://aiplatform.googleapis.com/v1"


def test_bedrock_ids_follow_the_region_and_explicit_ids_are_kept(machine):
    env = {
        **BEDROCK,
        "AWS_REGION": "eu-west-1",
        "ANTHROPIC_MODEL": "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "ANTHROPIC_SMALL_FAST_MODEL_AWS_REGION": "us-west-2",
        "ANTHROPIC_DEFAULT_OPUS_MODEL": "arn:aws:bedrock:eu-west-1:1:application-inference-profile/x",
    }
    got = {m.role: (m.platform_id, m.region) for m in machine.resolve(env).models}
    assert got == {
        "main": ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "eu-west-1"),
        "small-fast": ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "us-west-2"),
        "opus": ("arn:aws:bedrock:eu-west-1:1:application-inference-profile/x", "eu-west-1"),
    }


def test_aws_region_chain(machine):
    _aws_files(machine)
    assert (
        machine.resolve({**BEDROCK, "AWS_REGION": "", "AWS_DEFAULT_REGION": "ap-south-1"}).region
        == "ap-south-1"
    )
    assert machine.resolve({"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_PROFILE": "work"}).region == "eu-west-3"
    assert machine.resolve({"CLAUDE_CODE_USE_BEDROCK": "1"}).region == "us-east-1"


def test_aliases_and_the_1m_suffix(machine):
    env = {"ANTHROPIC_MODEL": "sonnet[1m]", "ANTHROPIC_DEFAULT_SONNET_MODEL": "claude-sonnet-4-5"}
    resolved = machine.resolve(env)
    main = resolved.model("main")
    assert (main.name, main.platform_id, main.one_m) == (
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
        True,
    )
    assert resolved.one_m_context
    assert not machine.resolve({"ANTHROPIC_MODEL": "opus"}).one_m_context


def test_caching_switches(machine):
    resolved = machine.resolve({"DISABLE_PROMPT_CACHING_HAIKU": "1", "ENABLE_PROMPT_CACHING_1H": "true"})
    c = resolved.caching
    assert (c.disabled, c.disabled_haiku, c.ttl_1h) == (False, True, True)
    assert c.disabled_for("claude-haiku-4-5") and not c.disabled_for("claude-sonnet-4-6")


# -- problems ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "phrase"),
    [
        (
            {**VERTEX, "CLOUD_ML_REGION": "projects/p/locations/us-east5"},
            "CLOUD_ML_REGION='projects/p/locations/us-east5' is not a region name",
        ),
        (
            {**VERTEX, "VERTEX_REGION_CLAUDE_4_5_SONNET": "us east5"},
            "VERTEX_REGION_CLAUDE_4_5_SONNET='us east5' is not a region name",
        ),
        ({**VERTEX, **BEDROCK}, "both CLAUDE_CODE_USE_VERTEX and CLAUDE_CODE_USE_BEDROCK are set"),
        ({"CLAUDE_CODE_USE_VERTEX": "1"}, "no project is set"),
        ({**VERTEX, "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1"}, "without ANTHROPIC_VERTEX_BASE_URL"),
        ({**BEDROCK, "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1"}, "without ANTHROPIC_BEDROCK_BASE_URL"),
        (
            {**VERTEX, "CLOUD_ML_REGION": "global", "ANTHROPIC_MODEL": "claude-opus-4-1"},
            "not offered at Vertex location global",
        ),
        ({**VERTEX, "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/key.json"}, "does not exist"),
        ({"ANTHROPIC_CUSTOM_HEADERS": "X-Ok: 1\nbroken"}, "ANTHROPIC_CUSTOM_HEADERS"),
    ],
)
def test_problems(machine, env, phrase):
    problems = machine.resolve(env).problems
    assert any(phrase in p for p in problems), problems


def test_both_platforms_set_means_bedrock(machine):
    assert machine.resolve({**VERTEX, **BEDROCK}).platform == "bedrock"


def test_an_invalid_region_falls_back_to_the_default(machine):
    assert machine.resolve({**VERTEX, "CLOUD_ML_REGION": "a/b"}).region == "us-east5"


def test_a_broken_settings_file_is_a_problem_and_is_ignored(machine):
    machine.user_file.parent.mkdir(parents=True)
    machine.user_file.write_text('{"env": {"ANTHROPIC_MODEL": "opus",}}')
    machine.write(machine.project_file, {"env": ["not", "an", "object"]})
    resolved = machine.resolve({})
    assert "ANTHROPIC_MODEL" not in resolved.env
    assert any("not valid JSON" in p and str(machine.user_file) in p for p in resolved.problems)
    assert any("`env` must be an object" in p for p in resolved.problems)


def test_a_missing_settings_flag_file_is_a_problem(machine):
    resolved = machine.resolve({}, settings_file=machine.home / "nope.json")
    assert any("--settings file does not exist" in p for p in resolved.problems)


def test_a_clean_configuration_has_no_problems(machine):
    env = {
        **VERTEX,
        "CLOUD_ML_REGION": "us-east5",
        "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",
        "ANTHROPIC_VERTEX_BASE_URL": "http://gw/vertex_ai/v1",
    }
    assert machine.resolve(env).problems == []


# -- the JSON view -------------------------------------------------------------------------


def test_as_dict_is_json_and_masks_secrets(machine):
    secrets = {
        "ANTHROPIC_AUTH_TOKEN": "cg-0123456789abcdefWXYZ",
        "ANTHROPIC_API_KEY": "sk-ant-0123456789abcdef",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
        "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEXAMPLETOKEN",
        "AWS_BEARER_TOKEN_BEDROCK": "ABSKexampleexampleexample",
        "ANTHROPIC_CUSTOM_HEADERS": "X-Cloudgate-Key: cg-secret-secret-secret-1234",
    }
    machine.write(machine.user_file, {"env": {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE"}})
    doc = machine.resolve({**secrets, "GOOGLE_APPLICATION_CREDENTIALS": "/keys/sa.json"}).as_dict()
    text = json.dumps(doc)
    for value in secrets.values():
        assert value not in text
    assert "cg-secret-secret-secret-1234" not in text
    assert doc["env"]["ANTHROPIC_AUTH_TOKEN"] == "****WXYZ"
    assert doc["env"]["ANTHROPIC_CUSTOM_HEADERS"] == "X-Cloudgate-Key: ****1234"
    assert doc["env"]["GOOGLE_APPLICATION_CREDENTIALS"] == "/keys/sa.json"  # a path, not a secret
    assert doc["env"]["AWS_ACCESS_KEY_ID"] == "AKIAEXAMPLE"
    assert doc["sources"]["AWS_ACCESS_KEY_ID"] == str(machine.user_file)
    assert set(doc) >= {
        "platform",
        "base_url",
        "project",
        "region",
        "models",
        "auth",
        "auth_detail",
        "skip_auth",
        "caching",
        "one_m_context",
        "env",
        "sources",
        "problems",
    }
