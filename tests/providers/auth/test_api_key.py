"""AnthropicCredentials: fixed key and token headers, and the key helper (a real shell script):
caching, TTL expiry, invalidation after a 401, single-flight runs and clear failures."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from cloudgate.config.settings import AnthropicSettings
from cloudgate.protocol.errors import GatewayError
from cloudgate.providers.auth.api_key import AnthropicCredentials, ApiKeyError


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key_helper(tmp_path: Path, key: str = "sk-helper-1", *, delay: float = 0) -> tuple[str, Path, Path]:
    """A helper script printing the key in `key.txt` (rotate it by rewriting) and logging each run."""
    key_file = tmp_path / "key.txt"
    key_file.write_text(key + "\n")
    log = tmp_path / "helper.log"
    script = tmp_path / "helper.sh"
    script.write_text(f'#!/bin/sh\necho run >> "{log}"\nsleep {delay}\ncat "{key_file}"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script), key_file, log


def runs(log: Path) -> int:
    return log.read_text().count("run") if log.exists() else 0


async def test_fixed_api_key_and_token() -> None:
    key = AnthropicCredentials.from_settings(AnthropicSettings(api_key="sk-1"))
    assert await key.headers() == {"x-api-key": "sk-1"}
    token = AnthropicCredentials.from_settings(AnthropicSettings(auth_token="tok"))
    assert await token.headers() == {"Authorization": "Bearer tok"}
    assert not key.can_refresh and not token.can_refresh
    assert key.current_key() is None


async def test_helper_runs_once_and_is_cached(tmp_path: Path) -> None:
    script, _, log = key_helper(tmp_path)
    creds = AnthropicCredentials.from_settings(AnthropicSettings(api_key_helper=script))
    await creds.start()
    for _ in range(10):
        headers = await creds.headers()
    # As Claude Code sends a helper's value.
    assert headers == {"x-api-key": "sk-helper-1", "Authorization": "Bearer sk-helper-1"}
    assert runs(log) == 1 and creds.helper_runs == 1
    assert creds.can_refresh


async def test_helper_reruns_after_the_ttl(tmp_path: Path) -> None:
    script, key_file, log = key_helper(tmp_path)
    clock = Clock()
    creds = AnthropicCredentials(helper=script, helper_ttl_ms=60_000, clock=clock)
    assert (await creds.headers())["x-api-key"] == "sk-helper-1"
    key_file.write_text("sk-helper-2\n")
    clock.now += 59
    assert (await creds.headers())["x-api-key"] == "sk-helper-1"
    clock.now += 2
    assert (await creds.headers())["x-api-key"] == "sk-helper-2"
    assert runs(log) == 2


async def test_invalidate_only_the_current_key(tmp_path: Path) -> None:
    script, key_file, log = key_helper(tmp_path)
    creds = AnthropicCredentials(helper=script)
    await creds.headers()
    creds.invalidate("some-older-key")  # a late 401 for a key already replaced: nothing to do
    await creds.headers()
    assert runs(log) == 1
    key_file.write_text("sk-helper-2\n")
    creds.invalidate(creds.current_key())
    assert (await creds.headers())["x-api-key"] == "sk-helper-2"
    assert runs(log) == 2


async def test_concurrent_requests_share_one_run(tmp_path: Path) -> None:
    script, _, log = key_helper(tmp_path, delay=0.2)
    creds = AnthropicCredentials(helper=script)
    results = await asyncio.gather(*(creds.headers() for _ in range(20)))
    assert {r["x-api-key"] for r in results} == {"sk-helper-1"}
    assert runs(log) == 1


async def test_failing_helper_is_a_clear_error(tmp_path: Path) -> None:
    creds = AnthropicCredentials(helper="echo 'vault is sealed' >&2; exit 3")
    await creds.start()  # logged, not raised: the first request reports it
    with pytest.raises(ApiKeyError) as info:
        await creds.headers()
    assert isinstance(info.value, GatewayError) and info.value.status == 500
    assert info.value.message == "api_key_helper exited with status 3: vault is sealed"


async def test_silent_helper_is_a_clear_error() -> None:
    with pytest.raises(ApiKeyError, match="printed no key"):
        await AnthropicCredentials(helper="printf '  \\n'").headers()


async def test_slow_helper_times_out(tmp_path: Path) -> None:
    creds = AnthropicCredentials(helper="sleep 5; echo late", helper_timeout=0.2)
    with pytest.raises(ApiKeyError, match=r"did not answer within 0\.2s"):
        await creds.headers()


async def test_a_failed_run_is_retried_on_the_next_request(tmp_path: Path) -> None:
    script, key_file, log = key_helper(tmp_path)
    key_file.unlink()  # `cat` fails
    creds = AnthropicCredentials(helper=script)
    with pytest.raises(ApiKeyError):
        await creds.headers()
    key_file.write_text("sk-back\n")
    assert (await creds.headers())["x-api-key"] == "sk-back"
    assert runs(log) == 2
