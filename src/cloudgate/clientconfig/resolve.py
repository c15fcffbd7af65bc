"""What Claude Code would do with this machine's configuration: platform, endpoint, models,
regions, credentials, caching, and what is wrong with it.

The effective variables are the process environment overlaid by each settings file's `env`
object, lowest precedence first (user, project, local, `--settings`, managed), so a settings
file overrides a shell export: see docs/decisions/0025-resolving-like-claude-code.md.
"""

from __future__ import annotations

import configparser
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cloudgate.catalog import Catalog, default_catalog
from cloudgate.clientconfig.settings_files import SettingsFile, settings_layers
from cloudgate.config.claude_env import (
    BASE_URL_VARS,
    VERTEX_REGION_TABLE,
    parse_custom_headers,
    platform_from_env,
    region_overrides_from_env,
    resolve_vertex_project,
    resolve_vertex_region,
    truthy,
    valid_region_value,
    vertex_region_env_var,
)

PLATFORMS = ("anthropic", "vertex", "bedrock")
AUTH_KINDS = (
    "api-key",
    "auth-token",
    "api-key-helper",
    "adc-file",
    "gcloud-user",
    "metadata-server",
    "vertex-skip-auth",
    "bedrock-skip-auth",
    "sigv4-env",
    "sigv4-profile",
    "bedrock-api-key",
    "none",
)
ENVIRONMENT = "environment"
DEFAULT_VERTEX_REGION = "us-east5"
DEFAULT_AWS_REGION = "us-east-1"
ANTHROPIC_API_URL = "https://api.anthropic.com"
ONE_M_SUFFIX = "[1m]"
MODEL_ALIASES = ("opus", "sonnet", "haiku")

# Variables shown and attributed: what Claude Code and the cloud SDKs it embeds read. Settings
# files may set anything, and whatever they set is shown too.
_RELEVANT_PREFIXES = (
    "ANTHROPIC_",
    "CLAUDE_CODE_",
    "VERTEX_REGION_",
    "DISABLE_PROMPT_CACHING",
    "AWS_",
    "GOOGLE_",
)
_RELEVANT_NAMES = frozenset(
    {
        "CLOUD_ML_REGION",
        "GCLOUD_PROJECT",
        "CLOUDSDK_CONFIG",
        "ENABLE_PROMPT_CACHING_1H",
        "CLAUDE_CONFIG_DIR",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "NO_PROXY",
    }
)
_SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL_PROCESS")
# Paths and ids, not secrets, although their names contain a marker.
_NOT_SECRET = frozenset(
    {"GOOGLE_APPLICATION_CREDENTIALS", "AWS_ACCESS_KEY_ID", "CLAUDE_CODE_API_KEY_HELPER_TTL_MS"}
)


@dataclass(slots=True, frozen=True)
class ModelChoice:
    """A model Claude Code would use: its role, the configured name, the id sent to the
    platform, and (Vertex, Bedrock) the region it goes to."""

    role: str  # "main", "small-fast", "opus", "sonnet", "haiku"
    name: str
    platform_id: str
    region: str | None
    one_m: bool = False  # configured with the `[1m]` suffix: the 1M-token context window


@dataclass(slots=True, frozen=True)
class Caching:
    """Claude Code's prompt-caching switches."""

    disabled: bool = False
    disabled_opus: bool = False
    disabled_sonnet: bool = False
    disabled_haiku: bool = False
    ttl_1h: bool = False

    def disabled_for(self, model: str) -> bool:
        """Whether Claude Code sends no `cache_control` for `model`."""
        return self.disabled or any(
            flag and family in model
            for family, flag in (
                ("opus", self.disabled_opus),
                ("sonnet", self.disabled_sonnet),
                ("haiku", self.disabled_haiku),
            )
        )


