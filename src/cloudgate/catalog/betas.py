"""Per-platform beta tables (`betas.yaml`): which betas an upstream rejects or accepts."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


@dataclass(slots=True, frozen=True)
class RejectedBeta:
    """A beta a platform refuses, the body fields that go with it, and its local name if any."""

    beta: str
    fields: tuple[str, ...] = ()
    replace_with: str | None = None


@dataclass(slots=True, frozen=True)
class PlatformBetas:
    """What one platform does with betas."""

    rejected: dict[str, RejectedBeta]
    accepted: frozenset[str]


class BetaTable:
    """Beta rules for every platform."""

    def __init__(self, platforms: dict[str, PlatformBetas]) -> None:
        self.platforms = platforms

    def for_platform(self, platform: str) -> PlatformBetas:
        """The rules for `platform` (empty rules for one the table does not name)."""
        return self.platforms.get(platform, PlatformBetas({}, frozenset()))

    @classmethod
    def from_data(cls, data: Any, *, source: str = "<data>") -> BetaTable:
        """Build the table from parsed YAML."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a mapping of platform -> rules")
        platforms: dict[str, PlatformBetas] = {}
        for platform, rules in data.items():
            rules = rules or {}
            rejected = {}
            for item in rules.get("rejected") or []:
                entry = RejectedBeta(
                    beta=str(item["beta"]),
                    fields=tuple(item.get("fields") or ()),
                    replace_with=item.get("replace_with"),
                )
                rejected[entry.beta] = entry
            accepted = frozenset(str(b) for b in rules.get("accepted") or [])
            platforms[str(platform)] = PlatformBetas(rejected, accepted)
        return cls(platforms)

    @classmethod
    def from_file(cls, path: str | Path) -> BetaTable:
        """Load the table from a YAML file."""
        with open(path, encoding="utf-8") as fh:
            return cls.from_data(yaml.safe_load(fh), source=str(path))


@functools.cache
def default_betas() -> BetaTable:
    """The beta table shipped with cloudgate."""
    text = resources.files("cloudgate.catalog").joinpath("betas.yaml").read_text(encoding="utf-8")
    return BetaTable.from_data(yaml.safe_load(text), source="cloudgate/catalog/betas.yaml")
