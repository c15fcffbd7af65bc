"""Claude Code's settings files: where they are, reading them, and writing their `env` object.

Five files, highest precedence first: managed settings, the `--settings` file, the project's
`.claude/settings.local.json`, the project's `.claude/settings.json`, the user's
`~/.claude/settings.json` (`$CLAUDE_CONFIG_DIR/settings.json` when that is set).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Scope names, highest precedence first.
MANAGED, FLAG, LOCAL, PROJECT, USER = "managed", "flag", "local", "project", "user"
SCOPES: tuple[str, ...] = (MANAGED, FLAG, LOCAL, PROJECT, USER)


class SettingsFileError(ValueError):
    """A settings file cannot be read or written as asked (bad JSON, wrong shape)."""


@dataclass(slots=True)
class SettingsFile:
    """One settings file as found: `data` is {} when it is missing or unreadable (see `error`)."""

    scope: str
    path: Path | None
    exists: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    inline: bool = False  # `--settings '{...}'`: JSON given on the command line, not a file

    @property
    def label(self) -> str:
        """How a value from this file is attributed: its path, or `--settings` for inline JSON."""
        return "--settings (inline JSON)" if self.inline or self.path is None else str(self.path)

    def env(self) -> tuple[dict[str, str], list[str]]:
        """The file's `env` object as strings, and what is wrong with it (plain sentences)."""
        raw = self.data.get("env")
        if raw is None:
            return {}, []
        if not isinstance(raw, dict):
            return {}, [f"{self.label}: `env` must be an object of variable names to values; ignored"]
        out: dict[str, str] = {}
        problems: list[str] = []
        for name, value in raw.items():
            text = env_value_text(value)
            if text is None:
                problems.append(f"{self.label}: env.{name} must be a string, not {json.dumps(value)}")
            else:
                out[str(name)] = text
        return out, problems


def env_value_text(value: Any) -> str | None:
    """An `env` value as the string the process sees; None for values that are not scalars.

    Numbers and booleans are written out the way JavaScript's String() does, which is what a
    Node process gets when such a value is assigned to process.env.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return None


def managed_settings_path() -> Path:
    """Where Claude Code reads managed (enterprise) settings on this operating system."""
    if sys.platform == "darwin":
        return Path("/Library/Application Support/ClaudeCode/managed-settings.json")
    if sys.platform.startswith("win"):
        return Path(r"C:\ProgramData\ClaudeCode\managed-settings.json")
    return Path("/etc/claude-code/managed-settings.json")


def user_settings_path(env: Mapping[str, str], home: Path | None = None) -> Path:
    """`$CLAUDE_CONFIG_DIR/settings.json`, else `~/.claude/settings.json`."""
    config_dir = env.get("CLAUDE_CONFIG_DIR", "").strip()
    if config_dir:
        return Path(config_dir).expanduser() / "settings.json"
    return (home or Path.home()) / ".claude" / "settings.json"


def project_settings_path(cwd: Path | None = None) -> Path:
    """The project's shared settings: `.claude/settings.json` under `cwd`."""
    return (cwd or Path.cwd()) / ".claude" / "settings.json"


def local_settings_path(cwd: Path | None = None) -> Path:
    """The project's personal settings (not committed): `.claude/settings.local.json` under `cwd`."""
    return (cwd or Path.cwd()) / ".claude" / "settings.local.json"


def read_settings_file(scope: str, path: Path) -> SettingsFile:
    """Read one settings file; a missing file is not an error, bad JSON is reported, not raised."""
    found = SettingsFile(scope=scope, path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return found
    except OSError as exc:
        found.error = f"{path}: cannot be read ({exc.strerror or exc})"
        return found
    found.exists = True
    return _parse_into(found, text)


def _parse_into(found: SettingsFile, text: str) -> SettingsFile:
    try:
        doc = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        found.error = f"{found.label}: not valid JSON ({exc}); its settings are ignored"
        return found
    if not isinstance(doc, dict):
        found.error = f"{found.label}: must hold a JSON object; its settings are ignored"
        return found
    found.data = doc
    return found


def flag_settings(value: Path | str) -> SettingsFile:
    """The `--settings` argument: a file path, or (as Claude Code accepts) a JSON object inline."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        return _parse_into(SettingsFile(scope=FLAG, path=None, exists=True, inline=True), value)
    return read_settings_file(FLAG, Path(value).expanduser())


def settings_layers(
    env: Mapping[str, str],
    *,
    cwd: Path | None = None,
    home: Path | None = None,
    settings_file: Path | str | None = None,
    managed_file: Path | None = None,
) -> list[SettingsFile]:
    """Every settings file Claude Code would consult, highest precedence first."""
    layers = [read_settings_file(MANAGED, managed_file or managed_settings_path())]
    if settings_file is not None:
        flag = flag_settings(settings_file)
        if not flag.exists and flag.error is None:
            flag.error = f"{settings_file}: the --settings file does not exist"
        layers.append(flag)
    layers.append(read_settings_file(LOCAL, local_settings_path(cwd)))
    layers.append(read_settings_file(PROJECT, project_settings_path(cwd)))
    layers.append(read_settings_file(USER, user_settings_path(env, home)))
    return layers


def parse_env_argument(text: str) -> dict[str, str | None]:
    """The JSON object given to `config set ... env`: names to strings, null to remove a variable."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise SettingsFileError(f"the env value is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SettingsFileError("the env value must be a JSON object of variable names to values")
    out: dict[str, str | None] = {}
    for name, value in doc.items():
        if value is None:
            out[name] = None
            continue
        text_value = env_value_text(value)
        if text_value is None:
            raise SettingsFileError(f"env.{name} must be a string (null removes it), not {json.dumps(value)}")
        out[name] = text_value
    return out


def update_settings_file(
    path: Path, *, env: Mapping[str, str | None] | None = None, values: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Merge into a settings file and return what it now holds.

    `env` entries merge into the file's `env` object (None removes a variable); `values` set
    top-level keys. Every other key is kept. Writing the same thing twice changes nothing.
    """
    doc: dict[str, Any] = {}
    if path.exists():
        found = read_settings_file("target", path)
        if found.error:
            raise SettingsFileError(f"{found.error}; fix or remove it first")
        doc = found.data
    if env:
        current = doc.get("env")
        if current is not None and not isinstance(current, dict):
            raise SettingsFileError(f"{path}: `env` is not an object; fix or remove it first")
        merged = dict(current or {})
        for name, value in env.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        doc["env"] = merged
    for key, value in (values or {}).items():
        doc[key] = value
    _write_json(path, doc)
    return doc


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    # Through a temporary file so an interrupted write never leaves half a settings file,
    # which Claude Code would then ignore entirely.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".settings-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
