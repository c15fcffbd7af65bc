"""Anthropic API credentials: a fixed API key, a bearer token, or a key helper command.

The key helper mirrors Claude Code's `apiKeyHelper`: a shell command whose stdout is the key,
run off the event loop, cached for `api_key_helper_ttl_ms` and run again after the upstream
answers 401. Runs are single-flight: however many requests need a new key at once, the command
runs once and they all wait for its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable

from cloudgate.config.settings import AnthropicSettings
from cloudgate.protocol.errors import GatewayError

log = logging.getLogger("cloudgate.providers.auth")

# A helper that has not answered in this many seconds is treated as failed.
HELPER_TIMEOUT = 30.0
# How much of a failing helper's stderr goes into the error message.
_STDERR_EXCERPT = 300


class ApiKeyError(GatewayError):
    """No usable Anthropic API credentials: the gateway's own key is missing or its helper failed."""

    def __init__(self, message: str) -> None:
        # 500, not 401: the caller's key is fine, the gateway's upstream credentials are not.
        super().__init__(500, message, error_type="api_error")


class AnthropicCredentials:
    """The auth headers for Anthropic API requests, from a key, a token or a helper command."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        auth_token: str | None = None,
        helper: str | None = None,
        helper_ttl_ms: int = 300_000,
        helper_timeout: float = HELPER_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._helper = helper
        self._ttl = helper_ttl_ms / 1000.0
        self._timeout = helper_timeout
        self._clock = clock
        self._static: dict[str, str] | None = None
        if helper is None:
            # Fixed credentials: one header dict, built once and shared by every request.
            static: dict[str, str] = {}
            if api_key:
                static["x-api-key"] = api_key
            if auth_token:
                static["Authorization"] = f"Bearer {auth_token}"
            self._static = static
        self._key: str | None = None
        self._headers: dict[str, str] = {}
        self._expires_at = 0.0
        self._inflight: asyncio.Task[str] | None = None
        # How many times the helper command ran.
        self.helper_runs = 0

    @classmethod
    def from_settings(cls, settings: AnthropicSettings) -> AnthropicCredentials:
        """Credentials configured like `settings` says (the helper wins over fixed values)."""
        return cls(
            api_key=settings.api_key,
            auth_token=settings.auth_token,
            helper=settings.api_key_helper,
            helper_ttl_ms=settings.api_key_helper_ttl_ms,
        )

    @property
    def can_refresh(self) -> bool:
        """Whether a 401 can be answered by fetching a new key (helper mode only)."""
        return self._helper is not None

    @property
    def configured(self) -> bool:
        """Whether any credential source is set."""
        return self._helper is not None or bool(self._static)

    async def start(self) -> None:
        """Run the helper once up front; a failure is logged here and raised on the first request."""
        if self._helper is None:
            if not self._static:
                log.warning("no Anthropic API credentials configured; requests will go unauthenticated")
            return
        try:
            await self._fetch()
        except ApiKeyError as exc:
            log.warning("%s; will retry on demand", exc.message)

    async def close(self) -> None:
        """Wait for a helper run in flight, if any."""
        task, self._inflight = self._inflight, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, ApiKeyError):
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise

    async def headers(self) -> dict[str, str]:
        """The auth headers for one request (shared: copy before editing)."""
        if self._static is not None:
            return self._static
        if self._key is not None and self._clock() < self._expires_at:
            return self._headers
        await self._fetch()
        return self._headers

    def current_key(self) -> str | None:
        """The helper's cached key, if any (to pass to `invalidate`)."""
        return self._key

    def invalidate(self, key: str | None) -> None:
        """Forget `key` (the upstream refused it) unless a newer key already replaced it."""
        if self._helper is not None and key is not None and key == self._key:
            self._expires_at = 0.0

    async def _fetch(self) -> str:
        task = self._inflight
        if task is None or task.done():
            task = asyncio.ensure_future(self._run_helper())
            self._inflight = task
        # shield: one request giving up must not cancel the run the others wait for.
        return await asyncio.shield(task)

    async def _run_helper(self) -> str:
        assert self._helper is not None
        self.helper_runs += 1
        try:
            proc = await asyncio.create_subprocess_shell(
                self._helper,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                # Its own process group, so a timeout kills the whole pipeline, not just the shell.
                start_new_session=True,
            )
        except OSError as exc:
            raise ApiKeyError(f"api_key_helper could not be started: {exc}") from exc
        try:
            async with asyncio.timeout(self._timeout):
                out, err = await proc.communicate()
        except TimeoutError:
            await _kill(proc)
            raise ApiKeyError(f"api_key_helper did not answer within {self._timeout:g}s") from None
        except asyncio.CancelledError:
            await _kill(proc)
            raise
        if proc.returncode != 0:
            detail = err.decode("utf-8", "replace").strip()[:_STDERR_EXCERPT]
            raise ApiKeyError(
                f"api_key_helper exited with status {proc.returncode}" + (f": {detail}" if detail else "")
            )
        key = out.decode("utf-8", "replace").strip()
        if not key:
            raise ApiKeyError("api_key_helper printed no key")
        self._key = key
        # As Claude Code sends a helper's value: both as the API key and as a bearer token.
        self._headers = {"x-api-key": key, "Authorization": f"Bearer {key}"}
        self._expires_at = self._clock() + self._ttl
        log.info("api_key_helper produced a key (run %d)", self.helper_runs)
        return key


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()
