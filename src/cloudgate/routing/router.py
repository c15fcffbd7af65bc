"""Model names to upstream targets.

A caller may name a model by its Anthropic id, an alias (`opus`, `sonnet`, `haiku`, `default`,
configured ones), any platform's id, and may append `[1m]` to ask for the 1M context window.
The router turns that into a `Target` for the configured upstream: the provider, the upstream's
own id for the model (Vertex `name@date`, Bedrock inference profile, Anthropic id), and where
it applies the region and project.
"""

from __future__ import annotations

from cloudgate.catalog import Catalog
from cloudgate.config.claude_env import resolve_vertex_region
from cloudgate.config.settings import Settings
from cloudgate.protocol.messages import MessagesCall, WireFormat
from cloudgate.providers.base import Target

ONE_M_BETA = "context-1m-2025-08-07"
_ONE_M_SUFFIX = "[1m]"


class Router:
    """Resolves model names and picks the upstream target for each call."""

    def __init__(self, settings: Settings, catalog: Catalog, *, bedrock_region: str | None = None) -> None:
        self._settings = settings
        self._catalog = catalog
        self._vertex_project = settings.vertex.project_id
        self.bedrock_region = bedrock_region or settings.bedrock.region or "us-east-1"
        models = settings.models
        aliases: dict[str, str] = {}
        for family in ("opus", "sonnet", "haiku"):
            target = getattr(models, family) or catalog.family_default(family)
            if target:
                aliases[family] = target
        if models.default:
            aliases["default"] = models.default
        if models.small_fast:
            aliases["small-fast"] = models.small_fast
        aliases.update(models.aliases)
        self._aliases = aliases
        self._cache: dict[str, tuple[str, bool]] = {}

    def resolve_model(self, name: str) -> tuple[str, bool]:
        """The model a name stands for (aliases followed) and whether `[1m]` asked for 1M context."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        wants_1m = False
        model = name.strip()
        for _ in range(8):  # aliases may point at aliases; bounded against cycles
            if model.lower().endswith(_ONE_M_SUFFIX):
                wants_1m = True
                model = model[: -len(_ONE_M_SUFFIX)].strip()
            target = self._aliases.get(model) or self._aliases.get(model.lower())
            if target is None or target == model:
                break
            model = target
        result = (model, wants_1m)
        if len(self._cache) < 4096:
            self._cache[name] = result
        return result

    def route(self, call: MessagesCall) -> Target:
        """The upstream target for `call`; adds the 1M beta when the model name asked for it."""
        model, wants_1m = self.resolve_model(call.model)
        if wants_1m and ONE_M_BETA not in call.betas:
            call.betas.append(ONE_M_BETA)
        provider = self._settings.provider
        if provider == "bedrock":
            profile = self._settings.bedrock.inference_profile
            bedrock_model = self._catalog.bedrock_id(model, self.bedrock_region, profile)
            return Target(provider="bedrock", model=bedrock_model, region=self.bedrock_region)
        if provider == "anthropic":
            return Target(provider="anthropic", model=self._catalog.anthropic_id(model))
        vertex = self._settings.vertex
        vertex_model = self._catalog.vertex_id(model)
        if call.frontdoor is WireFormat.VERTEX and vertex.honor_client_region and call.client_region:
            region = call.client_region
        else:
            region = resolve_vertex_region(vertex_model, vertex.region, vertex.region_overrides)
        # No project here means "the one the credentials name": the provider resolves it.
        return Target(provider="vertex", model=vertex_model, region=region, project=self._vertex_project)

    def family(self, model: str) -> str:
        """`opus`, `sonnet`, `haiku` or '' for a resolved model name."""
        entry = self._catalog.lookup(model)
        if entry is not None:
            return entry.family
        for family in ("opus", "sonnet", "haiku"):
            if family in model:
                return family
        return ""
