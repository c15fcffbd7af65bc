import pytest

from cloudgate.config import ConfigError, load_settings


def test_defaults_without_file_or_env():
    s = load_settings(env={})
    assert s.vertex.region == "us-east5"
    assert s.vertex.anthropic_version == "vertex-2023-10-16"
    assert s.gateway.host == "127.0.0.1" and s.gateway.keys == []


def test_yaml_then_environment(tmp_path):
    path = tmp_path / "cloudgate.yaml"
    path.write_text(
        "gateway:\n  port: 9000\n  keys: [k1]\nvertex:\n  region: europe-west1\n  project_id: p-file\n"
        "  region_overrides:\n    claude-3-5-haiku: us-east5\n"
    )
    s = load_settings(path, env={})
    assert (s.gateway.port, s.gateway.keys, s.vertex.region, s.vertex.project_id) == (
        9000,
        ["k1"],
        "europe-west1",
        "p-file",
    )
    s = load_settings(
        path,
        env={
            "CLOUD_ML_REGION": "global",
            "ANTHROPIC_VERTEX_PROJECT_ID": "p-env",
            "VERTEX_REGION_CLAUDE_4_0_OPUS": "europe-west1",
            "CLOUDGATE_KEYS": "a, b",
            "DISABLE_PROMPT_CACHING_HAIKU": "1",
            "ENABLE_PROMPT_CACHING_1H": "true",
            "ANTHROPIC_DEFAULT_SONNET_MODEL": "claude-sonnet-4-5@20250929",
            "ANTHROPIC_MODEL": "opus",
        },
    )
    assert s.vertex.region == "global"
    assert s.vertex.project_id == "p-env"
    assert s.vertex.region_overrides == {"claude-3-5-haiku": "us-east5", "claude-opus-4": "europe-west1"}
    assert s.gateway.keys == ["a", "b"]
    assert s.caching.disable_haiku and s.caching.ttl_1h and not s.caching.disable
    assert s.models.sonnet == "claude-sonnet-4-5@20250929" and s.models.default == "opus"


def test_workers_from_the_environment():
    assert load_settings(env={}).gateway.workers == 1
    assert load_settings(env={"CLOUDGATE_WORKERS": "4"}).gateway.workers == 4
    with pytest.raises(ConfigError, match=r"gateway\.workers"):
        load_settings(env={"CLOUDGATE_WORKERS": "0"})


def test_flags_override_everything(tmp_path):
    s = load_settings(env={"CLOUDGATE_PORT": "1234"}, overrides={"gateway": {"port": 4321}})
    assert s.gateway.port == 4321


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("gateway: [1, 2]\n", "'gateway' must be a mapping"),
        ("gateway:\n  port: lots\n", "gateway.port"),
        ("gateway:\n  colour: blue\n", "gateway.colour"),
        ("vertex:\n  region: us.east\n", "vertex.region"),
        ("- just\n- a list\n", "mapping at the top level"),
        ("gateway: {port: [\n", "not valid YAML"),
    ],
)
def test_bad_files_give_readable_errors(tmp_path, text, needle):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as info:
        load_settings(path, env={})
    assert needle in str(info.value)


def test_missing_file_and_bad_region_env(tmp_path):
    with pytest.raises(ConfigError, match="cannot read settings file"):
        load_settings(tmp_path / "nope.yaml", env={})
    with pytest.raises(ConfigError, match="CLOUD_ML_REGION"):
        load_settings(env={"CLOUD_ML_REGION": "us east5"})


def test_opentelemetry_variables_configure_traces():
    settings = load_settings(
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abc, x-team=ml",
            "OTEL_SERVICE_NAME": "gateway-eu",
        }
    )
    t = settings.telemetry
    assert t.otlp_endpoint == "http://collector:4318"
    assert t.otlp_headers == {"authorization": "Bearer abc", "x-team": "ml"}
    assert t.service_name == "gateway-eu"
    traces_only = load_settings(env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/v1/traces"})
    assert traces_only.telemetry.otlp_endpoint == "http://t:4318/v1/traces"


def test_governance_from_the_environment():
    assert load_settings(env={}).governance is True
    assert load_settings(env={"CLOUDGATE_GOVERNANCE": "false"}).governance is False
    assert load_settings(env={"CLOUDGATE_GOVERNANCE": "1"}).governance is True
