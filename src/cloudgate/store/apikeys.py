"""API keys: issuing, listing, revoking and rotating them, and resolving one to a `Principal`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudgate.governance.types import (
    BudgetRule,
    Limits,
    Period,
    Principal,
    Scope,
    ScopedLimits,
    region_list,
)
from cloudgate.store.common import (
    UNSET,
    NotFound,
    Unset,
    checked_list,
    optional_tuple,
    require,
    transaction,
)
from cloudgate.store.keys import generate_key
from cloudgate.store.models import ApiKey, Budget, Limit, Team, User, new_id, utcnow

_SCOPE_ORDER = {Scope.KEY: 0, Scope.USER: 1, Scope.TEAM: 2}


@dataclass(slots=True, frozen=True)
class KeyInfo:
    """A key as the admin API shows it: never its hash, never the key itself."""

    id: str
    name: str
    prefix: str
    user_id: str | None
    team_id: str | None
    is_admin: bool
    allowed_models: tuple[str, ...] | None
    tags: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    allowed_regions: tuple[str, ...] | None = None  # None: anywhere
    log_bodies: bool = False  # keep this key's request and response bodies in the activity log


@dataclass(slots=True, frozen=True)
class CreatedKey:
    """A key just issued: `plaintext` is the only copy, to hand to its owner once."""

    key: KeyInfo
    plaintext: str

    def __repr__(self) -> str:
        return f"CreatedKey(key={self.key!r})"


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        user_id=row.user_id,
        team_id=row.team_id,
        is_admin=row.is_admin,
        allowed_models=optional_tuple(row.allowed_models),
        tags=tuple(row.tags or ()),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        allowed_regions=optional_tuple(row.allowed_regions),
        log_bodies=bool(row.log_bodies),
    )


class KeyRepository:
    """Issue and manage keys, and look them up on the request path."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(
        self,
        name: str,
        *,
        user_id: str | None = None,
        team_id: str | None = None,
        is_admin: bool = False,
        allowed_models: Iterable[str] | None = None,
        tags: Iterable[str] = (),
        expires_at: datetime | None = None,
        allowed_regions: Iterable[str] | None = None,
        log_bodies: bool = False,
    ) -> CreatedKey:
        """Issue a key (its plaintext exists nowhere else); NotFound: unknown owner, Invalid: bad region."""
        regions = checked_list("allowed_regions", region_list, allowed_regions)
        async with transaction(self._sessions) as session:
            return await _issue(
                session,
                name=name,
                user_id=user_id,
                team_id=team_id,
                is_admin=is_admin,
                allowed_models=None if allowed_models is None else list(allowed_models),
                allowed_regions=regions,
                tags=list(tags),
                expires_at=expires_at,
                log_bodies=log_bodies,
            )

    async def get(self, key_id: str) -> KeyInfo | None:
        """The key with this id, or None."""
        async with self._sessions() as session:
            row = await session.get(ApiKey, key_id)
            return _info(row) if row else None

    async def list(
        self, *, user_id: str | None = None, team_id: str | None = None, include_revoked: bool = False
    ) -> list[KeyInfo]:
        """Keys, newest first, optionally those of one user or team."""
        stmt = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)
        if user_id is not None:
            stmt = stmt.where(ApiKey.user_id == user_id)
        if team_id is not None:
            stmt = stmt.where(ApiKey.team_id == team_id)
        if not include_revoked:
            stmt = stmt.where(ApiKey.revoked_at.is_(None))
        async with self._sessions() as session:
            return [_info(r) for r in await session.scalars(stmt)]

    async def revoke(self, key_id: str, now: datetime | None = None) -> bool:
        """Revoke a key; False if it is unknown or already revoked."""
        async with transaction(self._sessions) as session:
            result = await session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=now or utcnow())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def rotate(self, key_id: str, now: datetime | None = None) -> CreatedKey:
        """Revoke a live key and issue a replacement with the same owner, settings, limits and budgets."""
        async with transaction(self._sessions) as session:
            old = await require(session, ApiKey, key_id)
            if old.revoked_at is not None:
                raise NotFound(f"key {key_id!r} is revoked")
            old.revoked_at = now or utcnow()
            created = await _issue(
                session,
                name=old.name,
                user_id=old.user_id,
                team_id=old.team_id,
                is_admin=old.is_admin,
                allowed_models=old.allowed_models,
                allowed_regions=old.allowed_regions,
                tags=list(old.tags or ()),
                expires_at=old.expires_at,
                log_bodies=bool(old.log_bodies),
            )
            # Limits and budgets set on the key itself follow it, else rotating would lift them.
            for limit in await session.scalars(
                select(Limit).where(Limit.scope == "key", Limit.scope_id == key_id)
            ):
                session.add(_copy_limit(limit, created.key.id))
            for budget in await session.scalars(
                select(Budget).where(Budget.scope == "key", Budget.scope_id == key_id)
            ):
                session.add(
                    Budget(
                        id=new_id("bud"),
                        scope="key",
                        scope_id=created.key.id,
                        amount_micro=budget.amount_micro,
                        period=budget.period,
                    )
                )
            return created

    async def update(
        self,
        key_id: str,
        *,
        name: str | Unset = UNSET,
        allowed_models: Iterable[str] | Unset | None = UNSET,
        expires_at: datetime | Unset | None = UNSET,
        tags: Iterable[str] | Unset = UNSET,
        is_admin: bool | Unset = UNSET,
        allowed_regions: Iterable[str] | Unset | None = UNSET,
        log_bodies: bool | Unset = UNSET,
    ) -> KeyInfo:
        """Change a key's settings (None: any model / no expiry / anywhere); NotFound if unknown."""
        if allowed_regions is not UNSET:
            allowed_regions = checked_list("allowed_regions", region_list, allowed_regions)
        async with transaction(self._sessions) as session:
            row = await require(session, ApiKey, key_id)
            if name is not UNSET:
                row.name = name
            if allowed_models is not UNSET:
                row.allowed_models = None if allowed_models is None else list(allowed_models)
            if allowed_regions is not UNSET:
                row.allowed_regions = allowed_regions
            if expires_at is not UNSET:
                row.expires_at = expires_at
            if tags is not UNSET:
                row.tags = list(tags)
            if is_admin is not UNSET:
                row.is_admin = is_admin
            if log_bodies is not UNSET:
                row.log_bodies = log_bodies
            await session.flush()
            return _info(row)

    async def principal_for_hash(self, key_hash: str, now: datetime | None = None) -> Principal | None:
        """The live key with this hash and everything that constrains it, in one query; else None."""
        now = now or utcnow()
        team_id = func.coalesce(ApiKey.team_id, User.team_id)

        def owned_by_key(scope: Any, scope_id: Any) -> ColumnElement[bool]:
            return or_(
                and_(scope == "key", scope_id == ApiKey.id),
                and_(scope == "user", scope_id == ApiKey.user_id),
                and_(scope == "team", scope_id == team_id),
            )

        # Outer joins to limits and budgets multiply rows, but only to a bounded handful (at most
        # 3 limit rows x 12 budget rows), which is cheaper than a second round trip per request.
        stmt = (
            select(
                ApiKey.id,
                ApiKey.prefix,
                ApiKey.user_id,
                team_id.label("team_id"),
                ApiKey.is_admin,
                ApiKey.allowed_models,
                ApiKey.allowed_regions,
                ApiKey.tags,
                ApiKey.expires_at,
                Team.allowed_regions.label("team_regions"),
                Team.preferred_providers,
                ApiKey.log_bodies,
                Team.log_bodies.label("team_log_bodies"),
                Limit.scope.label("l_scope"),
                Limit.scope_id.label("l_scope_id"),
                Limit.requests_per_minute,
                Limit.input_tokens_per_minute,
                Limit.output_tokens_per_minute,
                Limit.max_concurrent,
                Budget.id.label("b_id"),
                Budget.scope.label("b_scope"),
                Budget.scope_id.label("b_scope_id"),
                Budget.amount_micro,
                Budget.period,
            )
            .select_from(ApiKey)
            .outerjoin(User, User.id == ApiKey.user_id)
            .outerjoin(Team, Team.id == team_id)
            .outerjoin(Limit, owned_by_key(Limit.scope, Limit.scope_id))
            .outerjoin(Budget, owned_by_key(Budget.scope, Budget.scope_id))
            .where(
                ApiKey.key_hash == key_hash,
                ApiKey.revoked_at.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
            )
        )
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        if not rows:
            return None
        limits: dict[tuple[str, str], ScopedLimits] = {}
        budgets: dict[str, BudgetRule] = {}
        for row in rows:
            if row.l_scope is not None:
                limits[(row.l_scope, row.l_scope_id)] = ScopedLimits(
                    Scope(row.l_scope),
                    row.l_scope_id,
                    Limits(
                        row.requests_per_minute,
                        row.input_tokens_per_minute,
                        row.output_tokens_per_minute,
                        row.max_concurrent,
                    ),
                )
            if row.b_id is not None:
                budgets[row.b_id] = BudgetRule(
                    row.b_id, Scope(row.b_scope), row.b_scope_id, int(row.amount_micro), Period(row.period)
                )
        first = rows[0]
        return Principal(
            key_id=first.id,
            key_prefix=first.prefix,
            user_id=first.user_id,
            team_id=first.team_id,
            is_admin=bool(first.is_admin),
            allowed_models=None if first.allowed_models is None else frozenset(first.allowed_models),
            limits=tuple(sorted(limits.values(), key=lambda s: _SCOPE_ORDER[s.scope])),
            budgets=tuple(
                sorted(budgets.values(), key=lambda b: (_SCOPE_ORDER[b.scope], list(Period).index(b.period)))
            ),
            expires_at=first.expires_at,
            tags=tuple(first.tags or ()),
            # The key's list, then its team's: the router must satisfy each.
            allowed_regions=tuple(
                frozenset(regions)
                for regions in (first.allowed_regions, first.team_regions)
                if regions is not None
            ),
            preferred_providers=tuple(first.preferred_providers or ()),
            log_bodies=bool(first.log_bodies or first.team_log_bodies),
        )

    async def touch_last_used(self, key_ids: Iterable[str], now: datetime | None = None) -> None:
        """Record that these keys were just used, in one statement (callers batch them)."""
        ids = sorted(set(key_ids))
        if not ids:
            return
        async with transaction(self._sessions) as session:
            await session.execute(
                update(ApiKey).where(ApiKey.id.in_(ids)).values(last_used_at=now or utcnow())
            )


