"""Budgets and limits: set (create or replace), read, list, delete."""

from __future__ import annotations

import pytest

from cloudgate.governance.types import Limits, Period, Scope, ScopedLimits
from cloudgate.store import NotFound, Store


async def test_budgets(store: Store) -> None:
    team = await store.teams.create("t")
    ada = await store.users.create("ada")
    monthly = await store.budgets.set(Scope.TEAM, team.id, Period.MONTHLY, 100_000_000)
    assert monthly.budget_id.startswith("bud_") and monthly.amount_micro == 100_000_000
    raised = await store.budgets.set(Scope.TEAM, team.id, Period.MONTHLY, 150_000_000)
    assert raised.budget_id == monthly.budget_id and raised.amount_micro == 150_000_000
    daily = await store.budgets.set(Scope.USER, ada.id, Period.DAILY, 5_000_000)
    assert await store.budgets.list() == [raised, daily]
    assert await store.budgets.list(scope=Scope.USER) == [daily]
    assert await store.budgets.list(scope_id=team.id) == [raised]
    with pytest.raises(NotFound):
        await store.budgets.set(Scope.KEY, "key_missing", Period.DAILY, 1)
    with pytest.raises(ValueError):
        await store.budgets.set(Scope.TEAM, team.id, Period.DAILY, -1)
    assert await store.budgets.delete(daily.budget_id) is True
    assert await store.budgets.delete(daily.budget_id) is False
    assert await store.budgets.list() == [raised]


async def test_limits(store: Store) -> None:
    key = await store.keys.create("k")
    team = await store.teams.create("t")
    assert await store.limits.get(Scope.KEY, key.key.id) is None
    first = await store.limits.set(Scope.KEY, key.key.id, Limits(requests_per_minute=60, max_concurrent=4))
    assert first == ScopedLimits(Scope.KEY, key.key.id, Limits(requests_per_minute=60, max_concurrent=4))
    # Setting replaces the whole set: a field left out becomes unlimited.
    await store.limits.set(Scope.KEY, key.key.id, Limits(input_tokens_per_minute=10_000_000_000))
    assert await store.limits.get(Scope.KEY, key.key.id) == Limits(input_tokens_per_minute=10_000_000_000)
    await store.limits.set(Scope.TEAM, team.id, Limits(output_tokens_per_minute=1))
    assert [s.scope for s in await store.limits.list()] == [Scope.KEY, Scope.TEAM]
    assert [s.scope_id for s in await store.limits.list(Scope.TEAM)] == [team.id]
    with pytest.raises(NotFound):
        await store.limits.set(Scope.USER, "user_missing", Limits())
    assert await store.limits.delete(Scope.KEY, key.key.id) is True
    assert await store.limits.delete(Scope.KEY, key.key.id) is False
    assert await store.limits.get(Scope.KEY, key.key.id) is None
