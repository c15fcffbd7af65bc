"""Claude Code's environment variables, with the meaning its documentation gives them."""

from __future__ import annotations

import json
from collections.abc import Mapping

# Model-id prefix -> the VERTEX_REGION_* variable Claude Code reads for it. Longer prefixes
# come first, so the first match is the most specific one.
VERTEX_REGION_TABLE: tuple[tuple[str, str], ...] = (
    ("claude-haiku-4-5", "VERTEX_REGION_CLAUDE_HAIKU_4_5"),
    ("claude-3-5-haiku", "VERTEX_REGION_CLAUDE_3_5_HAIKU"),
    ("claude-3-5-sonnet", "VERTEX_REGION_CLAUDE_3_5_SONNET"),
    ("claude-3-7-sonnet", "VERTEX_REGION_CLAUDE_3_7_SONNET"),
    ("claude-opus-4-1", "VERTEX_REGION_CLAUDE_4_1_OPUS"),
    ("claude-opus-4-5", "VERTEX_REGION_CLAUDE_4_5_OPUS"),
    ("claude-opus-4-6", "VERTEX_REGION_CLAUDE_4_6_OPUS"),
    ("claude-opus-4-7", "VERTEX_REGION_CLAUDE_4_7_OPUS"),
    ("claude-opus-4-8", "VERTEX_REGION_CLAUDE_4_8_OPUS"),
    ("claude-opus-4", "VERTEX_REGION_CLAUDE_4_0_OPUS"),
    ("claude-sonnet-4-5", "VERTEX_REGION_CLAUDE_4_5_SONNET"),
    ("claude-sonnet-4-6", "VERTEX_REGION_CLAUDE_4_6_SONNET"),
    ("claude-sonnet-4", "VERTEX_REGION_CLAUDE_4_0_SONNET"),
    ("claude-sonnet-5", "VERTEX_REGION_CLAUDE_5_SONNET"),
    ("claude-opus-5", "VERTEX_REGION_CLAUDE_5_OPUS"),
)


def valid_region_value(value: str | None) -> bool:
    """Claude Code ignores region values containing `/`, `.` or spaces (and empty ones)."""
    return bool(value) and not any(c in value for c in "/. ")  # type: ignore[operator]


def vertex_region_env_var(model: str) -> str | None:
    """The VERTEX_REGION_* variable that applies to `model`, first matching prefix wins."""
    for prefix, var in VERTEX_REGION_TABLE:
        if model.startswith(prefix):
            return var
    return None


def region_overrides_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """The VERTEX_REGION_* variables that are set (and valid), keyed by model-id prefix."""
    overrides: dict[str, str] = {}
    for prefix, var in VERTEX_REGION_TABLE:
        value = env.get(var, "").strip()
        if valid_region_value(value):
            overrides[prefix] = value
    return overrides


def resolve_vertex_region(model: str, default_region: str, overrides: Mapping[str, str]) -> str:
    """The region for `model`, as Claude Code decides it.

    The first row of the table whose prefix matches decides which override applies, and only
    that one: `claude-opus-4-1` reads VERTEX_REGION_CLAUDE_4_1_OPUS and never falls back to
    VERTEX_REGION_CLAUDE_4_0_OPUS. Prefixes outside the table (settings-file additions such as
    `claude-3-haiku`) apply to models the table does not cover, longest prefix first.
    """
    for prefix, _var in VERTEX_REGION_TABLE:
        if model.startswith(prefix):
            return overrides.get(prefix, default_region)
    best: str | None = None
    for prefix in overrides:
        if (
            prefix not in _TABLE_PREFIXES
            and model.startswith(prefix)
            and (best is None or len(prefix) > len(best))
        ):
            best = prefix
    return overrides[best] if best is not None else default_region


_TABLE_PREFIXES = frozenset(prefix for prefix, _ in VERTEX_REGION_TABLE)


def project_from_credentials_file(path: str | None) -> str | None:
    """The `project_id` (or `quota_project_id`) written in a Google credentials file."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    for key in ("project_id", "quota_project_id"):
        value = doc.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def resolve_vertex_project(env: Mapping[str, str], configured: str | None = None) -> str | None:
    """Project id in Claude Code's order of precedence.

    `GCLOUD_PROJECT`, `GOOGLE_CLOUD_PROJECT`, the project in `GOOGLE_APPLICATION_CREDENTIALS`,
    then `ANTHROPIC_VERTEX_PROJECT_ID`; the settings file's value comes last, and after that
    google-auth's Application Default Credentials may still supply one.
    """
    for var in ("GCLOUD_PROJECT", "GOOGLE_CLOUD_PROJECT"):
        if env.get(var):
            return env[var]
    from_file = project_from_credentials_file(env.get("GOOGLE_APPLICATION_CREDENTIALS"))
    if from_file:
        return from_file
    if env.get("ANTHROPIC_VERTEX_PROJECT_ID"):
        return env["ANTHROPIC_VERTEX_PROJECT_ID"]
    return configured


def truthy(value: str | None) -> bool:
    """Claude Code's reading of a boolean variable: 1, true, yes, on."""
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


# The variable that moves each platform's endpoint (to a gateway, a proxy, the emulator).
BASE_URL_VARS: dict[str, str] = {
    "anthropic": "ANTHROPIC_BASE_URL",
    "vertex": "ANTHROPIC_VERTEX_BASE_URL",
    "bedrock": "ANTHROPIC_BEDROCK_BASE_URL",
}


def platform_from_env(env: Mapping[str, str]) -> str:
    """The platform Claude Code uses: Bedrock is tested first, so it wins when both are set."""
    if truthy(env.get("CLAUDE_CODE_USE_BEDROCK")):
        return "bedrock"
    if truthy(env.get("CLAUDE_CODE_USE_VERTEX")):
        return "vertex"
    return "anthropic"


def parse_custom_headers(value: str) -> dict[str, str]:
    """`ANTHROPIC_CUSTOM_HEADERS`: one `Name: Value` per line; lines without a colon are ignored."""
    headers: dict[str, str] = {}
    for line in value.splitlines():
        name, sep, rest = line.partition(":")
        if sep and name.strip():
            headers[name.strip()] = rest.strip()
    return headers
