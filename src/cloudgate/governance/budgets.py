"""Budgets: reserve a request's worst-case cost before it goes upstream, settle the real cost after.

Every budget of a principal (key, user, team) is checked and held at once, all or nothing, in one
counter call. Counters are per period: their key carries the period's start, so a new day, week
or month starts a fresh counter, seeded from the database the first time it is used (that load is
the only database access, once per counter and process). Concurrent requests can together
overshoot a budget by at most one request's excess of actual over reserved cost, which is zero
while actual costs stay within their reservation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cloudgate.governance.counters import BudgetHold, Counters
from cloudgate.governance.types import BudgetRule, Period, Principal, micro_to_usd
from cloudgate.util.ids import new_token

LoadSpent = Callable[[BudgetRule, datetime], Awaitable[int]]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A request not settled within this time is taken as lost (its process died): its hold becomes
# spending at the reserved amount. Longer than any request the gateway lets run.
DEFAULT_HOLD_TTL_S = 3600
# Counters outlive their period by this much, so late settlements still find them.
DEFAULT_KEY_GRACE_S = 86400
_SEED_ATTEMPTS = 3
# A rule's counter key and limit are worked out once per this many seconds (and again at its
# period's end), not per request; the counter's lifetime is then up to this much longer.
_HOLD_CACHE = timedelta(seconds=60)
_HOLD_CACHE_LIMIT = 4096
_Planned = tuple[BudgetHold, datetime, datetime | None]  # the hold, its period's start and end


class BudgetError(Exception):
    """Base of the budget errors."""


class BudgetExceeded(BudgetError):
    """A budget cannot take the request's worst-case cost."""

    def __init__(self, rule: BudgetRule, spent: int, limit: int, resets_at: datetime | None) -> None:
        self.rule = rule
        self.spent = spent  # spent plus reserved by requests in flight, micro-dollars
        self.limit = limit
        self.resets_at = resets_at
        when = f", resets at {resets_at.isoformat()}" if resets_at else ""
        super().__init__(
            f"{rule.scope} budget {rule.budget_id} ({rule.period}) exhausted: "
            f"${micro_to_usd(spent):.2f} of ${micro_to_usd(limit):.2f} used{when}"
        )


class BudgetUnavailable(BudgetError):
    """Budget counters could not be seeded (they vanished as fast as they were created)."""


@dataclass(slots=True)
class Reservation:
    """A hold on a principal's budgets; settle or release it exactly once (again is harmless)."""

    id: str
    amount: int
    keys: tuple[str, ...]
    rules: tuple[BudgetRule, ...]
    done: bool = False


def period_start(period: Period, now: datetime) -> datetime:
    """The UTC start of the period containing `now` (naive datetimes are taken as UTC)."""
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.DAILY:
        return day
    if period is Period.WEEKLY:
        return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
    if period is Period.MONTHLY:
        return day.replace(day=1)
    return EPOCH


