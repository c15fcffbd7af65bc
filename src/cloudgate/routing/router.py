"""Model names to an ordered plan of upstream deployments.

A caller may name a model by its Anthropic id, an alias (`opus`, `sonnet`, `haiku`, `default`,
configured ones), any platform's id, and may append `[1m]` to ask for the 1M context window.
The router resolves the name, finds the deployments serving the model (`routing.deployments`),
keeps those the caller's residency rules allow, and orders them: the session's deployment
first (cache affinity), then the team's preferred providers, priority, cost and weight. The
`Plan` it returns is what the proxy walks through, failing over as the retry policy allows.
"""

from __future__ import annotations

import random

from cloudgate.catalog import Catalog
from cloudgate.config.settings import Settings
from cloudgate.governance.pricing import premium_factor
from cloudgate.governance.types import Principal
from cloudgate.protocol.errors import GatewayError
from cloudgate.protocol.messages import MessagesCall, WireFormat
from cloudgate.providers.base import Target
from cloudgate.routing.affinity import AffinityMap, carries_thinking, session_key
from cloudgate.routing.deployments import Deployment, DeploymentTable
from cloudgate.routing.health import HealthBoard
from cloudgate.routing.plan import Plan
from cloudgate.routing.retry import Backoff

ONE_M_BETA = "context-1m-2025-08-07"
_ONE_M_SUFFIX = "[1m]"


class Router:
    """Resolves model names and picks the upstream target for each call."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        *,
        bedrock_region: str | None = None,
        board: HealthBoard | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self.bedrock_region = bedrock_region or settings.bedrock.region or "us-east-1"
        self.table = DeploymentTable(settings, catalog, bedrock_region=self.bedrock_region)
        self.board = board or HealthBoard(settings.routing)
        routing = settings.routing
        self.affinity = AffinityMap(routing.affinity_ttl) if routing.affinity else None
        self._rng = rng or random.Random()  # noqa: S311 -- load spreading, not secrets
        self._gateway_regions = (
            frozenset(routing.allowed_regions) if routing.allowed_regions is not None else None
        )
        self._cost: dict[tuple[str, str], float] = {}
        self._targets: dict[tuple[str, str, str], Target] = {}
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

    def plan(self, call: MessagesCall, principal: Principal | None = None) -> Plan:
        """The ordered deployments for `call`; adds the 1M beta when the model name asked for it.

        Raises `GatewayError` when no deployment serves the model, or none the caller may use.
        """
        name, wants_1m = self.resolve_model(call.model)
        if wants_1m and ONE_M_BETA not in call.betas:
            call.betas.append(ONE_M_BETA)
        model = self._catalog.anthropic_id(name)
        client_region = call.client_region if call.frontdoor is WireFormat.VERTEX else None
        candidates = self.table.candidates(model, client_region)
        if not candidates:
            raise GatewayError(
                404,
                f"model {call.model} is not served by any configured deployment",
                error_type="not_found_error",
            )
        allowed = self._allowed(candidates, principal)
        if not allowed:
            raise GatewayError(
                403,
                f"no deployment serving {call.model} lies within the regions this key may use "
                f"({self._regions_text(principal)})",
                error_type="permission_error",
            )
        key = (
            session_key(call.passthrough_headers.get("x-claude-code-session-id"), call.body)
            if self.affinity is not None
            else None
        )
        stick = self.affinity.get(key) if self.affinity is not None and key is not None else None
        if stick is not None and len({d.provider for d in allowed}) > 1 and carries_thinking(call.body):
            # Thinking signatures only verify on the platform that produced them.
            allowed = [d for d in allowed if d.provider == stick.provider] or allowed
        ordered = self._order(allowed, model, principal, stick.deployment if stick else None)
        routing = self._settings.routing
        return Plan(
            model=model,
            candidates=[(d, self._target(d, model, name)) for d in ordered],
            board=self.board,
            max_attempts=routing.max_attempts,
            backoff=Backoff(routing, self._rng),
            affinity=self.affinity,
            affinity_key=key,
        )

    def route(self, call: MessagesCall, principal: Principal | None = None) -> Target:
        """Where `call` goes when every deployment is healthy (the plan's first target)."""
        return self.plan(call, principal).first_target

    def _target(self, deployment: Deployment, model: str, spelled: str) -> Target:
        key = (deployment.name, model, spelled)
        target = self._targets.get(key)
        if target is None:
            target = self._new_target(deployment, model, spelled)
            if len(self._targets) < 8192:
                self._targets[key] = target
        return target

    def _new_target(self, deployment: Deployment, model: str, spelled: str) -> Target:
        return Target(
            provider=deployment.provider,
            model=deployment.upstream_model(model, self._catalog, spelled),
            region=deployment.region,
            project=deployment.project,
            deployment=deployment.name,
            account=deployment.account,
            timeouts=deployment.timeouts,
        )

    def _allowed(self, candidates: tuple[Deployment, ...], principal: Principal | None) -> list[Deployment]:
        rules: list[frozenset[str]] = []
        if self._gateway_regions is not None:
            rules.append(self._gateway_regions)
        if principal is not None:
            rules.extend(principal.allowed_regions)
        if not rules:
            return list(candidates)
        return [d for d in candidates if all(d.place.allowed_by(rule) for rule in rules)]

    def _regions_text(self, principal: Principal | None) -> str:
        rules = [sorted(r) for r in (principal.allowed_regions if principal else ())]
        if self._gateway_regions is not None:
            rules.append(sorted(self._gateway_regions))
        return "; ".join(", ".join(r) for r in rules)

    def _order(
        self, deployments: list[Deployment], model: str, principal: Principal | None, sticky: str | None
    ) -> list[Deployment]:
        preferred = principal.preferred_providers if principal is not None else ()
        by_cost = self._settings.routing.order == "cost"
        rng = self._rng

        def key(d: Deployment) -> tuple[int, int, int, float, float]:
            rank = preferred.index(d.provider) if d.provider in preferred else len(preferred)
            cost = self._cost_factor(d, model) if by_cost else 0.0
            # Weighted random order among equals (Efraimidis-Spirakis keys).
            return (0 if d.name == sticky else 1, rank, d.priority, cost, -(rng.random() ** (1.0 / d.weight)))

        return sorted(deployments, key=key)

    def _cost_factor(self, deployment: Deployment, model: str) -> float:
        cache_key = (deployment.name, model)
        factor = self._cost.get(cache_key)
        if factor is None:
            entry = self._catalog.lookup(model)
            factor = (
                float(premium_factor(entry, provider=deployment.provider, region=deployment.region))
                if entry is not None
                else 1.0
            )
            if len(self._cost) < 4096:
                self._cost[cache_key] = factor
        return factor

    def family(self, model: str) -> str:
        """`opus`, `sonnet`, `haiku` or '' for a resolved model name."""
        entry = self._catalog.lookup(model)
        if entry is not None:
            return entry.family
        for family in ("opus", "sonnet", "haiku"):
            if family in model:
                return family
        return ""