@dataclass(slots=True)
class ResolvedConfig:
    """Claude Code's configuration as resolved from the environment and its settings files."""

    platform: str
    base_url: str | None  # None: the platform's own endpoint (see `effective_base_url`)
    project: str | None
    region: str | None
    models: list[ModelChoice]
    auth: str
    auth_detail: str | None
    skip_auth: bool
    caching: Caching
    one_m_context: bool
    env: dict[str, str]
    sources: dict[str, str]  # variable (or setting: `model`, `apiKeyHelper`) -> where it came from
    problems: list[str]
    api_key_helper: str | None = None
    api_key_helper_source: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)

    def model(self, role: str = "main") -> ModelChoice:
        """The model of `role` ("main", "small-fast", or an alias that is set)."""
        for choice in self.models:
            if choice.role == role:
                return choice
        raise KeyError(role)

    def source_of(self, var: str) -> str | None:
        """Where the effective value of `var` came from: "environment" or a settings file."""
        return self.sources.get(var)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view with secret values masked."""
        doc = asdict(self)
        doc["env"] = {name: mask_value(name, value) for name, value in sorted(self.env.items())}
        doc["sources"] = dict(sorted(self.sources.items()))
        for model_doc, choice in zip(doc["models"], self.models, strict=True):
            model_doc["endpoint"] = effective_base_url(self.platform, self.base_url, choice.region)
        return doc


def is_secret(name: str) -> bool:
    """Whether the value of variable `name` is a credential that must not be shown."""
    upper = name.upper()
    if upper in _NOT_SECRET:
        return False
    return upper == "ANTHROPIC_CUSTOM_HEADERS" or any(marker in upper for marker in _SECRET_MARKERS)


def mask(secret: str) -> str:
    """A secret shown only by its length class and last characters, enough to tell keys apart."""
    if len(secret) >= 16:
        return f"****{secret[-4:]}"
    return "****" if secret else ""


def mask_value(name: str, value: str) -> str:
    """`value` as it may be displayed: header values and credentials masked."""
    if name.upper() == "ANTHROPIC_CUSTOM_HEADERS":
        return "\n".join(f"{n}: {mask(v)}" for n, v in parse_custom_headers(value).items())
    return mask(value) if is_secret(name) else value


def effective_base_url(platform: str, base_url: str | None, region: str | None) -> str:
    """The URL requests go to: the configured one, else the platform's endpoint for `region`."""
    if base_url:
        return base_url
    if platform == "vertex":
        region = region or DEFAULT_VERTEX_REGION
        if region == "global":
            return "https://aiplatform.googleapis.com/v1"
        if region in ("us", "eu"):
            return f"https://aiplatform.{region}.rep.googleapis.com/v1"
        return f"https://{region}-aiplatform.googleapis.com/v1"
    if platform == "bedrock":
        return f"https://bedrock-runtime.{region or DEFAULT_AWS_REGION}.amazonaws.com"
    return ANTHROPIC_API_URL


def is_claude_code_variable(name: str) -> bool:
    """Whether Claude Code (or a cloud SDK it embeds) reads variable `name`."""
    return name in _RELEVANT_NAMES or name.startswith(_RELEVANT_PREFIXES)


def merge_env(
    process_env: Mapping[str, str], layers: list[SettingsFile]
) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """(effective variables, variable -> source, problems): the environment, then each file's
    `env` from the lowest precedence to the highest, each overriding what came before."""
    env = {name: value for name, value in process_env.items() if is_claude_code_variable(name)}
    sources = dict.fromkeys(env, ENVIRONMENT)
    problems: list[str] = []
    for layer in reversed(layers):
        if layer.error:
            problems.append(layer.error)
            continue
        values, issues = layer.env()
        problems.extend(issues)
        for name, value in values.items():
            env[name] = value
            sources[name] = layer.label
    return env, sources, problems


def top_setting(layers: list[SettingsFile], key: str) -> tuple[str | None, str | None]:
    """(value, file) of a string setting such as `apiKeyHelper`: the highest file setting it wins."""
    for layer in layers:  # highest precedence first
        value = layer.data.get(key) if not layer.error else None
        if isinstance(value, str) and value.strip():
            return value.strip(), layer.label
    return None, None


def resolve(
    env: Mapping[str, str] | None = None,
    *,
    cwd: Path | None = None,
    home: Path | None = None,
    settings_file: Path | str | None = None,
    managed_file: Path | None = None,
    catalog: Catalog | None = None,
) -> ResolvedConfig:
    """Resolve Claude Code's configuration as Claude Code would.

    `env` defaults to the process environment, `cwd` (the project) to the working directory,
    `home` to the user's home; `settings_file` is Claude Code's `--settings` (a path, or a JSON
    object as a string); `managed_file` replaces the operating system's managed-settings path.
    """
    process_env = dict(os.environ if env is None else env)
    home = home or Path(process_env.get("HOME") or Path.home())
    layers = settings_layers(
        process_env, cwd=cwd, home=home, settings_file=settings_file, managed_file=managed_file
    )
    merged, sources, problems = merge_env(process_env, layers)
    helper, helper_source = top_setting(layers, "apiKeyHelper")
    if helper and helper_source:
        sources["apiKeyHelper"] = helper_source
    model_setting, model_source = top_setting(layers, "model")
    if model_setting and model_source:
        sources["model"] = model_source
    return _resolve_merged(
        merged,
        sources,
        problems,
        layers=layers,
        home=home,
        helper=helper,
        helper_source=helper_source,
        model_setting=model_setting,
        catalog=catalog or default_catalog(),
    )


