"""Keys: issuing, listing, revoking, rotating, updating, and resolving a hash to a Principal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from cloudgate.governance.types import BudgetRule, Limits, Period, Principal, Scope, ScopedLimits
from cloudgate.store import NotFound, Store, hash_key
from cloudgate.store.models import ApiKey, Base


async def test_create_returns_the_plaintext_once_and_stores_only_its_hash(store: Store) -> None:
    created = await store.keys.create("ci", allowed_models=["claude-sonnet-4-5"], tags=["ci"])
    assert created.plaintext.startswith("cg-") and created.key.prefix == created.plaintext[:10]
    assert created.plaintext not in repr(created)
    assert created.key.id.startswith("key_")
    listed = await store.keys.list()
    assert listed == [created.key]
    assert not any(hasattr(k, "key_hash") for k in listed)
    # Scan every column of every row of every table for the plaintext.
    async with store.sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                assert all(created.plaintext not in str(value) for value in row), table.name
        stored = await session.scalar(select(ApiKey.key_hash).where(ApiKey.id == created.key.id))
    assert stored == hash_key(created.plaintext)


async def test_list_filters_and_revoke(store: Store) -> None:
    team = await store.teams.create("t")
    ada = await store.users.create("ada")
    a = await store.keys.create("a", user_id=ada.id)
    b = await store.keys.create("b", team_id=team.id)
    assert [k.id for k in await store.keys.list(user_id=ada.id)] == [a.key.id]
    assert [k.id for k in await store.keys.list(team_id=team.id)] == [b.key.id]
    assert await store.keys.revoke(a.key.id) is True
    assert await store.keys.revoke(a.key.id) is False
    assert await store.keys.revoke("key_missing") is False
    assert [k.id for k in await store.keys.list()] == [b.key.id]
    revoked = [k for k in await store.keys.list(include_revoked=True) if k.id == a.key.id]
    assert revoked[0].revoked_at is not None
    with pytest.raises(NotFound):
        await store.keys.create("x", user_id="user_missing")
    with pytest.raises(NotFound):
        await store.keys.create("x", team_id="team_missing")


async def test_update_changes_only_what_is_given(store: Store) -> None:
    created = await store.keys.create("k", allowed_models=["a"], tags=["x"])
    expiry = datetime(2030, 1, 1, tzinfo=UTC)
    updated = await store.keys.update(created.key.id, expires_at=expiry, is_admin=True)
    assert (updated.allowed_models, updated.tags, updated.expires_at, updated.is_admin) == (
        ("a",),
        ("x",),
        expiry,
        True,
    )
    updated = await store.keys.update(created.key.id, allowed_models=None, tags=[], name="renamed")
    assert (updated.allowed_models, updated.tags, updated.name) == (None, (), "renamed")
    assert await store.keys.get(created.key.id) == updated
    with pytest.raises(NotFound):
        await store.keys.update("key_missing", name="x")


async def test_rotate_revokes_and_reissues_with_the_same_settings(store: Store) -> None:
    ada = await store.users.create("ada")
    expiry = datetime(2030, 1, 1, tzinfo=UTC)
    old = await store.keys.create("k", user_id=ada.id, allowed_models=["m"], tags=["t"], expires_at=expiry)
    await store.limits.set(Scope.KEY, old.key.id, Limits(requests_per_minute=7))
    await store.budgets.set(Scope.KEY, old.key.id, Period.DAILY, 1_000)
    new = await store.keys.rotate(old.key.id)
    assert new.plaintext != old.plaintext and new.key.id != old.key.id
    assert (new.key.name, new.key.user_id, new.key.allowed_models, new.key.tags, new.key.expires_at) == (
        "k",
        ada.id,
        ("m",),
        ("t",),
        expiry,
    )
    assert await store.keys.principal_for_hash(hash_key(old.plaintext)) is None
    principal = await store.keys.principal_for_hash(hash_key(new.plaintext))
    assert principal is not None
    assert principal.limits == (ScopedLimits(Scope.KEY, new.key.id, Limits(requests_per_minute=7)),)
    assert [(b.scope_id, b.amount_micro) for b in principal.budgets] == [(new.key.id, 1_000)]
    with pytest.raises(NotFound):
        await store.keys.rotate(old.key.id)


async def test_principal_combines_key_user_and_team_limits_and_budgets(store: Store) -> None:
    team = await store.teams.create("platform")
    ada = await store.users.create("ada", team_id=team.id)
    expiry = datetime(2030, 1, 1, tzinfo=UTC)
    created = await store.keys.create(
        "k",
        user_id=ada.id,
        allowed_models=["claude-opus-4-1", "claude-sonnet-4-5"],
        tags=["ci"],
        expires_at=expiry,
    )
    key_id = created.key.id
    await store.limits.set(Scope.KEY, key_id, Limits(requests_per_minute=10))
    await store.limits.set(Scope.USER, ada.id, Limits(input_tokens_per_minute=1000, max_concurrent=2))
    await store.limits.set(Scope.TEAM, team.id, Limits(output_tokens_per_minute=500))
    key_daily = await store.budgets.set(Scope.KEY, key_id, Period.DAILY, 1_000_000)
    user_weekly = await store.budgets.set(Scope.USER, ada.id, Period.WEEKLY, 5_000_000)
    team_monthly = await store.budgets.set(Scope.TEAM, team.id, Period.MONTHLY, 50_000_000)
    team_total = await store.budgets.set(Scope.TEAM, team.id, Period.TOTAL, 90_000_000)
    # Someone else's policies must not leak in.
    other = await store.keys.create("other")
    await store.limits.set(Scope.KEY, other.key.id, Limits(requests_per_minute=1))
    await store.budgets.set(Scope.KEY, other.key.id, Period.DAILY, 1)

    principal = await store.keys.principal_for_hash(hash_key(created.plaintext))
    assert principal == Principal(
        key_id=key_id,
        key_prefix=created.key.prefix,
        user_id=ada.id,
        team_id=team.id,
        is_admin=False,
        allowed_models=frozenset({"claude-opus-4-1", "claude-sonnet-4-5"}),
        limits=(
            ScopedLimits(Scope.KEY, key_id, Limits(requests_per_minute=10)),
            ScopedLimits(Scope.USER, ada.id, Limits(input_tokens_per_minute=1000, max_concurrent=2)),
            ScopedLimits(Scope.TEAM, team.id, Limits(output_tokens_per_minute=500)),
        ),
        budgets=(key_daily, user_weekly, team_monthly, team_total),
        expires_at=expiry,
        tags=("ci",),
    )
    assert all(isinstance(b, BudgetRule) for b in principal.budgets)


async def test_principal_team_comes_from_the_key_before_the_user(store: Store) -> None:
    users_team = await store.teams.create("a")
    keys_team = await store.teams.create("b")
    ada = await store.users.create("ada", team_id=users_team.id)
    await store.budgets.set(Scope.TEAM, users_team.id, Period.DAILY, 1)
    await store.budgets.set(Scope.TEAM, keys_team.id, Period.DAILY, 2)
    created = await store.keys.create("k", user_id=ada.id, team_id=keys_team.id)
    principal = await store.keys.principal_for_hash(hash_key(created.plaintext))
    assert principal is not None and principal.team_id == keys_team.id
    assert [b.amount_micro for b in principal.budgets] == [2]


async def test_principal_for_a_bare_key(store: Store) -> None:
    created = await store.keys.create("admin", is_admin=True)
    principal = await store.keys.principal_for_hash(hash_key(created.plaintext))
    assert principal == Principal(key_id=created.key.id, key_prefix=created.key.prefix, is_admin=True)


async def test_unknown_revoked_and_expired_keys_resolve_to_none(store: Store) -> None:
    now = datetime.now(UTC)
    assert await store.keys.principal_for_hash(hash_key("cg-unknown")) is None
    revoked = await store.keys.create("r")
    await store.keys.revoke(revoked.key.id)
    assert await store.keys.principal_for_hash(hash_key(revoked.plaintext)) is None
    expiring = await store.keys.create("e", expires_at=now + timedelta(hours=1))
    digest = hash_key(expiring.plaintext)
    assert await store.keys.principal_for_hash(digest, now=now) is not None
    assert await store.keys.principal_for_hash(digest, now=now + timedelta(hours=1)) is None
    assert await store.keys.principal_for_hash(digest, now=now + timedelta(days=1)) is None


async def test_touch_last_used_in_one_batch(store: Store) -> None:
    a = await store.keys.create("a")
    b = await store.keys.create("b")
    c = await store.keys.create("c")
    when = datetime(2025, 6, 1, 12, 30, tzinfo=UTC)
    await store.keys.touch_last_used([a.key.id, b.key.id, a.key.id], now=when)
    await store.keys.touch_last_used([])
    used = {k.id: k.last_used_at for k in await store.keys.list()}
    assert used == {a.key.id: when, b.key.id: when, c.key.id: None}
