"""Loading and querying the model catalog (`models.yaml`).

Lookups accept any spelling a client may send: the Anthropic id, an alias, the Vertex id
(`claude-sonnet-4-5@20250929`), the Bedrock id with or without an inference-profile prefix
(`us.anthropic.claude-...-v1:0`). Ids the catalog does not know are never rejected: they pass
through, converted by the platforms' naming rules where those are unambiguous.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

_DATED_ANTHROPIC_ID = re.compile(r"^(claude-[a-z0-9-]+?)-(\d{8})$")
_BEDROCK_PROFILE_PREFIX = re.compile(r"^(?:global|us|eu|apac|jp|au|us-gov|ca)\.")
_BEDROCK_VERSION_SUFFIX = re.compile(r"-v\d+(?::\d+)?$")


@dataclass(slots=True, frozen=True)
class Prices:
    """List prices in USD per million tokens; None where the model has no such rate."""

    input: float
    output: float
    cache_write_5m: float | None = None
    cache_write_1h: float | None = None
    cache_read: float | None = None


@dataclass(slots=True, frozen=True)
class LongContext:
    """The beta that opens the 1M window and the rates once input passes `threshold`."""

    beta: str
    threshold: int
    input: float
    output: float


@dataclass(slots=True, frozen=True)
class ModelEntry:
    """One model across the three platforms."""

    id: str
    name: str
    family: str
    vertex: str | None
    bedrock: str | None
    prices: Prices
    aliases: tuple[str, ...] = ()
    vertex_regions: tuple[str, ...] = ()
    vertex_regional_premium: float = 0.0
    bedrock_on_demand: bool = False
    long_context: LongContext | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def offered_on_vertex_in(self, region: str) -> bool:
        """Whether Vertex AI serves this model at `region` (`global`, `us`, `eu` or a region)."""
        return region in self.vertex_regions

    @property
    def supports_vertex_global(self) -> bool:
        """Whether the Vertex global endpoint serves this model."""
        return "global" in self.vertex_regions


class CatalogError(ValueError):
    """The catalog file is malformed."""


class Catalog:
    """An indexed set of `ModelEntry`."""

    def __init__(self, entries: list[ModelEntry], families: dict[str, str] | None = None) -> None:
        self.entries = entries
        self.families = dict(families or {})
        self._by_name: dict[str, ModelEntry] = {}
        for entry in entries:
            names = [entry.id, *entry.aliases]
            if entry.vertex:
                names.append(entry.vertex)
            if entry.bedrock:
                names.append(entry.bedrock)
            for name in names:
                self._by_name.setdefault(name, entry)

    @classmethod
    def from_file(cls, path: str | Path) -> Catalog:
        """Load a catalog from a YAML file."""
        with open(path, encoding="utf-8") as fh:
            return cls.from_data(yaml.safe_load(fh), source=str(path))

    @classmethod
    def from_data(cls, data: Any, *, source: str = "<data>") -> Catalog:
        """Build a catalog from already-parsed YAML data."""
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise CatalogError(f"{source}: expected a mapping with a 'models' list")
        entries = [_entry(raw, source, i) for i, raw in enumerate(data["models"])]
        families = data.get("families") or {}
        if not isinstance(families, dict):
            raise CatalogError(f"{source}: 'families' must map a family name to a model id")
        return cls(entries, {str(k): str(v) for k, v in families.items()})

    def lookup(self, name: str) -> ModelEntry | None:
        """The entry for any spelling of a model id, or None when the catalog does not know it."""
        entry = self._by_name.get(name)
        if entry is not None:
            return entry
        base = _BEDROCK_PROFILE_PREFIX.sub("", name)
        if base != name:
            return self._by_name.get(base)
        return None

    def vertex_id(self, name: str) -> str:
        """The Vertex model id for `name`; unknown ids follow Vertex's `name@date` convention."""
        entry = self.lookup(name)
        if entry is not None and entry.vertex:
            return entry.vertex
        if "@" in name:
            return name
        if name.startswith("arn:"):
            return name
        name = self.anthropic_id(name)  # a Bedrock-form id becomes the Anthropic one first
        match = _DATED_ANTHROPIC_ID.match(name)
        if match:
            return f"{match.group(1)}@{match.group(2)}"
        return name

    def anthropic_id(self, name: str) -> str:
        """The Anthropic API id for `name`; unknown Vertex and Bedrock ids are converted by their
        naming rules (`m@date` -> `m-date`; `us.anthropic.m-v1:0` -> `m`)."""
        entry = self.lookup(name)
        if entry is not None:
            return entry.id
        if "@" in name:
            model, _, date = name.partition("@")
            return f"{model}-{date}" if date else model
        base = _BEDROCK_PROFILE_PREFIX.sub("", name)
        if base.startswith("anthropic."):
            return _BEDROCK_VERSION_SUFFIX.sub("", base[len("anthropic.") :])
        return name

    def bedrock_base_id(self, name: str) -> str:
        """The Bedrock model id without an inference-profile prefix (`anthropic.claude-...`)."""
        entry = self.lookup(name)
        if entry is not None and entry.bedrock:
            return entry.bedrock
        base = _BEDROCK_PROFILE_PREFIX.sub("", name)
        if base.startswith("anthropic."):
            return base
        return "anthropic." + self.anthropic_id(name)

    def bedrock_id(self, name: str, region: str, profile: str = "auto") -> str:
        """The id to invoke on Bedrock: ARNs unchanged, else the base id behind the inference
        profile `profile` ("auto": chosen from `region` as Claude Code does; "none": no prefix)."""
        if name.startswith("arn:"):
            return name
        base = self.bedrock_base_id(name)
        if profile == "none":
            return base
        prefix = bedrock_profile_prefix(region) if profile == "auto" else profile
        return f"{prefix}.{base}"

    def family_default(self, family: str) -> str | None:
        """The model id an alias such as `sonnet` stands for by default."""
        return self.families.get(family)


