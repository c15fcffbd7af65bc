"""Building `Settings` from defaults, a YAML file and the environment (in that order)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml
from pydantic import ValidationError

from cloudgate.config.claude_env import (
    region_overrides_from_env,
    resolve_vertex_project,
    truthy,
    valid_region_value,
)
from cloudgate.config.settings import Settings

DEFAULT_CONFIG_NAMES = ("cloudgate.yaml", "cloudgate.yml")


class ConfigError(ValueError):
    """The settings file or an environment variable holds something unusable."""


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings from `path` (or $CLOUDGATE_CONFIG, or ./cloudgate.yaml), then the environment.

    `overrides` is a nested mapping applied last (command-line flags use it).
    """
    env = os.environ if env is None else env
    data = _read_file(_find_file(path, env))
    _apply_env(data, env)
    if overrides:
        _deep_merge(data, overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"{where}: {err['msg']}")
        raise ConfigError("invalid settings:\n  " + "\n  ".join(lines)) from None


def _find_file(path: str | Path | None, env: Mapping[str, str]) -> Path | None:
    if path is not None:
        return Path(path)
    if env.get("CLOUDGATE_CONFIG"):
        return Path(env["CLOUDGATE_CONFIG"])
    for name in DEFAULT_CONFIG_NAMES:
        if Path(name).is_file():
            return Path(name)
    return None


def _read_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    section = data.setdefault(name, {})
    if not isinstance(section, dict):
        raise ConfigError(f"settings: '{name}' must be a mapping")
    return section


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    gateway = _section(data, "gateway")
    vertex = _section(data, "vertex")
    bedrock = _section(data, "bedrock")
    anthropic = _section(data, "anthropic")
    models = _section(data, "models")
    caching = _section(data, "caching")

    # cloudgate's own variables.
    for var, key in (("CLOUDGATE_HOST", "host"), ("CLOUDGATE_AUTH_HEADER", "auth_header")):
        if env.get(var):
            gateway[key] = env[var]
    if env.get("CLOUDGATE_PORT"):
        gateway["port"] = env["CLOUDGATE_PORT"]
    if env.get("CLOUDGATE_WORKERS"):
        gateway["workers"] = env["CLOUDGATE_WORKERS"]
    if env.get("CLOUDGATE_KEYS"):
        gateway["keys"] = [k for k in env["CLOUDGATE_KEYS"].split(",") if k.strip()]
    if "CLOUDGATE_ALLOW_KEYLESS" in env:
        gateway["allow_keyless"] = truthy(env["CLOUDGATE_ALLOW_KEYLESS"])
    if "CLOUDGATE_GOVERNANCE" in env:
        data["governance"] = truthy(env["CLOUDGATE_GOVERNANCE"])
    if env.get("CLOUDGATE_LOG_LEVEL"):
        data["log_level"] = env["CLOUDGATE_LOG_LEVEL"]
    if env.get("CLOUDGATE_CATALOG_FILE"):
        data["catalog_file"] = env["CLOUDGATE_CATALOG_FILE"]
    if env.get("CLOUDGATE_VERTEX_BASE_URL"):
        vertex["base_url"] = env["CLOUDGATE_VERTEX_BASE_URL"]
    if env.get("CLOUDGATE_VERTEX_ACCESS_TOKEN"):
        vertex["access_token"] = env["CLOUDGATE_VERTEX_ACCESS_TOKEN"]
    store = _section(data, "store")
    if env.get("CLOUDGATE_DATABASE_URL"):
        store["url"] = env["CLOUDGATE_DATABASE_URL"]
    for var, key in (
        ("CLOUDGATE_REDIS_URL", "redis_url"),
        ("CLOUDGATE_ADMIN_KEY", "admin_key"),
        ("CLOUDGATE_DATA_DIR", "data_dir"),
    ):
        if env.get(var):
            data[key] = env[var]
    if env.get("CLOUDGATE_PROVIDER"):
        data["provider"] = env["CLOUDGATE_PROVIDER"]
    _apply_otel_env(_section(data, "telemetry"), env)
    if env.get("CLOUDGATE_BEDROCK_BASE_URL"):
        bedrock["base_url"] = env["CLOUDGATE_BEDROCK_BASE_URL"]
    if env.get("CLOUDGATE_ANTHROPIC_BASE_URL"):
        anthropic["base_url"] = env["CLOUDGATE_ANTHROPIC_BASE_URL"]
    if env.get("CLOUDGATE_ANTHROPIC_API_KEY"):
        anthropic["api_key"] = env["CLOUDGATE_ANTHROPIC_API_KEY"]

    # Claude Code's variables, with their documented meaning.
    region = env.get("CLOUD_ML_REGION", "").strip()
    if region:
        if not valid_region_value(region):
            raise ConfigError(f"CLOUD_ML_REGION={region!r} is not a Vertex location")
        vertex["region"] = region
    from_env = region_overrides_from_env(env)
    if from_env:
        merged = dict(vertex.get("region_overrides") or {})
        merged.update(from_env)
        vertex["region_overrides"] = merged
    project = resolve_vertex_project(env, vertex.get("project_id"))
    if project:
        vertex["project_id"] = project
    if env.get("GOOGLE_APPLICATION_CREDENTIALS"):
        vertex["credentials_file"] = env["GOOGLE_APPLICATION_CREDENTIALS"]

    # AWS: the region chain Claude Code uses; botocore reads credentials and profiles itself.
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if env.get(var):
            bedrock["region"] = env[var]
            break
    if env.get("AWS_PROFILE"):
        bedrock["profile"] = env["AWS_PROFILE"]
    if env.get("AWS_BEARER_TOKEN_BEDROCK"):
        bedrock["api_key"] = env["AWS_BEARER_TOKEN_BEDROCK"]
    if env.get("CLAUDE_CODE_API_KEY_HELPER_TTL_MS"):
        anthropic["api_key_helper_ttl_ms"] = env["CLAUDE_CODE_API_KEY_HELPER_TTL_MS"]

    for var, key in (
        ("ANTHROPIC_MODEL", "default"),
        ("ANTHROPIC_SMALL_FAST_MODEL", "small_fast"),
        ("ANTHROPIC_DEFAULT_OPUS_MODEL", "opus"),
        ("ANTHROPIC_DEFAULT_SONNET_MODEL", "sonnet"),
        ("ANTHROPIC_DEFAULT_HAIKU_MODEL", "haiku"),
    ):
        if env.get(var):
            models[key] = env[var]

    for var, key in (
        ("DISABLE_PROMPT_CACHING", "disable"),
        ("DISABLE_PROMPT_CACHING_OPUS", "disable_opus"),
        ("DISABLE_PROMPT_CACHING_SONNET", "disable_sonnet"),
        ("DISABLE_PROMPT_CACHING_HAIKU", "disable_haiku"),
        ("ENABLE_PROMPT_CACHING_1H", "ttl_1h"),
    ):
        if var in env:
            caching[key] = truthy(env[var])


def _apply_otel_env(telemetry: dict[str, Any], env: Mapping[str, str]) -> None:
    """OpenTelemetry's standard variables: OTLP endpoint, headers (`k=v,k=v`), service name."""
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint:
        telemetry["otlp_endpoint"] = endpoint
    headers = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS")
    if headers:
        pairs = (item.partition("=") for item in headers.split(",") if "=" in item)
        telemetry["otlp_headers"] = {k.strip(): unquote(v.strip()) for k, _, v in pairs}
    if env.get("OTEL_SERVICE_NAME"):
        telemetry["service_name"] = env["OTEL_SERVICE_NAME"]


def _deep_merge(into: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value
