"""Run code that reads the real process environment (the CLI) on a machine without Claude Code
configuration: a fresh HOME, CLAUDE_CONFIG_DIR and project directory, and none of the
variables Claude Code reads left over from the caller's shell."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloudgate.clientconfig.resolve import is_claude_code_variable


@dataclass
class ClaudeHome:
    """Where the isolated configuration lives."""

    home: Path
    config_dir: Path
    project: Path

    @property
    def user_file(self) -> Path:
        return self.config_dir / "settings.json"

    @property
    def project_file(self) -> Path:
        return self.project / ".claude" / "settings.json"

    def env(self, **extra: str) -> dict[str, str]:
        """An environment for a subprocess: only what it needs to run, plus `extra`."""
        keep = {
            k: v for k, v in os.environ.items() if not is_claude_code_variable(k) and k not in ("HOME", "PWD")
        }
        return {**keep, "HOME": str(self.home), "CLAUDE_CONFIG_DIR": str(self.config_dir), **extra}


def isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ClaudeHome:
    """Point this process at an empty configuration and make the project the working directory."""
    claude = ClaudeHome(tmp_path / "home", tmp_path / "home" / "claude-config", tmp_path / "project")
    for path in (claude.home, claude.config_dir, claude.project):
        path.mkdir(parents=True, exist_ok=True)
    for name in list(os.environ):
        if is_claude_code_variable(name):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(claude.home))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(claude.config_dir))
    monkeypatch.chdir(claude.project)
    return claude