def bedrock_profile_prefix(region: str) -> str:
    """Claude Code's choice of inference-profile prefix for an AWS region."""
    if region.startswith("us-gov-"):
        return "us-gov"
    if region.startswith("us-"):
        return "us"
    if region.startswith("eu-"):
        return "eu"
    if region.startswith("ap-"):
        return "apac"
    return "global"


def _entry(raw: Any, source: str, index: int) -> ModelEntry:
    where = f"{source}: models[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise CatalogError(f"{where}: each model needs an 'id'")
    prices = raw.get("prices") or {}
    if not isinstance(prices, dict) or "input" not in prices or "output" not in prices:
        raise CatalogError(f"{where} ({raw['id']}): 'prices' needs at least 'input' and 'output'")
    long_context = raw.get("long_context")
    known = {
        "id", "name", "family", "vertex", "bedrock", "aliases", "vertex_regions",
        "vertex_regional_premium", "prices", "long_context", "bedrock_on_demand",
    }  # fmt: skip
    try:
        return ModelEntry(
            id=raw["id"],
            name=str(raw.get("name", raw["id"])),
            family=str(raw.get("family", "")),
            vertex=raw.get("vertex"),
            bedrock=raw.get("bedrock"),
            aliases=tuple(raw.get("aliases") or ()),
            vertex_regions=tuple(raw.get("vertex_regions") or ()),
            vertex_regional_premium=float(raw.get("vertex_regional_premium", 0.0)),
            bedrock_on_demand=bool(raw.get("bedrock_on_demand", False)),
            prices=Prices(
                input=float(prices["input"]),
                output=float(prices["output"]),
                cache_write_5m=_opt_float(prices.get("cache_write_5m")),
                cache_write_1h=_opt_float(prices.get("cache_write_1h")),
                cache_read=_opt_float(prices.get("cache_read")),
            ),
            long_context=LongContext(
                beta=str(long_context["beta"]),
                threshold=int(long_context["threshold"]),
                input=float(long_context["input"]),
                output=float(long_context["output"]),
            )
            if isinstance(long_context, dict)
            else None,
            extra={k: v for k, v in raw.items() if k not in known},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"{where} ({raw['id']}): {exc}") from exc


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@functools.cache
def default_catalog() -> Catalog:
    """The catalog shipped with cloudgate."""
    text = resources.files("cloudgate.catalog").joinpath("models.yaml").read_text(encoding="utf-8")
    return Catalog.from_data(yaml.safe_load(text), source="cloudgate/catalog/models.yaml")
