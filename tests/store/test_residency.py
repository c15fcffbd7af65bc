"""Region allow-lists on keys and teams and the team's provider preference: stored, checked, resolved."""

from __future__ import annotations

import pytest

from cloudgate.governance.types import Principal
from cloudgate.store import Invalid, NotFound, Store, StoreError, hash_key


async def principal(store: Store, plaintext: str) -> Principal:
    found = await store.keys.principal_for_hash(hash_key(plaintext))
    assert found is not None
    return found


async def test_team_fields_round_trip_update_and_clear(store: Store) -> None:
    team = await store.teams.create(
        "eu-team", ["eng"], allowed_regions=["eu", "europe-west1"], preferred_providers=["bedrock", "vertex"]
    )
    assert (team.allowed_regions, team.preferred_providers) == (("eu", "europe-west1"), ("bedrock", "vertex"))
    assert await store.teams.get(team.id) == team
    assert await store.teams.list() == [team]
    plain = await store.teams.create("plain")
    assert (plain.allowed_regions, plain.preferred_providers) == (None, None)

    # Leaving a field out leaves it alone; each can change on its own.
    renamed = await store.teams.update(team.id, name="eu-platform")
    assert (renamed.allowed_regions, renamed.preferred_providers) == (
        team.allowed_regions,
        team.preferred_providers,
    )
    changed = await store.teams.update(team.id, preferred_providers=["anthropic"])
    assert (changed.allowed_regions, changed.preferred_providers) == (("eu", "europe-west1"), ("anthropic",))
    changed = await store.teams.update(team.id, allowed_regions=["us"])
    assert changed.allowed_regions == ("us",)
    cleared = await store.teams.update(team.id, allowed_regions=None, preferred_providers=None)
    assert (cleared.allowed_regions, cleared.preferred_providers, cleared.tags) == (None, None, ("eng",))
    assert await store.teams.get(team.id) == cleared


async def test_key_regions_round_trip_update_clear_and_rotate(store: Store) -> None:
    created = await store.keys.create("k", allowed_regions=["eu-west-1", "eu"], allowed_models=["m"])
    assert created.key.allowed_regions == ("eu-west-1", "eu")
    assert await store.keys.get(created.key.id) == created.key
    assert (await store.keys.create("any")).key.allowed_regions is None

    untouched = await store.keys.update(created.key.id, name="renamed", allowed_models=None)
    assert untouched.allowed_regions == ("eu-west-1", "eu")
    updated = await store.keys.update(created.key.id, allowed_regions=["europe-west4"])
    assert updated.allowed_regions == ("europe-west4",)
    rotated = await store.keys.rotate(created.key.id)
    assert rotated.key.allowed_regions == ("europe-west4",)
    cleared = await store.keys.update(rotated.key.id, allowed_regions=None)
    assert cleared.allowed_regions is None
    assert (await principal(store, rotated.plaintext)).allowed_regions == ()


async def test_principal_carries_one_allow_list_per_source(store: Store) -> None:
    eu_team = await store.teams.create(
        "eu", allowed_regions=["eu"], preferred_providers=["vertex", "bedrock"]
    )
    open_team = await store.teams.create("open")

    neither = await store.keys.create("neither", team_id=open_team.id)
    key_only = await store.keys.create("key-only", team_id=open_team.id, allowed_regions=["europe-west1"])
    team_only = await store.keys.create("team-only", team_id=eu_team.id)
    both = await store.keys.create("both", team_id=eu_team.id, allowed_regions=["europe-west1", "eu-west-1"])
    teamless = await store.keys.create("teamless", allowed_regions=["us"])

    found = await principal(store, neither.plaintext)
    assert (found.allowed_regions, found.preferred_providers) == ((), ())
    found = await principal(store, key_only.plaintext)
    assert (found.allowed_regions, found.preferred_providers) == ((frozenset({"europe-west1"}),), ())
    found = await principal(store, team_only.plaintext)
    assert (found.allowed_regions, found.preferred_providers) == ((frozenset({"eu"}),), ("vertex", "bedrock"))
    found = await principal(store, both.plaintext)
    # The key's list first, then the team's: the router has to satisfy both.
    assert found.allowed_regions == (frozenset({"europe-west1", "eu-west-1"}), frozenset({"eu"}))
    assert found.preferred_providers == ("vertex", "bedrock")
    assert (await principal(store, teamless.plaintext)).allowed_regions == (frozenset({"us"}),)


async def test_principal_takes_the_team_through_the_user(store: Store) -> None:
    eu_team = await store.teams.create("eu", allowed_regions=["eu"], preferred_providers=["anthropic"])
    ada = await store.users.create("ada", team_id=eu_team.id)
    created = await store.keys.create("k", user_id=ada.id)
    found = await principal(store, created.plaintext)
    assert (found.team_id, found.allowed_regions, found.preferred_providers) == (
        eu_team.id,
        (frozenset({"eu"}),),
        ("anthropic",),
    )
    # The key's own team wins over the user's, for the allow-list as for budgets.
    other = await store.teams.create("us", allowed_regions=["us"])
    keyed = await store.keys.create("k2", user_id=ada.id, team_id=other.id)
    found = await principal(store, keyed.plaintext)
    assert (found.allowed_regions, found.preferred_providers) == ((frozenset({"us"}),), ())


async def test_principal_sees_a_changed_allow_list(store: Store) -> None:
    team = await store.teams.create("t")
    created = await store.keys.create("k", team_id=team.id)
    await store.teams.update(team.id, allowed_regions=["eu"], preferred_providers=["bedrock"])
    found = await principal(store, created.plaintext)
    assert (found.allowed_regions, found.preferred_providers) == ((frozenset({"eu"}),), ("bedrock",))


@pytest.mark.parametrize(
    ("regions", "providers", "field"),
    [
        (["EU"], None, "allowed_regions"),
        ([], None, "allowed_regions"),
        (["eu west"], None, "allowed_regions"),
        (["x" * 65], None, "allowed_regions"),
        (None, ["azure"], "preferred_providers"),
        (None, [], "preferred_providers"),
    ],
)
async def test_malformed_lists_are_refused_naming_the_field(
    store: Store, regions: list[str] | None, providers: list[str] | None, field: str
) -> None:
    team = await store.teams.create("t")
    with pytest.raises(Invalid, match=f"^{field}: "):
        await store.teams.create("t2", allowed_regions=regions, preferred_providers=providers)
    with pytest.raises(Invalid, match=f"^{field}: "):
        await store.teams.update(team.id, allowed_regions=regions, preferred_providers=providers)
    if regions is not None:
        with pytest.raises(Invalid, match=r"^allowed_regions: "):
            await store.keys.create("k", allowed_regions=regions)
        key = await store.keys.create("ok")
        with pytest.raises(Invalid, match=r"^allowed_regions: "):
            await store.keys.update(key.key.id, allowed_regions=regions)
    # Nothing was written by the refused calls.
    assert [t.name for t in await store.teams.list()] == ["t"]
    assert (await store.teams.get(team.id)) == team
    assert all(k.name == "ok" for k in await store.keys.list())


def test_invalid_is_a_store_error_and_a_value_error() -> None:
    assert issubclass(Invalid, StoreError) and issubclass(Invalid, ValueError)
    assert not issubclass(Invalid, NotFound)