def _resolve_merged(
    env: dict[str, str],
    sources: dict[str, str],
    problems: list[str],
    *,
    layers: list[SettingsFile],
    home: Path,
    helper: str | None,
    helper_source: str | None,
    model_setting: str | None,
    catalog: Catalog,
) -> ResolvedConfig:
    platform = platform_from_env(env)
    if truthy(env.get("CLAUDE_CODE_USE_BEDROCK")) and truthy(env.get("CLAUDE_CODE_USE_VERTEX")):
        problems.append(
            "both CLAUDE_CODE_USE_VERTEX and CLAUDE_CODE_USE_BEDROCK are set: Claude Code uses Bedrock; "
            "unset the one you do not mean"
        )

    base_url_var = BASE_URL_VARS[platform]
    base_url = env.get(base_url_var, "").strip() or None

    project: str | None = None
    region: str | None = None
    if platform == "vertex":
        region = _vertex_region(env, problems)
        project = resolve_vertex_project(env)
        if not project:
            problems.append(
                "Vertex AI is enabled but no project is set: set ANTHROPIC_VERTEX_PROJECT_ID "
                "(or GOOGLE_CLOUD_PROJECT)"
            )
    elif platform == "bedrock":
        region = _aws_region(env, home, problems)

    models = _models(env, model_setting, platform, region, catalog)
    for choice in models:
        if platform == "vertex" and base_url is None:
            _check_vertex_offer(choice, catalog, problems)

    auth, detail, skip = _auth(platform, env, helper, home, problems)
    if skip and base_url is None:
        problems.append(
            f"{'CLAUDE_CODE_SKIP_VERTEX_AUTH' if platform == 'vertex' else 'CLAUDE_CODE_SKIP_BEDROCK_AUTH'}"
            f" is set without {base_url_var}: requests would reach the cloud with no credentials"
        )
    if "ANTHROPIC_CUSTOM_HEADERS" in env:
        bad = [
            line for line in env["ANTHROPIC_CUSTOM_HEADERS"].splitlines() if line.strip() and ":" not in line
        ]
        if bad:
            problems.append("ANTHROPIC_CUSTOM_HEADERS has lines without `Name: Value`, which are ignored")

    caching = Caching(
        disabled=truthy(env.get("DISABLE_PROMPT_CACHING")),
        disabled_opus=truthy(env.get("DISABLE_PROMPT_CACHING_OPUS")),
        disabled_sonnet=truthy(env.get("DISABLE_PROMPT_CACHING_SONNET")),
        disabled_haiku=truthy(env.get("DISABLE_PROMPT_CACHING_HAIKU")),
        ttl_1h=truthy(env.get("ENABLE_PROMPT_CACHING_1H")),
    )
    return ResolvedConfig(
        platform=platform,
        base_url=base_url,
        project=project,
        region=region,
        models=models,
        auth=auth,
        auth_detail=detail,
        skip_auth=skip,
        caching=caching,
        one_m_context=any(m.one_m for m in models),
        env=env,
        sources=sources,
        problems=problems,
        api_key_helper=helper,
        api_key_helper_source=helper_source,
        files=[{"scope": f.scope, "path": f.label, "exists": f.exists, "error": f.error} for f in layers],
    )


def _vertex_region(env: Mapping[str, str], problems: list[str]) -> str:
    value = env.get("CLOUD_ML_REGION", "").strip()
    if value and not valid_region_value(value):
        problems.append(
            f"CLOUD_ML_REGION={value!r} is not a region name (it may not contain '/', '.' or spaces): "
            f"Claude Code ignores it and uses {DEFAULT_VERTEX_REGION}"
        )
        value = ""
    for _prefix, var in VERTEX_REGION_TABLE:
        override = env.get(var, "").strip()
        if override and not valid_region_value(override):
            problems.append(f"{var}={override!r} is not a region name: Claude Code ignores it")
    return value or DEFAULT_VERTEX_REGION


