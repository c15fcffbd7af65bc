"""Each failure Claude Code's troubleshooting guides describe, staged on the emulator: doctor
must name the cause and the fix, and stop the checks that depend on a failed one."""

from __future__ import annotations

from collections.abc import Callable

from cloudgate.doctor import Report, Verdict
from cloudgate.emulator.faults import Fault
from tests.doctor.scenarios import PROJECT, SA_EMAIL, Scenario


def verdicts(report: Report) -> dict[str, str]:
    return {c.id: str(c.verdict) for c in report.checks}


def check(report: Report, check_id: str):  # type: ignore[no-untyped-def]
    found = report.get(check_id)
    assert found is not None, verdicts(report)
    return found


# ---------------------------------------------------------------------------------------------
# Vertex AI


def test_vertex_all_green(scenario: Scenario) -> None:
    report = scenario.doctor(scenario.vertex_env())
    assert verdicts(report) == {
        "config": "ok",
        "credentials": "ok",
        "project": "ok",
        "reachable": "ok",
        "model:main": "ok",
        "model:small-fast": "ok",
    }
    assert report.exit_code == 0
    assert SA_EMAIL in check(report, "credentials").message
    main = check(report, "model:main")
    assert main.details["probe"] == "count-tokens" and main.details["region"] == "us-east5"
    # The probes counted tokens; no message was sent.
    paths = [r.path for r in scenario.emulator.state.requests if "/publishers/" in r.path]
    assert paths and all(p.endswith("count-tokens:rawPredict") for p in paths)


def test_vertex_global_counts_tokens_or_sends_one_token(scenario: Scenario) -> None:
    report = scenario.doctor(scenario.vertex_env(CLOUD_ML_REGION="global"))
    assert report.exit_code == 0, verdicts(report)
    main = check(report, "model:main")
    # The emulator refuses count-tokens at global as Vertex reportedly does: doctor falls back.
    assert main.details["probe"] == "rawPredict max_tokens=1"
    sent = [r.json for r in scenario.emulator.state.requests if r.path.endswith(":rawPredict")]
    assert all(body.get("max_tokens", 1) == 1 for body in sent)


def test_model_not_enabled_in_model_garden(make_scenario: Callable[..., Scenario]) -> None:
    scenario = make_scenario(disabled_models={PROJECT: ["claude-sonnet-4-6"]})
    report = scenario.doctor(scenario.vertex_env())
    main = check(report, "model:main")
    assert main.verdict is Verdict.FAIL and main.cause == "not-enabled"
    assert "Model Garden" in main.message and PROJECT in main.message
    assert "model-garden" in main.fix
    assert check(report, "model:small-fast").verdict is Verdict.OK
    assert report.exit_code == 1


def test_model_not_offered_in_region(scenario: Scenario) -> None:
    env = scenario.vertex_env(CLOUD_ML_REGION="asia-southeast1", ANTHROPIC_MODEL="claude-opus-4-1")
    report = scenario.doctor(env)
    main = check(report, "model:main")
    assert main.cause == "not-in-region", main.message
    assert "asia-southeast1" in main.message and "us-east5" in main.message
    assert "VERTEX_REGION_CLAUDE_4_1_OPUS=us-east5" in main.fix


def test_model_not_on_the_global_endpoint(scenario: Scenario) -> None:
    env = scenario.vertex_env(
        CLOUD_ML_REGION="global", ANTHROPIC_SMALL_FAST_MODEL="claude-3-5-haiku@20241022"
    )
    report = scenario.doctor(env)
    small = check(report, "model:small-fast")
    assert small.cause == "global-unsupported", small.message
    assert "global endpoint" in small.message
    # The exact variable Claude Code reads for this model, and models that do support global.
    assert "export VERTEX_REGION_CLAUDE_3_5_HAIKU=us-east5" in small.fix
    assert "claude-haiku-4-5@20251001" in small.fix
    assert check(report, "model:main").verdict is Verdict.OK


def test_quota_exhausted_names_the_quota(make_scenario: Callable[..., Scenario]) -> None:
    scenario = make_scenario(faults=[Fault("rate_limit", platform="vertex", model="claude-sonnet-4-6")])
    report = scenario.doctor(scenario.vertex_env())
    main = check(report, "model:main")
    assert main.cause == "quota"
    assert main.details["quota"] == "online_prediction_requests_per_base_model"
    assert "online_prediction_requests_per_base_model" in main.message
    assert "CLOUD_ML_REGION=global" in main.fix and "quota increase" in main.fix


