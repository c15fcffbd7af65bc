"""Rate limits: requests, input tokens and output tokens per minute, and concurrent requests.

Every `ScopedLimits` of a principal (its key, user and team) is checked in one counter call and
all must pass, so the tightest wins. Input tokens are counted at admission from an estimate
(the real count is only known from the answer) and corrected at the end; output tokens are only
known at the end, so admission checks that the output window is not already full and `finish`
adds them.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from cloudgate.governance.counters import Counters, SlotCheck, WindowAdd, WindowCheck
from cloudgate.governance.types import Principal, Scope, ScopedLimits
from cloudgate.util.ids import new_token


class LimitName(enum.StrEnum):
    """Which limit; the values match the `anthropic-ratelimit-<name>-*` header families."""

    REQUESTS = "requests"
    INPUT_TOKENS = "input-tokens"
    OUTPUT_TOKENS = "output-tokens"
    CONCURRENT = "concurrent-requests"


@dataclass(slots=True, frozen=True)
class LimitStatus:
    """One limit of one scope as it stood when a request was admitted or refused."""

    scope: Scope
    scope_id: str
    name: LimitName
    limit: int
    remaining: int
    reset_at: datetime  # when the window will have fully replenished


class RateLimited(Exception):
    """A rate limit refuses the request; carries what `retry-after` and the headers need."""

    def __init__(
        self,
        scope: Scope,
        limit_name: LimitName,
        limit: int,
        retry_after_s: float,
        remaining: int,
        reset_at: datetime,
        scope_id: str = "",
    ) -> None:
        self.scope = scope
        self.scope_id = scope_id
        self.limit_name = limit_name
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.remaining = remaining
        self.reset_at = reset_at
        per = "" if limit_name is LimitName.CONCURRENT else " per minute"
        super().__init__(
            f"{scope} rate limit exceeded: {limit} {limit_name}{per}; retry after {self.retry_after_header}s"
        )

    @property
    def retry_after_header(self) -> str:
        """`retry-after` in whole seconds, rounded up and at least 1."""
        return str(max(1, math.ceil(self.retry_after_s)))


@dataclass(slots=True)
class Admission:
    """An admitted request: pass it to `finish` once the answer is complete (again is harmless)."""

    token: str
    at: float
    input_estimate: int
    input_keys: tuple[str, ...] = ()
    output_keys: tuple[str, ...] = ()
    slot_keys: tuple[str, ...] = ()
    finished: bool = False
    # What `statuses` is worked out from, when asked (most requests never ask): each limit's
    # (scope, scope id, name, limit), what it held before this request, what this request added,
    # and when the windows will have replenished (epoch seconds).
    meta: tuple[tuple[Scope, str, LimitName, int], ...] = ()
    used: tuple[int, ...] = ()
    added: tuple[int, ...] = ()
    reset_at: float = 0.0

    @property
    def statuses(self) -> tuple[LimitStatus, ...]:
        """Each limit as it stood once this request was counted."""
        reset_at = datetime.fromtimestamp(self.reset_at, UTC)
        return tuple(
            LimitStatus(scope, scope_id, name, limit, max(0, limit - used - added), reset_at)
            for (scope, scope_id, name, limit), used, added in zip(
                self.meta, self.used, self.added, strict=True
            )
        )

    def tightest(self, name: LimitName) -> LimitStatus | None:
        """The status with the least remaining for `name` (what the response headers report)."""
        candidates = [s for s in self.statuses if s.name is name]
        return min(candidates, key=lambda s: s.remaining) if candidates else None


@dataclass(slots=True, frozen=True)
class _Plan:
    """What a principal's limits ask of the counters, worked out once per set of limits."""

    windows: tuple[tuple[str, int, LimitName], ...]  # (counter key, limit, which) per window
    slots: tuple[SlotCheck, ...]
    # (scope, scope id, name, limit) per window then per slot, in the same order.
    meta: tuple[tuple[Scope, str, LimitName, int], ...]
    input_keys: tuple[str, ...]
    output_keys: tuple[str, ...]
    slot_keys: tuple[str, ...]
    slot_adds: tuple[int, ...]  # each slot taken counts one


_PLAN_CACHE_LIMIT = 4096