def _aws_region(env: Mapping[str, str], home: Path, problems: list[str]) -> str:
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = env.get(var, "").strip()
        if value:
            if not valid_region_value(value):
                problems.append(f"{var}={value!r} is not an AWS region name")
            return value
    profile = env.get("AWS_PROFILE", "").strip() or "default"
    from_profile = _aws_config(env, home).get(profile, {}).get("region")
    return from_profile or DEFAULT_AWS_REGION


def _aws_config(env: Mapping[str, str], home: Path) -> dict[str, dict[str, str]]:
    """Profiles of the AWS config and credentials files: name -> settings."""
    profiles: dict[str, dict[str, str]] = {}
    files = (
        (env.get("AWS_SHARED_CREDENTIALS_FILE") or str(home / ".aws" / "credentials"), False),
        (env.get("AWS_CONFIG_FILE") or str(home / ".aws" / "config"), True),
    )
    for path, is_config in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(os.path.expanduser(path), encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for section in parser.sections():
            # The config file names its sections `profile NAME` (except `default`).
            name = section[len("profile ") :] if is_config and section.startswith("profile ") else section
            profiles.setdefault(name.strip(), {}).update(parser.items(section))
    return profiles


def split_model_name(value: str) -> tuple[str, bool]:
    """(name, wants the 1M window): strips Claude Code's `[1m]` suffix."""
    value = value.strip()
    if value.lower().endswith(ONE_M_SUFFIX):
        return value[: -len(ONE_M_SUFFIX)].strip(), True
    return value, False


def alias_target(alias: str, env: Mapping[str, str], catalog: Catalog) -> str:
    """What `opus`, `sonnet` or `haiku` stands for: ANTHROPIC_DEFAULT_<ALIAS>_MODEL, else the
    catalog's family default."""
    configured = env.get(f"ANTHROPIC_DEFAULT_{alias.upper()}_MODEL", "").strip()
    return configured or catalog.family_default(alias) or alias


def expand_model(value: str, env: Mapping[str, str], catalog: Catalog) -> tuple[str, bool]:
    """A model setting (name or alias, maybe with `[1m]`) as (model name, wants the 1M window)."""
    name, one_m = split_model_name(value)
    if name.lower() == "default":
        name = "sonnet"
    if name.lower() in MODEL_ALIASES:
        target, target_one_m = split_model_name(alias_target(name.lower(), env, catalog))
        return target, one_m or target_one_m
    return name, one_m


def platform_model_id(name: str, platform: str, region: str | None, catalog: Catalog) -> str:
    """The id `platform` expects for `name`: Vertex `name@date`, a Bedrock inference-profile id
    for the region, or the Anthropic id. Ids already in the platform's form are kept as given."""
    if platform == "vertex":
        return catalog.vertex_id(name)
    if platform == "bedrock":
        # A Bedrock id or ARN chosen by the user names exactly what to invoke (a `global.`
        # profile, an application profile): Claude Code sends it unchanged.
        if name.startswith("arn:") or "anthropic." in name:
            return name
        return catalog.bedrock_id(name, region or DEFAULT_AWS_REGION)
    return catalog.anthropic_id(name)


def choice_for(
    value: str,
    role: str,
    resolved_env: Mapping[str, str],
    platform: str,
    region: str | None,
    catalog: Catalog,
) -> ModelChoice:
    """The ModelChoice for a model setting or a name given on the command line."""
    name, one_m = expand_model(value, resolved_env, catalog)
    model_region = region
    if platform == "bedrock" and role == "small-fast":
        model_region = resolved_env.get("ANTHROPIC_SMALL_FAST_MODEL_AWS_REGION", "").strip() or region
    platform_id = platform_model_id(name, platform, model_region, catalog)
    if platform == "vertex":
        model_region = resolve_vertex_region(
            platform_id, region or DEFAULT_VERTEX_REGION, region_overrides_from_env(resolved_env)
        )
    return ModelChoice(role=role, name=name, platform_id=platform_id, region=model_region, one_m=one_m)


def _models(
    env: Mapping[str, str], model_setting: str | None, platform: str, region: str | None, catalog: Catalog
) -> list[ModelChoice]:
    # ANTHROPIC_MODEL outranks the settings' `model`, which outranks the default (the sonnet alias).
    main = env.get("ANTHROPIC_MODEL", "").strip() or model_setting or "sonnet"
    small = env.get("ANTHROPIC_SMALL_FAST_MODEL", "").strip() or "haiku"
    choices = [
        choice_for(main, "main", env, platform, region, catalog),
        choice_for(small, "small-fast", env, platform, region, catalog),
    ]
    for alias in MODEL_ALIASES:
        if env.get(f"ANTHROPIC_DEFAULT_{alias.upper()}_MODEL", "").strip():
            choices.append(choice_for(alias, alias, env, platform, region, catalog))
    return choices


def _check_vertex_offer(choice: ModelChoice, catalog: Catalog, problems: list[str]) -> None:
    entry = catalog.lookup(choice.platform_id)
    if entry is None or not entry.vertex_regions or choice.region is None:
        return
    if not entry.offered_on_vertex_in(choice.region):
        var = vertex_region_env_var(choice.platform_id) or "CLOUD_ML_REGION"
        where = ", ".join(r for r in entry.vertex_regions if r not in ("us", "eu"))
        problems.append(
            f"{choice.role} model {choice.platform_id} is not offered at Vertex location {choice.region} "
            f"(offered at: {where}): set {var} to one of those"
        )


def gcloud_adc_path(env: Mapping[str, str], home: Path) -> Path:
    """Where `gcloud auth application-default login` writes the user's credentials."""
    config_dir = env.get("CLOUDSDK_CONFIG", "").strip()
    base = Path(config_dir).expanduser() if config_dir else home / ".config" / "gcloud"
    return base / "application_default_credentials.json"


def _credentials_type(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    kind = doc.get("type") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) else None


def _auth(
    platform: str, env: Mapping[str, str], helper: str | None, home: Path, problems: list[str]
) -> tuple[str, str | None, bool]:
    """(auth kind, what it uses without the secret, whether cloud auth is skipped)."""
    bearer = "; sends Authorization: Bearer from ANTHROPIC_AUTH_TOKEN"
    if platform == "vertex":
        if truthy(env.get("CLAUDE_CODE_SKIP_VERTEX_AUTH")):
            extra = bearer if env.get("ANTHROPIC_AUTH_TOKEN") else "; no Authorization header"
            return "vertex-skip-auth", "no Google credentials" + extra, True
        adc = env.get("GOOGLE_APPLICATION_CREDENTIALS", "").strip()
        if adc:
            if not os.path.isfile(os.path.expanduser(adc)):
                problems.append(f"GOOGLE_APPLICATION_CREDENTIALS names {adc}, which does not exist")
            kind = _credentials_type(os.path.expanduser(adc))
            return "adc-file", f"{adc}" + (f" ({kind})" if kind else ""), False
        user_file = gcloud_adc_path(env, home)
        if user_file.is_file():
            return "gcloud-user", str(user_file), False
        return (
            "metadata-server",
            "no credentials file: google-auth asks the GCE metadata server, which exists only on "
            "Google Cloud (elsewhere run `gcloud auth application-default login`)",
            False,
        )
    if platform == "bedrock":
        if truthy(env.get("CLAUDE_CODE_SKIP_BEDROCK_AUTH")):
            return "bedrock-skip-auth", "no AWS credentials, no Authorization header", True
        if env.get("AWS_BEARER_TOKEN_BEDROCK"):
            return "bedrock-api-key", "Authorization: Bearer from AWS_BEARER_TOKEN_BEDROCK", False
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            session = " with AWS_SESSION_TOKEN" if env.get("AWS_SESSION_TOKEN") else ""
            return "sigv4-env", f"access key {env['AWS_ACCESS_KEY_ID']}{session}", False
        profile = env.get("AWS_PROFILE", "").strip()
        if profile:
            return "sigv4-profile", profile, False
        if "default" in _aws_config(env, home):
            return "sigv4-profile", "default", False
        return (
            "none",
            "no AWS credentials in the environment or ~/.aws: only an instance or container role could sign",
            False,
        )
    # The Anthropic API: Claude Code's documented order.
    if env.get("ANTHROPIC_AUTH_TOKEN"):
        return "auth-token", "Authorization: Bearer from ANTHROPIC_AUTH_TOKEN", False
    if env.get("ANTHROPIC_API_KEY"):
        return "api-key", "x-api-key from ANTHROPIC_API_KEY", False
    if helper:
        return "api-key-helper", helper, False
    return "none", "no key: Claude Code would fall back to a claude.ai login", False