def test_missing_permission_names_role_and_member(make_scenario: Callable[..., Scenario]) -> None:
    scenario = make_scenario(projects=["some-other-project"])
    report = scenario.doctor(scenario.vertex_env())
    main = check(report, "model:main")
    assert main.cause == "permission-denied"
    assert "aiplatform.endpoints.predict" in main.message and SA_EMAIL in main.message
    assert f"--member=serviceAccount:{SA_EMAIL}" in main.fix and "roles/aiplatform.user" in main.fix


def test_api_not_enabled(make_scenario: Callable[..., Scenario]) -> None:
    scenario = make_scenario(api_disabled_projects=[PROJECT])
    report = scenario.doctor(scenario.vertex_env())
    main = check(report, "model:main")
    assert main.cause == "api-disabled"
    assert f"gcloud services enable aiplatform.googleapis.com --project {PROJECT}" in main.fix


def test_no_google_credentials_stops_the_probes(scenario: Scenario) -> None:
    env = scenario.vertex_env()
    del env["GOOGLE_APPLICATION_CREDENTIALS"]
    report = scenario.doctor(env)
    creds = check(report, "credentials")
    assert creds.verdict is Verdict.FAIL and creds.cause == "no-credentials"
    assert "gcloud auth application-default login" in creds.fix
    assert check(report, "model:main").verdict is Verdict.SKIPPED
    assert "credentials" in check(report, "model:main").message
    assert report.exit_code == 1


def test_credentials_the_token_endpoint_refuses(make_scenario: Callable[..., Scenario]) -> None:
    scenario = make_scenario()
    scenario.emulator.state.keys._parsed.clear()  # the key was deleted on Google's side
    report = scenario.doctor(scenario.vertex_env())
    creds = check(report, "credentials")
    assert creds.verdict is Verdict.FAIL and creds.cause == "token-refused"


def test_no_project(scenario: Scenario) -> None:
    env = scenario.vertex_env(CLAUDE_CODE_SKIP_VERTEX_AUTH="1", ANTHROPIC_AUTH_TOKEN="gateway-key")
    del env["ANTHROPIC_VERTEX_PROJECT_ID"], env["GOOGLE_APPLICATION_CREDENTIALS"]
    report = scenario.doctor(env)
    project = check(report, "project")
    assert project.verdict is Verdict.FAIL and project.cause == "no-project"
    assert "ANTHROPIC_VERTEX_PROJECT_ID" in project.fix
    assert check(report, "model:main").verdict is Verdict.SKIPPED


def test_wrong_region_value(scenario: Scenario) -> None:
    report = scenario.doctor(scenario.vertex_env(CLOUD_ML_REGION="us-east-5"))
    config = check(report, "config")
    assert config.verdict is Verdict.WARN and "did you mean `us-east5`" in config.message
    main = check(report, "model:main")
    assert main.cause == "wrong-region" and "`us-east-5` is not a Vertex AI location" in main.message
    assert "us-east5" in main.fix


def test_region_value_claude_code_ignores(scenario: Scenario) -> None:
    report = scenario.doctor(scenario.vertex_env(CLOUD_ML_REGION="projects/p/locations/us-east5"))
    config = check(report, "config")
    assert config.verdict is Verdict.WARN
    assert "CLOUD_ML_REGION" in config.message and "ignores it" in config.message
    assert report.exit_code == 0  # Claude Code falls back to us-east5, which works


def test_extra_model_is_probed_too(scenario: Scenario) -> None:
    report = scenario.doctor(scenario.vertex_env(), "claude-opus-4-1")
    extra = check(report, "model:claude-opus-4-1")
    assert extra.verdict is Verdict.OK and extra.details["platform_id"] == "claude-opus-4-1@20250805"


def test_unreachable_base_url_skips_the_probes(scenario: Scenario) -> None:
    report = scenario.doctor(scenario.vertex_env(ANTHROPIC_VERTEX_BASE_URL="http://127.0.0.1:9/v1"))
    reach = check(report, "reachable")
    assert reach.verdict is Verdict.FAIL and reach.cause == "refused"
    assert check(report, "model:main").verdict is Verdict.SKIPPED


# ---------------------------------------------------------------------------------------------
# Bedrock


def test_bedrock_all_green(scenario: Scenario) -> None:
    report = scenario.doctor(scenario.bedrock_env())
    assert report.exit_code == 0, [(c.id, c.message) for c in report.checks]
    assert "AKIA" in check(report, "credentials").message
    assert check(report, "project").verdict is Verdict.SKIPPED
    assert check(report, "model:main").details["platform_id"].startswith("us.anthropic.")