def _plan(limits: tuple[ScopedLimits, ...]) -> _Plan:
    # Two entries for the same scope share counters: keep the tighter limit of each.
    tightest: dict[tuple[Scope, str, LimitName], int] = {}
    for scoped in limits:
        lim = scoped.limits
        for name, value in (
            (LimitName.REQUESTS, lim.requests_per_minute),
            (LimitName.INPUT_TOKENS, lim.input_tokens_per_minute),
            (LimitName.OUTPUT_TOKENS, lim.output_tokens_per_minute),
            (LimitName.CONCURRENT, lim.max_concurrent),
        ):
            if value is not None:
                ident = (scoped.scope, scoped.scope_id, name)
                tightest[ident] = min(value, tightest.get(ident, value))
    windows = [
        ((scope, scope_id, name, limit), (_key(scope, scope_id, name), limit, name))
        for (scope, scope_id, name), limit in tightest.items()
        if name is not LimitName.CONCURRENT
    ]
    slots = [
        ((scope, scope_id, name, limit), SlotCheck(_key(scope, scope_id, name), limit))
        for (scope, scope_id, name), limit in tightest.items()
        if name is LimitName.CONCURRENT
    ]
    return _Plan(
        windows=tuple(w for _, w in windows),
        slots=tuple(s for _, s in slots),
        meta=tuple(m for m, _ in windows) + tuple(m for m, _ in slots),
        input_keys=tuple(w[0] for _, w in windows if w[2] is LimitName.INPUT_TOKENS),
        output_keys=tuple(w[0] for _, w in windows if w[2] is LimitName.OUTPUT_TOKENS),
        slot_keys=tuple(s.key for _, s in slots),
        slot_adds=(1,) * len(slots),
    )


def _key(scope: Scope, scope_id: str, name: LimitName) -> str:
    return f"rl:{scope}:{scope_id}:{name}"


class RateLimiter:
    """Admits requests against a principal's rate limits and accounts for them when they end."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._plans: dict[tuple[ScopedLimits, ...], _Plan] = {}  # a principal's limits -> plan

    def _reset_end(self, now: float) -> float:
        # Everything counted so far sits in the current bucket or older: all of it has left the
        # window once the current bucket has.
        bs = self._counters.bucket_s
        return float((math.floor(now / bs) + self._counters.window_s // bs) * bs)

    async def admit(self, principal: Principal, input_tokens_estimate: int) -> Admission:
        """Count the request against every limit of the principal, or raise `RateLimited`."""
        estimate = max(0, input_tokens_estimate)
        token = new_token()
        now = self._counters.clock()
        plan = self._plans.get(principal.limits)
        if plan is None:
            plan = _plan(principal.limits)
            if len(self._plans) >= _PLAN_CACHE_LIMIT:
                self._plans.clear()
            self._plans[principal.limits] = plan
        if not plan.meta:
            return Admission(token, now, estimate)
        adds = {LimitName.REQUESTS: 1, LimitName.INPUT_TOKENS: estimate, LimitName.OUTPUT_TOKENS: 0}
        windows = [WindowCheck(key, limit, adds[name]) for key, limit, name in plan.windows]
        result = await self._counters.admit(windows, plan.slots, token)
        if not result.ok and result.refused is not None:
            scope, scope_id, name, limit = plan.meta[result.refused]
            used = result.used[result.refused]
            reset_at = datetime.fromtimestamp(
                now + result.retry_after_s if name is LimitName.CONCURRENT else self._reset_end(now), UTC
            )
            raise RateLimited(
                scope, name, limit, result.retry_after_s, max(0, limit - used), reset_at, scope_id=scope_id
            )
        return Admission(
            token=token,
            at=now,
            input_estimate=estimate,
            input_keys=plan.input_keys,
            output_keys=plan.output_keys,
            slot_keys=plan.slot_keys,
            meta=plan.meta,
            used=result.used,
            added=tuple(w.add for w in windows) + plan.slot_adds,
            reset_at=self._reset_end(now),
        )

    async def finish(self, admission: Admission, input_tokens_actual: int, output_tokens: int) -> None:
        """Give back the concurrency slots, add the output tokens and correct the input estimate."""
        if admission.finished:
            return
        admission.finished = True
        if not (admission.input_keys or admission.output_keys or admission.slot_keys):
            return
        now = self._counters.clock()
        adds: list[WindowAdd] = []
        delta = max(0, input_tokens_actual) - admission.input_estimate
        if delta:
            # Into the bucket the estimate went to, so the correction leaves the window with it.
            adds += [WindowAdd(key, delta, admission.at) for key in admission.input_keys]
        if output_tokens > 0:
            adds += [WindowAdd(key, output_tokens, now) for key in admission.output_keys]
        await self._counters.record(adds, admission.slot_keys, admission.token)
