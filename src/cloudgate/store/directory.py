"""Teams and users: who keys belong to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudgate.governance.types import Scope, provider_list, region_list
from cloudgate.store.common import UNSET, Unset, checked_list, optional_tuple, require, transaction
from cloudgate.store.models import ApiKey, Budget, Limit, Team, User, new_id


@dataclass(slots=True, frozen=True)
class TeamInfo:
    """A team as the admin API shows it."""

    id: str
    name: str
    created_at: datetime
    tags: tuple[str, ...]
    allowed_regions: tuple[str, ...] | None = None  # None: anywhere
    preferred_providers: tuple[str, ...] | None = None  # first preferred; None: no preference
    log_bodies: bool = False  # keep the bodies of every team key's requests in the activity log


@dataclass(slots=True, frozen=True)
class UserInfo:
    """A user as the admin API shows it."""

    id: str
    name: str
    email: str | None
    team_id: str | None
    created_at: datetime
    tags: tuple[str, ...]


def _team(row: Team) -> TeamInfo:
    return TeamInfo(
        row.id,
        row.name,
        row.created_at,
        tuple(row.tags or ()),
        allowed_regions=optional_tuple(row.allowed_regions),
        preferred_providers=optional_tuple(row.preferred_providers),
        log_bodies=bool(row.log_bodies),
    )


def _user(row: User) -> UserInfo:
    return UserInfo(row.id, row.name, row.email, row.team_id, row.created_at, tuple(row.tags or ()))


async def delete_policies(
    session: AsyncSession, scope: Scope, scope_ids: Iterable[str] | Select[Any]
) -> None:
    """Delete the budgets and limits of these keys, users or teams (they have no foreign keys)."""
    for model in (Budget, Limit):
        await session.execute(delete(model).where(model.scope == scope.value, model.scope_id.in_(scope_ids)))


class TeamRepository:
    """Create, read, update and delete teams."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(
        self,
        name: str,
        tags: Iterable[str] = (),
        *,
        allowed_regions: Iterable[str] | None = None,
        preferred_providers: Iterable[str] | None = None,
        log_bodies: bool = False,
    ) -> TeamInfo:
        """A new team; Conflict if the name is taken, Invalid for a malformed region or provider."""
        row = Team(
            id=new_id("team"),
            name=name,
            tags=list(tags),
            allowed_regions=checked_list("allowed_regions", region_list, allowed_regions),
            preferred_providers=checked_list("preferred_providers", provider_list, preferred_providers),
            log_bodies=log_bodies,
        )
        async with transaction(self._sessions) as session:
            session.add(row)
            await session.flush()
            return _team(row)

    async def get(self, team_id: str) -> TeamInfo | None:
        """The team with this id, or None."""
        async with self._sessions() as session:
            row = await session.get(Team, team_id)
            return _team(row) if row else None

    async def get_by_name(self, name: str) -> TeamInfo | None:
        """The team with this name, or None."""
        async with self._sessions() as session:
            row = await session.scalar(select(Team).where(Team.name == name))
            return _team(row) if row else None

    async def list(self) -> list[TeamInfo]:
        """Every team, by name."""
        async with self._sessions() as session:
            return [_team(r) for r in await session.scalars(select(Team).order_by(Team.name))]

    async def update(
        self,
        team_id: str,
        *,
        name: str | Unset = UNSET,
        tags: Iterable[str] | Unset = UNSET,
        allowed_regions: Iterable[str] | Unset | None = UNSET,
        preferred_providers: Iterable[str] | Unset | None = UNSET,
        log_bodies: bool | Unset = UNSET,
    ) -> TeamInfo:
        """Change a team's fields (None: anywhere / no preference); NotFound, Conflict or Invalid."""
        if allowed_regions is not UNSET:
            allowed_regions = checked_list("allowed_regions", region_list, allowed_regions)
        if preferred_providers is not UNSET:
            preferred_providers = checked_list("preferred_providers", provider_list, preferred_providers)
        async with transaction(self._sessions) as session:
            row = await require(session, Team, team_id)
            if name is not UNSET:
                row.name = name
            if tags is not UNSET:
                row.tags = list(tags)
            if allowed_regions is not UNSET:
                row.allowed_regions = allowed_regions
            if preferred_providers is not UNSET:
                row.preferred_providers = preferred_providers
            if log_bodies is not UNSET:
                row.log_bodies = log_bodies
            await session.flush()
            return _team(row)

    async def delete(self, team_id: str) -> bool:
        """Delete a team, its keys and their budgets and limits; members stay, without a team."""
        async with transaction(self._sessions) as session:
            await delete_policies(session, Scope.TEAM, [team_id])
            await delete_policies(session, Scope.KEY, select(ApiKey.id).where(ApiKey.team_id == team_id))
            # Foreign keys do the rest: ON DELETE CASCADE for keys, SET NULL for members.
            result = await session.execute(delete(Team).where(Team.id == team_id))
            return bool(result.rowcount)  # type: ignore[attr-defined]


class UserRepository:
    """Create, read, update and delete users."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(
        self, name: str, *, email: str | None = None, team_id: str | None = None, tags: Iterable[str] = ()
    ) -> UserInfo:
        """A new user; NotFound for an unknown team, Conflict if the name or email is taken."""
        async with transaction(self._sessions) as session:
            if team_id is not None:
                await require(session, Team, team_id)
            row = User(id=new_id("user"), name=name, email=email, team_id=team_id, tags=list(tags))
            session.add(row)
            await session.flush()
            return _user(row)

    async def get(self, user_id: str) -> UserInfo | None:
        """The user with this id, or None."""
        async with self._sessions() as session:
            row = await session.get(User, user_id)
            return _user(row) if row else None

    async def list(self, *, team_id: str | None = None) -> list[UserInfo]:
        """Every user (or a team's members), by name."""
        stmt = select(User).order_by(User.name)
        if team_id is not None:
            stmt = stmt.where(User.team_id == team_id)
        async with self._sessions() as session:
            return [_user(r) for r in await session.scalars(stmt)]

    async def update(
        self,
        user_id: str,
        *,
        name: str | Unset = UNSET,
        email: str | Unset | None = UNSET,
        team_id: str | Unset | None = UNSET,
        tags: Iterable[str] | Unset = UNSET,
    ) -> UserInfo:
        """Change a user's fields; NotFound if the user or the new team is unknown."""
        async with transaction(self._sessions) as session:
            row = await require(session, User, user_id)
            if name is not UNSET:
                row.name = name
            if email is not UNSET:
                row.email = email
            if team_id is not UNSET:
                if team_id is not None:
                    await require(session, Team, team_id)
                row.team_id = team_id
            if tags is not UNSET:
                row.tags = list(tags)
            await session.flush()
            return _user(row)

    async def delete(self, user_id: str) -> bool:
        """Delete a user, their keys, and the budgets and limits of both."""
        async with transaction(self._sessions) as session:
            await delete_policies(session, Scope.USER, [user_id])
            await delete_policies(session, Scope.KEY, select(ApiKey.id).where(ApiKey.user_id == user_id))
            result = await session.execute(delete(User).where(User.id == user_id))
            return bool(result.rowcount)  # type: ignore[attr-defined]