def test_bedrock_model_access_denied(make_scenario: Callable[..., Scenario]) -> None:
    scenario = make_scenario(bedrock_denied_models=["claude-sonnet-4-6"])
    report = scenario.doctor(scenario.bedrock_env())
    main = check(report, "model:main")
    assert main.cause == "model-access"
    assert "Model access" in main.fix and "us-east-1" in main.fix


def test_bedrock_inference_profile_required(scenario: Scenario) -> None:
    env = scenario.bedrock_env(ANTHROPIC_MODEL="anthropic.claude-sonnet-4-5-20250929-v1:0")
    report = scenario.doctor(env)
    main = check(report, "model:main")
    assert main.cause == "inference-profile-required"
    assert "`us.anthropic.claude-sonnet-4-5-20250929-v1:0`" in main.fix


def test_bedrock_throttling(make_scenario: Callable[..., Scenario]) -> None:
    scenario = make_scenario(faults=[Fault("rate_limit", platform="bedrock")])
    main = check(scenario.doctor(scenario.bedrock_env()), "model:main")
    assert main.cause == "quota" and "Service Quotas" in main.fix


def test_bedrock_model_not_in_region(make_scenario: Callable[..., Scenario]) -> None:
    scenario = make_scenario(faults=[Fault("not_found", platform="bedrock", location="eu-west-3")])
    main = check(scenario.doctor(scenario.bedrock_env(AWS_REGION="eu-west-3")), "model:main")
    assert main.cause == "not-in-region" and "eu-west-3" in main.message


def test_bedrock_no_credentials(scenario: Scenario) -> None:
    env = scenario.bedrock_env()
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    report = scenario.doctor(env)
    creds = check(report, "credentials")
    assert creds.cause == "no-credentials" and "aws configure" in creds.fix
    assert check(report, "model:main").verdict is Verdict.SKIPPED


def test_bedrock_credentials_rejected(scenario: Scenario) -> None:
    main = check(scenario.doctor(scenario.bedrock_env(AWS_SECRET_ACCESS_KEY="wrong")), "model:main")
    assert main.cause == "credentials-rejected"


def test_bedrock_wrong_region_value(scenario: Scenario) -> None:
    config = check(scenario.doctor(scenario.bedrock_env(AWS_REGION="us-east-7")), "config")
    assert config.verdict is Verdict.WARN and "`us-east-7` is not an AWS region" in config.message


# ---------------------------------------------------------------------------------------------
# The Anthropic API


def test_anthropic_all_green_and_bad_key(scenario: Scenario) -> None:
    report = scenario.doctor(scenario.anthropic_env())
    assert report.exit_code == 0, [(c.id, c.message) for c in report.checks]
    bad = scenario.doctor(scenario.anthropic_env(ANTHROPIC_API_KEY="sk-ant-wrong-0000000000"))
    assert check(bad, "model:main").cause == "credentials-rejected"


def test_anthropic_api_key_helper(scenario: Scenario) -> None:
    env = scenario.anthropic_env()
    key = env.pop("ANTHROPIC_API_KEY")
    settings = scenario.tmp / ".claude"
    settings.mkdir()
    (settings / "settings.json").write_text(f'{{"apiKeyHelper": "echo {key}"}}')
    report = scenario.doctor(env)
    assert "apiKeyHelper" in check(report, "credentials").message
    assert report.exit_code == 0, [(c.id, c.message) for c in report.checks]


def test_metadata_server_credentials_and_project_from_them(scenario: Scenario) -> None:
    host = scenario.url.removeprefix("http://")
    env = scenario.vertex_env(GCE_METADATA_HOST=host, GCE_METADATA_IP=host)
    del env["GOOGLE_APPLICATION_CREDENTIALS"], env["ANTHROPIC_VERTEX_PROJECT_ID"]
    report = scenario.doctor(env)
    creds = check(report, "credentials")
    assert creds.verdict is Verdict.OK, creds.message
    assert "metadata server's service account" in creds.message
    assert "cloudgate-test@emulated-project.iam.gserviceaccount.com" in creds.message
    # No project configured: the SDK would take the metadata server's; doctor says to set it.
    project = check(report, "project")
    assert project.verdict is Verdict.WARN and "ANTHROPIC_VERTEX_PROJECT_ID=emulated-project" in project.fix
    assert check(report, "model:main").verdict is Verdict.OK
