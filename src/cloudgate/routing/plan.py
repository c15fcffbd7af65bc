"""One request's way through the deployments: the order to try them in, and what happened.

The router builds a `Plan` per request: the candidate deployments for the model, filtered by
residency and the thinking-signature rule, ordered by affinity, provider preference, priority,
cost and weight. The proxy asks it for the next attempt, reports how each went, and the plan
keeps the health board, the affinity map and the retry budget up to date.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cloudgate.protocol.errors import GatewayError
from cloudgate.providers.base import Target
from cloudgate.routing.deployments import Deployment
from cloudgate.routing.health import Health, HealthBoard, Outcome
from cloudgate.routing.retry import Backoff, Verdict, classify, more_telling

if TYPE_CHECKING:
    from cloudgate.routing.affinity import AffinityMap


@dataclass(slots=True)
class Attempt:
    """One upstream request: where it went and how it ended."""

    deployment: Deployment
    target: Target
    health: Health
    status: int | None = None
    error: str | None = None
    released: bool = False

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, for the request log."""
        return {"deployment": self.deployment.name, "status": self.status, "error": self.error}


@dataclass(slots=True)
class Plan:
    """The ordered candidates for one request and the attempts made so far."""

    model: str  # the Anthropic id
    candidates: list[tuple[Deployment, Target]]
    board: HealthBoard
    max_attempts: int
    backoff: Backoff
    affinity: AffinityMap | None = None
    affinity_key: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    _tried_round: set[str] = field(default_factory=set)
    _excluded_accounts: set[str] = field(default_factory=set)
    _last: tuple[GatewayError, Verdict] | None = None
    _best: tuple[GatewayError, Verdict] | None = None

    @property
    def first_target(self) -> Target:
        """Where the request goes if all is well."""
        return self.candidates[0][1]

    def targets(self) -> list[Target]:
        """Every place the request might go (for a worst-case cost)."""
        return [t for _, t in self.candidates]

    async def next(self) -> Attempt:
        """The next attempt to make; raises the most telling error when none is left."""
        if len(self.attempts) >= self.max_attempts:
            raise self._give_up()
        while True:
            chosen = self._pick()
            if chosen is not None:
                deployment, target = chosen
                health = self.board.get(deployment.name, self.model, deployment.max_concurrency)
                now = self.board.now()
                self.board.acquire(health, now)
                if deployment.rpm is not None:
                    self.board.count_request(deployment.name, now)
                self._tried_round.add(deployment.name)
                attempt = Attempt(deployment, target, health)
                self.attempts.append(attempt)
                return attempt
            # Every candidate was tried this round: wait, then go round again.
            retry_after = self._last[1].retry_after if self._last is not None else None
            wait = self.backoff.next_wait(retry_after)
            if wait is None:
                raise self._give_up()
            if wait > 0:
                await asyncio.sleep(wait)
            self._tried_round.clear()

    def _eligible(self) -> list[tuple[Deployment, Target]]:
        return [
            (d, t)
            for d, t in self.candidates
            if d.name not in self._tried_round and d.account not in self._excluded_accounts
        ]

    def _pick(self) -> tuple[Deployment, Target] | None:
        eligible = self._eligible()
        if not eligible:
            return None
        now = self.board.now()
        for deployment, target in eligible:
            health = self.board.get(deployment.name, self.model, deployment.max_concurrency)
            if self.board.usable(health, now) and (
                deployment.rpm is None or self.board.under_rpm(deployment.name, deployment.rpm, now)
            ):
                return deployment, target
        if self._tried_round and self.attempts:
            return None  # the rest are cooling or full: the caller gets the errors seen so far

        # Nothing is usable: rather than refuse unseen, try the one that should recover first.
        def recovery(item: tuple[Deployment, Target]) -> tuple[float, float, float]:
            h = self.board.get(item[0].name, self.model, item[0].max_concurrency)
            return (h.not_found_until, h.cooldown_until, h.in_flight / max(1.0, h.limit))

        return min(eligible, key=recovery)

    def failed(self, attempt: Attempt, err: GatewayError) -> bool:
        """Record a failure before any byte reached the caller; True when another attempt may help."""
        verdict = classify(err)
        attempt.status = err.status
        attempt.error = err.error_type
        self._release(attempt, verdict.outcome, f"{err.status} {err.message}"[:300], verdict.retry_after)
        pair = (err, verdict)
        self._last = pair
        if more_telling(pair, self._best):
            self._best = pair
        if not verdict.retry:
            self._best = pair
            return False
        if verdict.other_account:
            self._excluded_accounts.add(attempt.deployment.account)
        return len(self.attempts) < self.max_attempts

    def finished(self, attempt: Attempt, outcome: Outcome, status: int, error: str | None = None) -> None:
        """The attempt answered (fully, or broke after bytes were sent)."""
        attempt.status = status
        attempt.error = error
        self._release(attempt, outcome, error)
        if outcome is Outcome.SUCCESS and self.affinity is not None and self.affinity_key is not None:
            self.affinity.remember(self.affinity_key, attempt.deployment.name, attempt.deployment.provider)

    def abandon(self, attempt: Attempt) -> None:
        """The caller left: the attempt says nothing about the deployment's health."""
        self._release(attempt, Outcome.NEUTRAL, None)

    def _release(
        self, attempt: Attempt, outcome: Outcome, detail: str | None, retry_after: float | None = None
    ) -> None:
        if attempt.released:
            return
        attempt.released = True
        self.board.release(attempt.health, outcome, detail, retry_after)

    def _give_up(self) -> GatewayError:
        chosen = self._best or self._last
        if chosen is None:
            return GatewayError(
                503, f"no deployment is available for {self.model}", error_type="overloaded_error"
            )
        err = chosen[0]
        if len(self.attempts) > 1:
            tried = ", ".join(a.deployment.name for a in self.attempts)
            err.message = f"{err.message} (after {len(self.attempts)} attempts: {tried})"
        return err
