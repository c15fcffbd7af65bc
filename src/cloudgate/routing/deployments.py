"""Deployments: the places a model can run, from the settings file or derived from the catalog.

A deployment is a provider plus a project or account plus a region (and, on Bedrock, an
inference profile), with its own weight, priority, concurrency cap and time limits. Explicit
deployments come from `routing.deployments`; without them each model gets the configured
provider's region (Claude Code's region rules included) and, per `routing.fallback`, the other
locations the catalog lists for it, then the deployments of `routing.fallback_providers`.

Residency: every deployment has a *place*, where the data it is sent may be processed: one
region (`europe-west1`), a geography (Vertex's `eu` multi-region, a Bedrock `eu.` cross-region
profile) or `global`. An allow-list admits a place when it names that region, or the geography
that contains it; `global` and geographies are admitted only by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cloudgate.catalog import Catalog
from cloudgate.catalog.catalog import bedrock_profile_prefix
from cloudgate.config.claude_env import resolve_vertex_region
from cloudgate.config.settings import DeploymentSettings, Settings, TimeoutSettings
from cloudgate.providers.transport import Timeouts

# Region-name prefixes (Google's and AWS's spellings) to the geography they lie in.
_GEOGRAPHY_PREFIXES = (
    ("us-gov-", "us-gov"),
    ("us-", "us"),
    ("northamerica-", "us"),
    ("ca-", "ca"),
    ("europe-", "eu"),
    ("eu-", "eu"),
    ("asia-", "apac"),
    ("australia-", "apac"),
    ("ap-", "apac"),
    ("me-", "me"),
    ("il-", "me"),
    ("southamerica-", "sa"),
    ("sa-", "sa"),
    ("africa-", "af"),
    ("af-", "af"),
)
# Vertex multi-regions and Bedrock profile prefixes that are geographies themselves.
_GEOGRAPHIES = frozenset({"us", "eu", "apac", "jp", "au", "ca", "us-gov", "sa", "me", "af"})
_WIDER = {"jp": "apac", "au": "apac"}  # Japan and Australia profiles stay inside APAC too


def geography(region: str) -> str:
    """The geography a region or location lies in (`us`, `eu`, `apac`, ...; `global` for global)."""
    if region == "global" or region in _GEOGRAPHIES:
        return region
    for prefix, geo in _GEOGRAPHY_PREFIXES:
        if region.startswith(prefix):
            return geo
    return region


@dataclass(slots=True, frozen=True)
class Place:
    """Where a deployment may process data: one region, a geography, or global."""

    name: str
    exact: bool  # a single region, as opposed to a geography or global

    def allowed_by(self, allow: Iterable[str]) -> bool:
        """Whether an allow-list of regions and geographies admits this place."""
        names = allow if isinstance(allow, (set, frozenset)) else set(allow)
        if self.name in names:
            return True
        if self.exact:
            return geography(self.name) in names
        wider = _WIDER.get(self.name)
        return wider is not None and wider in names


@dataclass(slots=True, eq=False)
class Deployment:
    """One provider + project/account + region, and how to use it."""

    name: str
    provider: str  # vertex, bedrock, anthropic
    account: str  # the provider instance (credentials and endpoint) it goes through
    region: str | None = None
    project: str | None = None
    inference_profile: str = "auto"  # Bedrock only
    models: frozenset[str] | None = None  # Anthropic ids; None: what the catalog lists
    model_ids: Mapping[str, str] = field(default_factory=dict)
    priority: int = 0
    weight: float = 1.0
    max_concurrency: int | None = None
    rpm: int | None = None
    timeouts: Timeouts | None = None
    derived: bool = False

    @property
    def place(self) -> Place:
        """Where requests sent here may be processed."""
        if self.provider == "anthropic":
            return Place("global", exact=False)
        region = self.region or "global"
        if self.provider == "bedrock":
            profile = self.inference_profile
            if profile == "auto":
                profile = bedrock_profile_prefix(region)
            if profile != "none":
                return Place(profile, exact=False)
            return Place(region, exact=True)
        if region == "global" or region in _GEOGRAPHIES:
            return Place(region, exact=False)
        return Place(region, exact=True)

    def serves(self, model: str, catalog: Catalog) -> bool:
        """Whether `model` (an Anthropic id) may be sent here."""
        if self.models is not None:
            return model in self.models
        if self.provider != "vertex":
            return True
        entry = catalog.lookup(model)
        # A model the catalog does not know is tried; a 404 moves it on.
        return entry is None or entry.offered_on_vertex_in(self.region or "global")

    def upstream_model(self, model: str, catalog: Catalog, spelled: str | None = None) -> str:
        """The id `model` (an Anthropic id, `spelled` so by the caller) has at this deployment."""
        override = self.model_ids.get(model)
        if override:
            return override
        model = spelled or model
        if self.provider == "vertex":
            return catalog.vertex_id(model)
        if self.provider == "bedrock":
            return catalog.bedrock_id(model, self.region or "us-east-1", self.inference_profile)
        return catalog.anthropic_id(model)

    def describe(self) -> dict[str, object]:
        """The deployment as JSON-ready data (health views, the CLI)."""
        return {
            "name": self.name,
            "provider": self.provider,
            "region": self.region,
            "project": self.project,
            "inference_profile": self.inference_profile if self.provider == "bedrock" else None,
            "place": self.place.name,
            "priority": self.priority,
            "weight": self.weight,
            "max_concurrency": self.max_concurrency,
            "rpm": self.rpm,
            "models": sorted(self.models) if self.models is not None else None,
            "derived": self.derived,
        }


def account_key(spec: DeploymentSettings) -> str:
    """The provider instance a deployment needs: its provider plus any own credentials/endpoint."""
    parts: list[str] = [spec.provider]
    for name in ("credentials_file", "profile", "api_key", "base_url"):
        value = getattr(spec, name)
        if value:
            parts.append(f"{name}={value}")
    return "|".join(parts)


def _timeouts(spec: TimeoutSettings | None) -> Timeouts | None:
    if spec is None:
        return None
    return Timeouts(connect=spec.connect, first_byte=spec.first_byte, idle=spec.idle, total=spec.total)


class DeploymentTable:
    """Every deployment the gateway knows, and the candidates for each model."""

    def __init__(self, settings: Settings, catalog: Catalog, *, bedrock_region: str) -> None:
        self._settings = settings
        self._catalog = catalog
        self.bedrock_region = bedrock_region
        self.explicit = bool(settings.routing.deployments)
        self._by_name: dict[str, Deployment] = {}
        self._for_model: dict[tuple[str, str | None], tuple[Deployment, ...]] = {}
        for spec in settings.routing.deployments:
            self._add(self._from_spec(spec))

    def _add(self, deployment: Deployment) -> Deployment:
        existing = self._by_name.get(deployment.name)
        if existing is not None:
            if not deployment.derived:
                raise ValueError(f"two deployments are named {deployment.name!r}; give them distinct names")
            return existing
        self._by_name[deployment.name] = deployment
        return deployment

    def _from_spec(self, spec: DeploymentSettings) -> Deployment:
        settings = self._settings
        region = spec.region
        if region is None:
            if spec.provider == "vertex":
                region = settings.vertex.region
            elif spec.provider == "bedrock":
                region = self.bedrock_region
        models = None
        if spec.models is not None:
            models = frozenset(self._catalog.anthropic_id(m) for m in spec.models)
        return Deployment(
            name=spec.label if spec.name or spec.region else _with_region(spec.label, region),
            provider=spec.provider,
            account=account_key(spec),
            region=region,
            project=spec.project or (settings.vertex.project_id if spec.provider == "vertex" else None),
            inference_profile=spec.inference_profile or settings.bedrock.inference_profile,
            models=models,
            model_ids={self._catalog.anthropic_id(k): v for k, v in spec.model_ids.items()},
            priority=spec.priority,
            weight=spec.weight,
            max_concurrency=spec.max_concurrency,
            rpm=spec.rpm,
            timeouts=_timeouts(spec.timeouts),
        )

    def all(self) -> list[Deployment]:
        """Every deployment created so far (derived ones appear once a model needed them)."""
        return list(self._by_name.values())

    def get(self, name: str) -> Deployment | None:
        """The deployment called `name`."""
        return self._by_name.get(name)

    def candidates(self, model: str, client_region: str | None = None) -> tuple[Deployment, ...]:
        """The deployments that may serve `model` (an Anthropic id), before health and policy."""
        key = (model, client_region)
        cached = self._for_model.get(key)
        if cached is not None:
            return cached
        if self.explicit:
            found = tuple(d for d in self._by_name.values() if d.serves(model, self._catalog))
        else:
            found = tuple(self._derive(model, client_region))
        if len(self._for_model) < 4096:
            self._for_model[key] = found
        return found

    # -- derived deployments ------------------------------------------------------------------

    def _derive(self, model: str, client_region: str | None) -> list[Deployment]:
        routing = self._settings.routing
        providers = [self._settings.provider]
        providers += [p for p in routing.fallback_providers if p not in providers]
        out: list[Deployment] = []
        for rank, provider in enumerate(providers):
            base = rank * 10
            if provider == "vertex":
                out += self._derive_vertex(model, client_region, base)
            elif provider == "bedrock":
                out += self._derive_bedrock(base)
            else:
                out.append(self._derived("anthropic", None, None, base))
        return out

    def _derived(
        self, provider: str, region: str | None, project: str | None, priority: int, profile: str = "auto"
    ) -> Deployment:
        parts = [provider, *([project] if project else []), *([region] if region else [])]
        if provider == "bedrock" and profile not in ("auto",):
            parts.append(profile)
        deployment = Deployment(
            name="/".join(parts),
            provider=provider,
            account=provider,
            region=region,
            project=project,
            inference_profile=profile,
            priority=priority,
            derived=True,
        )
        return self._add(deployment)

    def _derive_vertex(self, model: str, client_region: str | None, base: int) -> list[Deployment]:
        vertex = self._settings.vertex
        project = vertex.project_id
        if client_region and vertex.honor_client_region:
            primary = client_region
        else:
            primary = resolve_vertex_region(
                self._catalog.vertex_id(model), vertex.region, vertex.region_overrides
            )
        found = [self._derived("vertex", primary, project, base)]
        entry = self._catalog.lookup(model)
        policy = self._settings.routing.fallback
        if entry is None or policy == "none":
            return found
        home = geography(primary)
        for region in entry.vertex_regions:
            if region == primary:
                continue
            if policy == "same-geography" and home != "global" and geography(region) != home:
                continue
            found.append(self._derived("vertex", region, project, base + 1))
        return found

    def _derive_bedrock(self, base: int) -> list[Deployment]:
        region = self.bedrock_region
        profile = self._settings.bedrock.inference_profile
        found = [self._derived("bedrock", region, None, base, profile)]
        effective = bedrock_profile_prefix(region) if profile == "auto" else profile
        policy = self._settings.routing.fallback
        if policy == "none":
            return found
        if effective == "none":
            # Base ids on on-demand throughput in one region: the geography's profile is next.
            found.append(self._derived("bedrock", region, None, base + 1, bedrock_profile_prefix(region)))
        elif effective != "global" and policy == "any":
            found.append(self._derived("bedrock", region, None, base + 1, "global"))
        return found


def _with_region(label: str, region: str | None) -> str:
    return f"{label}/{region}" if region else label
