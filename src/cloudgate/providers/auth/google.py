"""Google OAuth access tokens for Vertex AI: loaded with google-auth, cached, refreshed off the hot path.

`token()` returns the cached token without any I/O while it is valid for longer than the
refresh margin. A background task refreshes it shortly before it expires; an expired or
invalidated token is refreshed on demand. Every refresh is single-flight: however many callers
need a new token at once, google-auth is asked once and they all wait for that answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import google.auth
import google.auth.exceptions
import google.auth.transport.requests
import google.oauth2.credentials
import google.oauth2.service_account
import requests

from cloudgate.config.settings import VertexSettings
from cloudgate.protocol.errors import GatewayError
from cloudgate.util.tasks import spawn

log = logging.getLogger("cloudgate.providers.auth")

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"

# A token this close to its expiry is treated as expired: it could lapse on its way upstream.
_EXPIRY_SKEW = 1.0
# Lifetime assumed when credentials report no expiry (Google tokens live one hour).
_DEFAULT_LIFETIME = 3000.0
# Background refresh retry delays after a failure, in seconds.
_RETRY_MIN = 1.0
_RETRY_MAX = 60.0

_FIX_HINT = (
    "Check GOOGLE_APPLICATION_CREDENTIALS or vertex.credentials_file, "
    "or run `gcloud auth application-default login`"
)


class GoogleCredentialsError(GatewayError):
    """No usable Google access token: the gateway's own credentials are wrong or unreachable."""

    def __init__(self, message: str) -> None:
        # 500, not 401: the caller's key is fine, the gateway's Google credentials are not.
        super().__init__(500, message, error_type="api_error")


