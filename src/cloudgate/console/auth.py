"""Signing in to the console: server-side sessions, CSRF tokens, the origin check, login throttling.

A session is a random token in a cookie; the store keeps only its SHA-256, so a copy of the
database signs nobody in, and deleting the row (logout, expiry) ends the session in every gateway
process at once (`cloudgate serve --workers N` shares the store). Each session has its own CSRF
token, which every state-changing request must send back (a form field or `X-CSRF-Token`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update

from cloudgate.store import Store
from cloudgate.store.models import ConsoleSessionRow

COOKIE = "cloudgate_console"
COOKIE_PATH = "/ui"
IDLE = timedelta(hours=12)  # a session unused this long ends
LIFETIME = timedelta(days=7)  # and none outlives this, used or not
TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often per session


@dataclass(slots=True, frozen=True)
class ConsoleSession:
    """A live session: who signed in and the token forms must carry."""

    token_hash: str
    csrf_token: str
    key_id: str
    created_at: datetime
    last_seen_at: datetime


def token_hash(token: str) -> str:
    """What the store keeps of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_ok(session: ConsoleSession, presented: str | None) -> bool:
    """Whether `presented` is this session's CSRF token (compared in constant time)."""
    return bool(presented) and hmac.compare_digest(session.csrf_token.encode(), (presented or "").encode())


class Sessions:
    """Console sessions in the store's `console_sessions` table."""

    def __init__(self, store: Store) -> None:
        self._sessions = store.sessions

    async def create(self, key_id: str, now: datetime | None = None) -> tuple[str, ConsoleSession]:
        """A new session for `key_id`: the token for the cookie, and the session."""
        now = now or datetime.now(UTC)
        token = secrets.token_urlsafe(32)
        row = ConsoleSessionRow(
            token_hash=token_hash(token),
            csrf_token=secrets.token_urlsafe(32),
            key_id=key_id,
            created_at=now,
            last_seen_at=now,
            expires_at=min(now + IDLE, now + LIFETIME),
        )
        async with self._sessions.begin() as session:
            session.add(row)
            # Expired sessions are swept as new ones start: a sign-in is rare, the delete indexed.
            await session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.expires_at <= now))
        return token, _view(row)

    async def get(self, token: str | None, now: datetime | None = None) -> ConsoleSession | None:
        """The live session behind a cookie's token, its idle expiry pushed back; None if none."""
        if not token:
            return None
        now = now or datetime.now(UTC)
        digest = token_hash(token)
        async with self._sessions() as session:
            row = await session.get(ConsoleSessionRow, digest)
            if row is None:
                return None
            if row.expires_at <= now:
                await session.delete(row)
                await session.commit()
                return None
            if now - row.last_seen_at >= TOUCH_EVERY:
                await session.execute(
                    update(ConsoleSessionRow)
                    .where(ConsoleSessionRow.token_hash == digest)
                    .values(last_seen_at=now, expires_at=min(now + IDLE, row.created_at + LIFETIME))
                )
                await session.commit()
            return _view(row)

    async def end(self, token_hash_: str) -> None:
        """Log a session out."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(ConsoleSessionRow).where(ConsoleSessionRow.token_hash == token_hash_)
            )

    async def end_for_key(self, key_id: str) -> int:
        """End every session a key signed in (the key was revoked or is no longer an admin)."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(ConsoleSessionRow).where(ConsoleSessionRow.key_id == key_id)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    async def count(self) -> int:
        """How many sessions exist (tests)."""
        async with self._sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(ConsoleSessionRow)) or 0)


def _view(row: ConsoleSessionRow) -> ConsoleSession:
    return ConsoleSession(row.token_hash, row.csrf_token, row.key_id, row.created_at, row.last_seen_at)


def session_cookie(token: str, *, secure: bool, max_age: int | None = None) -> bytes:
    """The Set-Cookie value for a session token ("" with max_age 0 clears it)."""
    parts = [f"{COOKIE}={token}", f"Path={COOKIE_PATH}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts).encode()


def same_origin(headers: dict[str, str], scheme: str) -> bool:
    """Whether a state-changing request may come from where it says it does.

    Browsers send `Origin` on every POST; when it is there it must be this console's own
    origin (scheme and Host). Without one (a script, an old browser) the Referer, if any, must
    be; the CSRF token is still required either way.
    """
    host = headers.get("host", "")
    own = f"{scheme}://{host}"
    origin = headers.get("origin")
    if origin is not None:
        return hmac.compare_digest(origin.encode(), own.encode())
    referer = headers.get("referer")
    if referer is not None:
        return referer == own or referer.startswith(own + "/")
    return True


class LoginThrottle:
    """Failed sign-ins per client address: past `attempts` within `window` seconds, wait.

    Kept in the process's memory: with `--workers N` each process counts its own, which still
    bounds guessing to N times the rate; the admin key's length does the rest.
    """

    def __init__(self, attempts: int = 10, window: float = 300.0, clock: object = time.monotonic) -> None:
        self.attempts = attempts
        self.window = window
        self._clock = clock
        self._failures: dict[str, list[float]] = {}

    def _now(self) -> float:
        clock = self._clock
        assert callable(clock)
        return float(clock())

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may now."""
        now = self._now()
        recent = [t for t in self._failures.get(client, []) if now - t < self.window]
        if recent:
            self._failures[client] = recent
        else:
            self._failures.pop(client, None)
        if len(recent) < self.attempts:
            return 0.0
        return max(0.0, self.window - (now - recent[0]))

    def failed(self, client: str) -> None:
        """Count a failed attempt."""
        if len(self._failures) > 10_000:  # a flood from many addresses must not grow without bound
            self._failures.clear()
        self._failures.setdefault(client, []).append(self._now())

    def succeeded(self, client: str) -> None:
        """Forget a client's failures."""
        self._failures.pop(client, None)
