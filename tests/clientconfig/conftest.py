"""A machine with no Claude Code configuration: empty home, project and managed-settings path."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cloudgate.clientconfig import ResolvedConfig, resolve


@dataclass
class Machine:
    """Paths for the five settings files, and `resolve()` bound to them."""

    home: Path
    project: Path
    managed: Path

    @property
    def user_file(self) -> Path:
        return self.home / ".claude" / "settings.json"

    @property
    def project_file(self) -> Path:
        return self.project / ".claude" / "settings.json"

    @property
    def local_file(self) -> Path:
        return self.project / ".claude" / "settings.local.json"

    def write(self, path: Path, doc: Mapping[str, Any]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
        return path

    def resolve(self, env: Mapping[str, str] | None = None, **kwargs: Any) -> ResolvedConfig:
        return resolve(dict(env or {}), cwd=self.project, home=self.home, managed_file=self.managed, **kwargs)


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    (tmp_path / "home").mkdir()
    (tmp_path / "project").mkdir()
    return Machine(tmp_path / "home", tmp_path / "project", tmp_path / "etc" / "managed-settings.json")