class GoogleTokenSource:
    """Cached Google OAuth access tokens for the cloud-platform scope."""

    def __init__(
        self,
        *,
        credentials_file: str | None = None,
        access_token: str | None = None,
        refresh_margin: float = 300.0,
        scopes: Sequence[str] = (CLOUD_PLATFORM_SCOPE,),
        credentials: Any = None,
        project_id: str | None = None,
    ) -> None:
        self._file = credentials_file
        self._static = access_token
        self._margin = refresh_margin
        self._scopes = list(scopes)
        self._credentials: Any = credentials
        self._project_id = project_id
        self._token: str | None = access_token
        # Monotonic times: when the cached token expires, and when to start renewing it.
        self._expires_at = float("inf") if access_token else 0.0
        self._renew_at = self._expires_at
        self._inflight: asyncio.Task[str | BaseException] | None = None
        self._refresher: asyncio.Task[Any] | None = None
        self._session: requests.Session | None = None
        self._closed = False
        self.refresh_count = 0

    @classmethod
    def from_settings(cls, settings: VertexSettings) -> GoogleTokenSource:
        """A token source configured like `settings` says (fixed token, key file, or ADC)."""
        return cls(
            credentials_file=settings.credentials_file,
            access_token=settings.access_token,
            refresh_margin=settings.token_refresh_margin,
        )

    @property
    def source(self) -> str:
        """Where tokens come from, for messages."""
        if self._static:
            return "a fixed access token"
        if self._file:
            return self._file
        return "Application Default Credentials"

    @property
    def project_id(self) -> str | None:
        """The project the credentials name (known once they are loaded), else None."""
        return self._project_id

    @property
    def can_refresh(self) -> bool:
        """Whether `invalidate()` can lead to a different token (False for a fixed token)."""
        return self._static is None

    async def start(self) -> None:
        """Load the credentials and the first token, then keep the token fresh in the background.

        A credentials file that cannot be read fails here; a token endpoint that does not answer
        is only logged, since `token()` tries again on demand.
        """
        if self._static is not None:
            return
        self._closed = False
        if self._credentials is None:
            await asyncio.to_thread(self._load_blocking)
        try:
            await self._refresh()
        except GatewayError as exc:
            log.warning("%s; will retry on demand", exc.message)
        self._ensure_refresher()

    async def close(self) -> None:
        """Stop the background refresher."""
        self._closed = True
        task, self._refresher = self._refresher, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                # Only swallow the cancellation we caused, not one aimed at our caller.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        if self._session is not None:
            self._session.close()
            self._session = None

    async def token(self) -> str:
        """A valid access token: the cached one unless it expired or was invalidated."""
        tok = self._token
        if tok is not None:
            now = time.monotonic()
            if now < self._renew_at:
                return tok
            if now < self._expires_at - _EXPIRY_SKEW:
                # Still usable: hand it out, and make sure someone is renewing it.
                if self._inflight is None and (self._refresher is None or self._refresher.done()):
                    self._start_refresh()
                return tok
        return await self._refresh()

    def invalidate(self, stale: str | None = None) -> None:
        """Forget the cached token (after an upstream 401) so the next `token()` refreshes.

        With `stale`, only that token is forgotten: concurrent 401s for the same token then cause
        one refresh, and a token refreshed in between is kept.
        """
        if self._static is not None:
            return
        if stale is not None and stale != self._token:
            return
        self._expires_at = self._renew_at = 0.0

    # -- refreshing ---------------------------------------------------------------------------

    async def _refresh(self) -> str:
        # Shielded: a caller that gives up must not cancel the refresh others are waiting for.
        result = await asyncio.shield(self._start_refresh())
        if isinstance(result, BaseException):
            raise result
        return result

    def _start_refresh(self) -> asyncio.Task[str | BaseException]:
        task = self._inflight
        if task is None:
            task = spawn(self._refresh_once(), name="google-token-refresh")
            self._inflight = task
        return task

    async def _refresh_once(self) -> str | BaseException:
        # Errors are returned, not raised, so every waiter sees the same one and the task
        # runner does not log it a second time.
        try:
            if self._credentials is None:
                await asyncio.to_thread(self._load_blocking)
            token, expiry = await asyncio.to_thread(self._refresh_blocking)
        except GatewayError as exc:
            return exc
        except Exception as exc:
            return GoogleCredentialsError(
                f"cannot get a Google access token from {self.source}: {_reason(exc)}. {_FIX_HINT}"
            )
        finally:
            self._inflight = None
        now = time.monotonic()
        lifetime = _seconds_until(expiry)
        self._token = token
        self._expires_at = now + lifetime
        # Renew `margin` before expiry, but never later than half-way through a short-lived
        # token's life, so a margin longer than the lifetime cannot make the refresher spin.
        self._renew_at = now + min(lifetime, max(lifetime - self._margin, lifetime / 2))
        self.refresh_count += 1
        return token

    def _ensure_refresher(self) -> None:
        if self._static is None and not self._closed and (self._refresher is None or self._refresher.done()):
            self._refresher = spawn(self._refresh_loop(), name="google-token-refresher")

    async def _refresh_loop(self) -> None:
        delay = _RETRY_MIN
        while not self._closed:
            wait = self._renew_at - time.monotonic()
            if wait > 0:
                # Wake at least once a minute, so an invalidated token is noticed early.
                await asyncio.sleep(min(wait, 60.0))
                continue
            try:
                await self._refresh()
                delay = _RETRY_MIN
                if self._renew_at <= time.monotonic():
                    # The upstream hands out tokens that are already due: do not spin.
                    await asyncio.sleep(_RETRY_MIN)
            except GatewayError as exc:
                log.warning("background token refresh failed (retrying in %.0fs): %s", delay, exc.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)

    # -- blocking google-auth calls (always run in a worker thread) ----------------------------

    def _load_blocking(self) -> None:
        try:
            if self._file:
                creds, project = _load_file(self._file, self._scopes)
            else:
                creds, project = google.auth.default(scopes=self._scopes)
        except (google.auth.exceptions.GoogleAuthError, OSError, ValueError) as exc:
            raise GoogleCredentialsError(
                f"cannot get a Google access token from {self.source}: {_reason(exc)}. {_FIX_HINT}"
            ) from exc
        self._credentials = creds
        if self._project_id is None:
            project = (
                project or getattr(creds, "project_id", None) or getattr(creds, "quota_project_id", None)
            )
            self._project_id = project if isinstance(project, str) and project else None

    def _refresh_blocking(self) -> tuple[str, dt.datetime | None]:
        if self._session is None:
            self._session = requests.Session()
        request = google.auth.transport.requests.Request(self._session)
        creds = self._credentials
        try:
            creds.refresh(request)
        except google.auth.exceptions.GoogleAuthError as exc:
            raise GoogleCredentialsError(
                f"cannot get a Google access token from {self.source}: {_reason(exc)}. {_FIX_HINT}"
            ) from exc
        token = creds.token
        if not isinstance(token, str) or not token:
            raise GoogleCredentialsError(f"cannot get a Google access token from {self.source}: empty token")
        expiry = creds.expiry
        return token, expiry if isinstance(expiry, dt.datetime) else None


def _load_file(path: str, scopes: list[str]) -> tuple[Any, str | None]:
    """Credentials from a key file: the type-specific loaders for the two common types.

    google-auth deprecates its generic loader for files of unchecked origin; the configured
    file is trusted, but the two types a gateway normally uses get their own loaders anyway.
    """
    with open(path, encoding="utf-8") as fh:
        info = json.load(fh)
    if not isinstance(info, dict):
        raise ValueError("not a JSON object")
    kind = info.get("type")
    if kind == "service_account":
        sa = google.oauth2.service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=scopes
        )
        return sa, info.get("project_id")
    if kind == "authorized_user":
        user = google.oauth2.credentials.Credentials.from_authorized_user_info(  # type: ignore[no-untyped-call]
            info, scopes=scopes
        )
        return user, info.get("quota_project_id")
    # External-account (workload identity federation), impersonated and other types.
    loaded: tuple[Any, str | None] = google.auth.load_credentials_from_file(  # type: ignore[no-untyped-call]
        path, scopes=scopes
    )
    return loaded


def _seconds_until(expiry: dt.datetime | None) -> float:
    if expiry is None:
        return _DEFAULT_LIFETIME
    # google-auth reports expiry as a naive UTC datetime.
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=dt.UTC)
    return (expiry - dt.datetime.now(dt.UTC)).total_seconds()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