async def _issue(
    session: AsyncSession,
    *,
    name: str,
    user_id: str | None,
    team_id: str | None,
    is_admin: bool,
    allowed_models: list[str] | None,
    allowed_regions: list[str] | None,
    tags: list[str],
    expires_at: datetime | None,
    log_bodies: bool,
) -> CreatedKey:
    if user_id is not None:
        await require(session, User, user_id)
    if team_id is not None:
        await require(session, Team, team_id)
    new = generate_key()
    row = ApiKey(
        id=new_id("key"),
        name=name,
        prefix=new.prefix,
        key_hash=new.key_hash,
        user_id=user_id,
        team_id=team_id,
        is_admin=is_admin,
        allowed_models=allowed_models,
        allowed_regions=allowed_regions,
        tags=tags,
        expires_at=expires_at,
        log_bodies=log_bodies,
    )
    session.add(row)
    await session.flush()
    return CreatedKey(_info(row), new.plaintext)


def _copy_limit(limit: Limit, key_id: str) -> Limit:
    return Limit(
        scope="key",
        scope_id=key_id,
        requests_per_minute=limit.requests_per_minute,
        input_tokens_per_minute=limit.input_tokens_per_minute,
        output_tokens_per_minute=limit.output_tokens_per_minute,
        max_concurrent=limit.max_concurrent,
    )
