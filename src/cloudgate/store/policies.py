"""Budgets and rate limits for keys, users and teams."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudgate.governance.types import BudgetRule, Limits, Period, Scope, ScopedLimits
from cloudgate.store.common import require_scope, transaction
from cloudgate.store.models import Budget, Limit, new_id


def _rule(row: Budget) -> BudgetRule:
    return BudgetRule(row.id, Scope(row.scope), row.scope_id, int(row.amount_micro), Period(row.period))


def _limits(row: Limit) -> Limits:
    return Limits(
        row.requests_per_minute, row.input_tokens_per_minute, row.output_tokens_per_minute, row.max_concurrent
    )


class BudgetRepository:
    """Spending caps: at most one per key, user or team and period."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def set(self, scope: Scope, scope_id: str, period: Period, amount_micro: int) -> BudgetRule:
        """Create or change the budget of `scope_id` for `period`; NotFound if the owner is unknown."""
        if amount_micro < 0:
            raise ValueError("a budget cannot be negative")
        scope, period = Scope(scope), Period(period)
        async with transaction(self._sessions) as session:
            await require_scope(session, scope, scope_id)
            row = await session.scalar(
                select(Budget).where(
                    Budget.scope == scope.value, Budget.scope_id == scope_id, Budget.period == period.value
                )
            )
            if row is None:
                row = Budget(
                    id=new_id("bud"),
                    scope=scope.value,
                    scope_id=scope_id,
                    period=period.value,
                    amount_micro=amount_micro,
                )
                session.add(row)
            else:
                row.amount_micro = amount_micro
            await session.flush()
            return _rule(row)

    async def list(self, scope: Scope | None = None, scope_id: str | None = None) -> list[BudgetRule]:
        """Budgets, optionally of one scope or one key, user or team."""
        stmt = select(Budget).order_by(Budget.scope, Budget.scope_id, Budget.period)
        if scope is not None:
            stmt = stmt.where(Budget.scope == Scope(scope).value)
        if scope_id is not None:
            stmt = stmt.where(Budget.scope_id == scope_id)
        async with self._sessions() as session:
            return [_rule(r) for r in await session.scalars(stmt)]

    async def delete(self, budget_id: str) -> bool:
        """Delete a budget; False if there was none with this id."""
        async with transaction(self._sessions) as session:
            result = await session.execute(delete(Budget).where(Budget.id == budget_id))
            return bool(result.rowcount)  # type: ignore[attr-defined]


class LimitRepository:
    """Rate limits: one set per key, user or team."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def set(self, scope: Scope, scope_id: str, limits: Limits) -> ScopedLimits:
        """Replace the limits of `scope_id`; NotFound if the owner is unknown."""
        scope = Scope(scope)
        async with transaction(self._sessions) as session:
            await require_scope(session, scope, scope_id)
            row = await session.get(Limit, (scope.value, scope_id))
            if row is None:
                row = Limit(scope=scope.value, scope_id=scope_id)
                session.add(row)
            row.requests_per_minute = limits.requests_per_minute
            row.input_tokens_per_minute = limits.input_tokens_per_minute
            row.output_tokens_per_minute = limits.output_tokens_per_minute
            row.max_concurrent = limits.max_concurrent
            await session.flush()
            return ScopedLimits(scope, scope_id, _limits(row))

    async def get(self, scope: Scope, scope_id: str) -> Limits | None:
        """The limits of `scope_id`, or None when it has none."""
        async with self._sessions() as session:
            row = await session.get(Limit, (Scope(scope).value, scope_id))
            return _limits(row) if row else None

    async def list(self, scope: Scope | None = None) -> list[ScopedLimits]:
        """Every set of limits, optionally of one scope."""
        stmt = select(Limit).order_by(Limit.scope, Limit.scope_id)
        if scope is not None:
            stmt = stmt.where(Limit.scope == Scope(scope).value)
        async with self._sessions() as session:
            return [ScopedLimits(Scope(r.scope), r.scope_id, _limits(r)) for r in await session.scalars(stmt)]

    async def delete(self, scope: Scope, scope_id: str) -> bool:
        """Remove the limits of `scope_id`; False if it had none."""
        async with transaction(self._sessions) as session:
            result = await session.execute(
                delete(Limit).where(Limit.scope == Scope(scope).value, Limit.scope_id == scope_id)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]
