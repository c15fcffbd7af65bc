"""Teams and users: CRUD, uniqueness, and what deleting takes with it."""

from __future__ import annotations

import pytest

from cloudgate.governance.types import Limits, Period, Scope
from cloudgate.store import Conflict, NotFound, Store


async def test_team_crud(store: Store) -> None:
    team = await store.teams.create("platform", tags=["infra"])
    assert team.id.startswith("team_") and team.tags == ("infra",)
    assert team.created_at.tzinfo is not None
    assert await store.teams.get(team.id) == team
    assert await store.teams.get_by_name("platform") == team
    renamed = await store.teams.update(team.id, name="platform-eng")
    assert renamed.name == "platform-eng" and renamed.tags == ("infra",)
    await store.teams.create("apps")
    assert [t.name for t in await store.teams.list()] == ["apps", "platform-eng"]
    with pytest.raises(Conflict):
        await store.teams.create("apps")
    with pytest.raises(NotFound):
        await store.teams.update("team_missing", tags=[])
    assert await store.teams.delete(team.id) is True
    assert await store.teams.delete(team.id) is False
    assert await store.teams.get(team.id) is None


async def test_user_crud(store: Store) -> None:
    team = await store.teams.create("platform")
    ada = await store.users.create("ada", email="ada@example.com", team_id=team.id, tags=["lead"])
    assert ada.id.startswith("user_") and ada.team_id == team.id
    bob = await store.users.create("bob")
    assert await store.users.get(ada.id) == ada
    assert [u.name for u in await store.users.list()] == ["ada", "bob"]
    assert [u.name for u in await store.users.list(team_id=team.id)] == ["ada"]
    with pytest.raises(Conflict):
        await store.users.create("ada2", email="ada@example.com")
    with pytest.raises(NotFound):
        await store.users.create("carol", team_id="team_missing")
    with pytest.raises(NotFound):
        await store.users.update(bob.id, team_id="team_missing")
    moved = await store.users.update(bob.id, team_id=team.id, email="bob@example.com")
    assert (moved.team_id, moved.email) == (team.id, "bob@example.com")
    left = await store.users.update(bob.id, team_id=None, email=None)
    assert (left.team_id, left.email) == (None, None)
    assert await store.users.delete(bob.id) is True
    assert await store.users.get(bob.id) is None


async def test_deleting_a_team_keeps_members_and_drops_its_keys_and_policies(store: Store) -> None:
    team = await store.teams.create("platform")
    ada = await store.users.create("ada", team_id=team.id)
    team_key = await store.keys.create("team key", team_id=team.id)
    user_key = await store.keys.create("ada's key", user_id=ada.id)
    await store.budgets.set(Scope.TEAM, team.id, Period.MONTHLY, 100)
    await store.budgets.set(Scope.KEY, team_key.key.id, Period.DAILY, 10)
    await store.limits.set(Scope.KEY, team_key.key.id, Limits(requests_per_minute=5))
    await store.teams.delete(team.id)
    assert (await store.users.get(ada.id)).team_id is None  # type: ignore[union-attr]
    assert await store.keys.get(team_key.key.id) is None
    assert await store.keys.get(user_key.key.id) is not None
    assert await store.budgets.list() == []
    assert await store.limits.list() == []


async def test_deleting_a_user_drops_their_keys_and_policies(store: Store) -> None:
    ada = await store.users.create("ada")
    key = await store.keys.create("k", user_id=ada.id)
    other = await store.keys.create("other")
    await store.budgets.set(Scope.USER, ada.id, Period.TOTAL, 100)
    await store.limits.set(Scope.KEY, key.key.id, Limits(max_concurrent=1))
    await store.limits.set(Scope.KEY, other.key.id, Limits(max_concurrent=2))
    assert await store.users.delete(ada.id) is True
    assert await store.keys.get(key.key.id) is None
    assert await store.budgets.list() == []
    assert [s.scope_id for s in await store.limits.list()] == [other.key.id]
