"""The log_bodies flags on keys and teams, and the Principal's flag drawn from either in one query."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from cloudgate.store import Store, hash_key


async def test_keys_and_teams_take_and_change_the_flag(store: Store) -> None:
    team = await store.teams.create("plain")
    assert team.log_bodies is False
    loud = await store.teams.create("loud", log_bodies=True)
    assert loud.log_bodies is True and (await store.teams.get(loud.id)) == loud
    assert (await store.teams.update(team.id, log_bodies=True)).log_bodies is True
    assert (await store.teams.update(team.id, name="renamed")).log_bodies is True

    key = await store.keys.create("k")
    assert key.key.log_bodies is False
    debug = await store.keys.create("debug", log_bodies=True)
    assert debug.key.log_bodies is True and (await store.keys.get(debug.key.id)) == debug.key
    assert (await store.keys.update(key.key.id, log_bodies=True)).log_bodies is True
    assert (await store.keys.update(key.key.id, tags=["x"])).log_bodies is True
    assert (await store.keys.update(key.key.id, log_bodies=False)).log_bodies is False


async def test_rotation_keeps_the_flag(store: Store) -> None:
    created = await store.keys.create("debug", log_bodies=True)
    rotated = await store.keys.rotate(created.key.id)
    assert rotated.key.log_bodies is True


async def test_principal_logs_bodies_if_its_key_or_its_team_asks(store: Store) -> None:
    quiet = await store.teams.create("quiet")
    loud = await store.teams.create("loud", log_bodies=True)
    member = await store.users.create("ada", team_id=loud.id)
    cases = {
        "bare": await store.keys.create("bare"),
        "quiet-team": await store.keys.create("q", team_id=quiet.id),
        "key-asks": await store.keys.create("k", team_id=quiet.id, log_bodies=True),
        "team-asks": await store.keys.create("t", team_id=loud.id),
        "user-in-loud-team": await store.keys.create("u", user_id=member.id),
    }
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        flags = {}
        for name, created in cases.items():
            principal = await store.keys.principal_for_hash(hash_key(created.plaintext))
            assert principal is not None
            flags[name] = principal.log_bodies
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", seen)
    assert flags == {
        "bare": False,
        "quiet-team": False,
        "key-asks": True,
        "team-asks": True,
        "user-in-loud-team": True,
    }
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == len(cases)
