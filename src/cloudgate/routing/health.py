"""What the gateway has learnt about each deployment: failures, cooldowns, concurrency.

State is kept per deployment and model, since quotas and availability are per model in each
region (Vertex quotas are per base model and region; a model may be missing in one region).

- A failure (429, 529, 5xx, timeout, connection error) counts towards `cooldown_failures`;
  reaching it puts the pair in cooldown for `cooldown_seconds`, doubled after each failed probe
  up to `cooldown_max`. A `retry-after` on a 429 holds the pair back at least that long.
- When the cooldown ends the pair is half-open: one request at a time probes it; a success
  makes it healthy again, a failure sends it back into a longer cooldown.
- A 404 for the model ("not offered here") skips the pair for `not_found_seconds`.
- A deployment's `rpm` caps the requests sent to it per minute (a sliding estimate over the
  current and previous minute), whatever the model.
- Adaptive concurrency (AIMD): the number of requests in flight is capped; a 429/529 halves
  the cap, or the requests then in flight when fewer (at most once per second, so one burst
  counts once), each success adds one back up to the deployment's `max_concurrency`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

from cloudgate.config.settings import RoutingSettings


class Outcome(Enum):
    """How one upstream attempt went, for health purposes."""

    SUCCESS = "success"
    THROTTLED = "throttled"  # 429, 529 overloaded
    FAILED = "failed"  # 5xx, timeout, connection error, broken stream
    NOT_FOUND = "not_found"  # the model is not offered there
    NEUTRAL = "neutral"  # the caller's fault (400) or the caller left: says nothing of health


@dataclass(slots=True)
class Health:
    """The state of one deployment for one model."""

    deployment: str
    model: str
    limit: float
    max_limit: int
    in_flight: int = 0
    consecutive_failures: int = 0
    cooldown_until: float = 0.0
    cooldown_seconds: float = 0.0
    probing: bool = False
    not_found_until: float = 0.0
    last_decrease: float = 0.0
    requests: int = 0
    successes: int = 0
    failures: int = 0
    throttled: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None

    def state(self, now: float) -> str:
        """healthy, cooling, half-open, not-offered or saturated."""
        if self.not_found_until > now:
            return "not-offered"
        if self.cooldown_until > now:
            return "cooling"
        if self.cooldown_seconds > 0:
            return "half-open"
        if self.in_flight >= int(self.limit):
            return "saturated"
        return "healthy"

    def snapshot(self, now: float, wall: float) -> dict[str, Any]:
        """JSON-ready state for /health/deployments."""

        def ago(stamp: float | None) -> float | None:
            return None if stamp is None else round(wall - (now - stamp), 3)

        return {
            "deployment": self.deployment,
            "model": self.model,
            "state": self.state(now),
            "in_flight": self.in_flight,
            "concurrency_limit": int(self.limit),
            "max_concurrency": self.max_limit,
            "consecutive_failures": self.consecutive_failures,
            "cooldown_remaining_s": round(max(0.0, self.cooldown_until - now), 3),
            "requests": self.requests,
            "successes": self.successes,
            "failures": self.failures,
            "throttled": self.throttled,
            "last_error": self.last_error,
            "last_error_at": ago(self.last_error_at),
            "last_success_at": ago(self.last_success_at),
        }


class HealthBoard:
    """Health per (deployment, model), shared by every request of one gateway process."""

    def __init__(self, settings: RoutingSettings, clock: Any = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._entries: dict[tuple[str, str], Health] = {}
        self._minutes: dict[str, list[float]] = {}  # deployment -> [minute, this, previous]

    def get(self, deployment: str, model: str, max_concurrency: int | None = None) -> Health:
        """The entry for a pair, created healthy on first use."""
        key = (deployment, model)
        entry = self._entries.get(key)
        if entry is None:
            cap = max_concurrency or self._settings.max_concurrency
            entry = Health(deployment=deployment, model=model, limit=float(cap), max_limit=cap)
            self._entries[key] = entry
        return entry

    def now(self) -> float:
        """The board's clock (monotonic seconds)."""
        return float(self._clock())

    def usable(self, entry: Health, now: float) -> bool:
        """Whether a request may go to this pair now (a half-open pair takes one probe at a time)."""
        if entry.not_found_until > now or entry.cooldown_until > now:
            return False
        if entry.cooldown_seconds > 0 and entry.probing:
            return False
        return not (self._settings.adaptive_concurrency and entry.in_flight >= int(entry.limit))

    def under_rpm(self, deployment: str, rpm: int, now: float) -> bool:
        """Whether one more request keeps `deployment` within `rpm` requests a minute."""
        return self._rate(deployment, now) < rpm

    def count_request(self, deployment: str, now: float) -> None:
        """A request went to `deployment` (for its requests-per-minute cap)."""
        self._rate(deployment, now)
        self._minutes[deployment][1] += 1

    def _rate(self, deployment: str, now: float) -> float:
        minute = now // 60
        window = self._minutes.get(deployment)
        if window is None:
            window = self._minutes[deployment] = [minute, 0.0, 0.0]
        elif window[0] != minute:
            window[2] = window[1] if window[0] == minute - 1 else 0.0
            window[0], window[1] = minute, 0.0
        # The previous minute counts for the part of it still inside the last 60 seconds.
        return window[1] + window[2] * (1 - (now % 60) / 60)

    def acquire(self, entry: Health, now: float) -> None:
        """A request is going to this pair."""
        entry.in_flight += 1
        entry.requests += 1
        if entry.cooldown_seconds > 0 and entry.cooldown_until <= now:
            entry.probing = True

    def release(
        self, entry: Health, outcome: Outcome, detail: str | None = None, retry_after: float | None = None
    ) -> None:
        """The request to this pair ended with `outcome`."""
        settings = self._settings
        now = self.now()
        entry.in_flight = max(0, entry.in_flight - 1)
        was_probe = entry.probing
        entry.probing = False
        if outcome is Outcome.NEUTRAL:
            return
        if outcome is Outcome.SUCCESS:
            entry.successes += 1
            entry.last_success_at = now
            entry.consecutive_failures = 0
            entry.cooldown_seconds = 0.0
            entry.cooldown_until = 0.0
            entry.not_found_until = 0.0
            if entry.limit < entry.max_limit:
                entry.limit = min(float(entry.max_limit), entry.limit + 1.0)
            return
        entry.last_error = detail
        entry.last_error_at = now
        if outcome is Outcome.NOT_FOUND:
            entry.not_found_until = now + settings.not_found_seconds
            return
        entry.failures += 1
        entry.consecutive_failures += 1
        if outcome is Outcome.THROTTLED:
            entry.throttled += 1
            if settings.adaptive_concurrency and now - entry.last_decrease >= 1.0:
                # Half of what was really in flight (this request included) when that is below
                # the cap: a cap far above the load would otherwise take many halvings to bite.
                window = min(entry.limit, float(entry.in_flight + 1))
                entry.limit = max(1.0, window / 2)
                entry.last_decrease = now
        if was_probe or entry.consecutive_failures >= settings.cooldown_failures:
            if entry.cooldown_seconds <= 0:
                entry.cooldown_seconds = settings.cooldown_seconds
            elif was_probe:
                entry.cooldown_seconds = min(settings.cooldown_max, entry.cooldown_seconds * 2)
            entry.cooldown_until = max(entry.cooldown_until, now + entry.cooldown_seconds)
        if retry_after is not None and retry_after > 0:
            entry.cooldown_until = max(entry.cooldown_until, now + min(retry_after, settings.cooldown_max))

    def snapshot(self) -> list[dict[str, Any]]:
        """Every pair's state, for /health/deployments."""
        now = self.now()
        wall = time.time()
        return [entry.snapshot(now, wall) for entry in self._entries.values()]
