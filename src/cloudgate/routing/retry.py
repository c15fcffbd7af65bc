"""The one retry policy: which failures another attempt can fix, and how long to wait first.

Failover happens only before the first byte reaches the caller. Moving to another deployment
is immediate; going round the deployments again waits a capped exponential backoff with full
jitter, or the upstream's `retry-after` when it is longer, within `max_retry_wait` in total.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cloudgate.config.settings import RoutingSettings
from cloudgate.protocol.errors import GatewayError
from cloudgate.routing.health import Outcome

# Statuses another deployment (or a later attempt) may well answer.
_THROTTLED = frozenset({429, 529})
_FAILED = frozenset({408, 500, 502, 503, 504})
# An upstream 401/403 is about the gateway's credentials for that deployment, not the caller:
# a deployment with other credentials may work.
_CREDENTIALS = frozenset({401, 403})


@dataclass(slots=True, frozen=True)
class Verdict:
    """What one failed attempt means."""

    outcome: Outcome
    retry: bool  # whether another deployment may succeed
    other_account: bool = False  # only a deployment with other credentials may
    retry_after: float | None = None


def classify(err: GatewayError) -> Verdict:
    """The health outcome of an upstream failure and whether failover may help."""
    status = err.status
    retry_after = _retry_after(err)
    if status in _THROTTLED or err.error_type in ("overloaded_error", "rate_limit_error"):
        return Verdict(Outcome.THROTTLED, True, retry_after=retry_after)
    if status in _FAILED or status >= 500:
        return Verdict(Outcome.FAILED, True, retry_after=retry_after)
    if status == 404:
        # "Model not found": not offered in that region, or not enabled in that project.
        return Verdict(Outcome.NOT_FOUND, True)
    if status in _CREDENTIALS:
        return Verdict(Outcome.FAILED, True, other_account=True)
    return Verdict(Outcome.NEUTRAL, False)


def _retry_after(err: GatewayError) -> float | None:
    value = err.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from these services; fall back to backoff
    return seconds if seconds >= 0 else None


# Which error to give the caller when every attempt failed: the one that says most about
# what to do next (a 429 tells them to slow down; a 404 only that one place lacked the model).
_RANK = {Outcome.THROTTLED: 3, Outcome.FAILED: 2, Outcome.NEUTRAL: 1, Outcome.NOT_FOUND: 0}


def more_telling(new: tuple[GatewayError, Verdict], old: tuple[GatewayError, Verdict] | None) -> bool:
    """Whether `new` should replace `old` as the error the caller gets."""
    return old is None or _RANK[new[1].outcome] >= _RANK[old[1].outcome]


class Backoff:
    """Capped exponential backoff with full jitter, bounded in total per request."""

    def __init__(self, settings: RoutingSettings, rng: random.Random | None = None) -> None:
        self._initial = settings.backoff_initial
        self._cap = settings.backoff_max
        self._budget = settings.max_retry_wait
        self._rng = rng or random.Random()  # noqa: S311 -- load spreading, not secrets
        self._round = 0
        self.waited = 0.0

    def next_wait(self, retry_after: float | None) -> float | None:
        """Seconds to wait before the next round, or None when the wait budget is spent."""
        ceiling = min(self._cap, self._initial * (2**self._round))
        self._round += 1
        wait = self._rng.uniform(0, ceiling)
        if retry_after is not None:
            wait = max(wait, retry_after)
        if self.waited + wait > self._budget:
            return None
        self.waited += wait
        return wait