def period_end(period: Period, now: datetime) -> datetime | None:
    """When the period containing `now` ends (the next one starts); None for a total budget."""
    start = period_start(period, now)
    if period is Period.DAILY:
        return start + timedelta(days=1)
    if period is Period.WEEKLY:
        return start + timedelta(days=7)
    if period is Period.MONTHLY:
        return (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
    return None


def budget_key(rule: BudgetRule, start: datetime) -> str:
    """The counter key of `rule` for the period starting at `start`."""
    return f"budget:{rule.budget_id}:{rule.period}:{start:%Y%m%d}"


class BudgetGuard:
    """Reserves and settles request costs against every budget of a principal."""

    def __init__(
        self,
        counters: Counters,
        load_spent: LoadSpent,
        *,
        hold_ttl_s: int = DEFAULT_HOLD_TTL_S,
        key_grace_s: int = DEFAULT_KEY_GRACE_S,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._counters = counters
        self._load_spent = load_spent
        self._hold_ttl_s = hold_ttl_s
        self._key_grace_s = key_grace_s
        # One clock for periods and counters, so a test clock moves both.
        self._clock = clock or (lambda: datetime.fromtimestamp(counters.clock(), UTC))
        self._seeding: dict[str, asyncio.Future[None]] = {}
        self._holds: dict[BudgetRule, tuple[datetime, datetime, _Planned]] = {}  # (from, until, plan)

    def _planned(self, rule: BudgetRule, now: datetime) -> _Planned:
        cached = self._holds.get(rule)
        if cached is not None and cached[0] <= now < cached[1]:
            return cached[2]
        planned = self._hold(rule, now)
        _, start, end = planned
        until = now + _HOLD_CACHE
        if end is not None and end < until:
            until = end
        if len(self._holds) >= _HOLD_CACHE_LIMIT:
            self._holds.clear()
        self._holds[rule] = (start, until, planned)
        return planned

    def _hold(self, rule: BudgetRule, now: datetime) -> _Planned:
        start = period_start(rule.period, now)
        end = period_end(rule.period, now)
        ttl = 0 if end is None else int((end - now).total_seconds()) + self._key_grace_s
        return BudgetHold(budget_key(rule, start), rule.amount_micro, ttl), start, end

    async def reserve(self, principal: Principal, max_cost: int) -> Reservation:
        """Hold `max_cost` on all the principal's budgets, or raise `BudgetExceeded`."""
        rules = principal.budgets
        rid = new_token()
        if not rules:
            return Reservation(rid, max_cost, (), ())
        now = self._clock()
        planned = [self._planned(rule, now) for rule in rules]
        holds = [h for h, _, _ in planned]
        for _ in range(_SEED_ATTEMPTS):
            result = await self._counters.reserve(holds, rid, max_cost, self._hold_ttl_s)
            if result.ok:
                return Reservation(rid, max_cost, tuple(h.key for h in holds), rules)
            if result.refused is not None:
                rule = rules[result.refused]
                raise BudgetExceeded(rule, result.current, rule.amount_micro, planned[result.refused][2])
            await asyncio.gather(*(self._seed(rules[i], holds[i], planned[i][1]) for i in result.unseeded))
        raise BudgetUnavailable(f"budget counters for key {principal.key_id} could not be seeded")

    def _seed(self, rule: BudgetRule, hold: BudgetHold, start: datetime) -> Awaitable[None]:
        # Requests arriving together on a fresh counter share one database load. The future only
        # says "done": a waiter whose seeding failed finds the counter still unseeded on its next
        # attempt and tries itself, so errors reach a caller that awaits the load. The load is
        # registered here, before any await (gather runs coroutines as tasks, a step later), so
        # a request whose counter reply comes just after this one's joins its load.
        pending = self._seeding.get(hold.key)
        if pending is not None:
            return asyncio.shield(pending)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seeding[hold.key] = future
        return self._load_and_seed(rule, hold, start, future)

    async def _load_and_seed(
        self, rule: BudgetRule, hold: BudgetHold, start: datetime, future: asyncio.Future[None]
    ) -> None:
        try:
            spent = await self._load_spent(rule, start)
            await self._counters.seed(hold.key, spent, hold.ttl_s)
        finally:
            # Forget it once done, so a counter lost later (Redis restart) is seeded again.
            del self._seeding[hold.key]
            future.set_result(None)

    async def settle(self, reservation: Reservation, actual_cost: int) -> None:
        """Turn the hold into spending at `actual_cost`; later calls do nothing."""
        if reservation.done:
            return
        reservation.done = True
        if reservation.keys:
            await self._counters.settle(reservation.keys, reservation.id, max(0, actual_cost))

    async def release(self, reservation: Reservation) -> None:
        """Drop the hold without spending (the request never reached upstream); later calls do nothing."""
        if reservation.done:
            return
        reservation.done = True
        if reservation.keys:
            await self._counters.release(reservation.keys, reservation.id)
