"""GoogleTokenSource against the emulator's real OAuth token endpoint (google-auth does the JWT flow)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudgate.config.settings import VertexSettings
from cloudgate.emulator import EmulatorApp, EmulatorConfig, create_emulator_app, write_service_account_key
from cloudgate.protocol.errors import GatewayError
from cloudgate.providers.auth.google import GoogleCredentialsError, GoogleTokenSource
from cloudgate.util.server import BackgroundServer, serving


class Emulator:
    """A running emulator plus a service-account key file it trusts."""

    def __init__(self, app: EmulatorApp, server: BackgroundServer, key_file: Path) -> None:
        self.app = app
        self.server = server
        self.key_file = key_file

    def token_hits(self) -> int:
        return sum(1 for r in self.app.state.requests if r.path == "/token")


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    key = tmp_path / "sa.json"
    app = create_emulator_app(EmulatorConfig(service_account_files=[str(key)], token_ttl=3600))
    with serving(app) as srv:
        write_service_account_key(key, token_uri=f"{srv.url}/token", project_id="sa-project")
        yield Emulator(app, srv, key)


async def test_service_account_token_is_fetched_once_and_cached(emulator: Emulator) -> None:
    src = GoogleTokenSource(credentials_file=str(emulator.key_file), refresh_margin=300)
    await src.start()
    try:
        first = await src.token()
        assert first.startswith("ya29.emu-")
        assert emulator.app.state.tokens.is_valid(first)
        assert src.project_id == "sa-project"
        for _ in range(50):
            assert await src.token() == first
        assert emulator.token_hits() == 1
        assert src.refresh_count == 1
    finally:
        await src.close()


async def test_concurrent_callers_share_one_refresh(emulator: Emulator) -> None:
    src = GoogleTokenSource(credentials_file=str(emulator.key_file))  # not started: lazy
    tokens = await asyncio.gather(*(src.token() for _ in range(20)))
    assert len(set(tokens)) == 1
    assert emulator.token_hits() == 1
    # After invalidation, concurrent callers again cause exactly one refresh.
    src.invalidate(tokens[0])
    src.invalidate(tokens[0])
    again = await asyncio.gather(*(src.token() for _ in range(20)))
    assert len(set(again)) == 1
    assert again[0] != tokens[0]
    assert emulator.token_hits() == 2
    # A stale token reported after the refresh does not throw the new one away.
    src.invalidate(tokens[0])
    assert await src.token() == again[0]
    assert emulator.token_hits() == 2
    await src.close()


async def test_background_refresh_before_expiry(tmp_path: Path) -> None:
    key = tmp_path / "sa.json"
    app = create_emulator_app(EmulatorConfig(service_account_files=[str(key)], token_ttl=2))
    with serving(app) as srv:
        write_service_account_key(key, token_uri=f"{srv.url}/token")
        # Margin longer than the lifetime: renewal happens half-way, and never spins.
        src = GoogleTokenSource(credentials_file=str(key), refresh_margin=300)
        await src.start()
        try:
            first = await src.token()
            # A 2 s token with a 300 s margin is renewed half-way through its life.
            await asyncio.sleep(1.5)
            assert src.refresh_count >= 2, "the background task did not renew the token"
            second = await src.token()
            assert second != first
            assert app.state.tokens.is_valid(second)
            hits = sum(1 for r in app.state.requests if r.path == "/token")
            assert hits == src.refresh_count <= 4
        finally:
            await src.close()


async def test_expired_token_is_refreshed_on_demand(tmp_path: Path) -> None:
    key = tmp_path / "sa.json"
    app = create_emulator_app(EmulatorConfig(service_account_files=[str(key)], token_ttl=1))
    with serving(app) as srv:
        write_service_account_key(key, token_uri=f"{srv.url}/token")
        src = GoogleTokenSource(credentials_file=str(key), refresh_margin=0)
        first = await src.token()  # no start(): no background refresher
        await asyncio.sleep(1.1)
        second = await src.token()
        assert second != first
        assert app.state.tokens.is_valid(second)
        assert not app.state.tokens.is_valid(first)
        await src.close()


async def test_unreadable_credentials_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    src = GoogleTokenSource(credentials_file=str(missing))
    with pytest.raises(GoogleCredentialsError) as err:
        await src.start()
    assert isinstance(err.value, GatewayError)
    assert err.value.status == 500
    assert str(missing) in err.value.message
    assert "GOOGLE_APPLICATION_CREDENTIALS" in err.value.message
    assert "gcloud auth application-default login" in err.value.message

    garbage = tmp_path / "bad.json"
    garbage.write_text(json.dumps({"type": "service_account", "client_email": "x"}))
    with pytest.raises(GoogleCredentialsError) as err:
        await GoogleTokenSource(credentials_file=str(garbage)).token()
    assert str(garbage) in err.value.message


async def test_untrusted_key_fails_refresh_with_a_clear_error(tmp_path: Path) -> None:
    app = create_emulator_app(EmulatorConfig())  # trusts no key
    with serving(app) as srv:
        key = tmp_path / "sa.json"
        write_service_account_key(key, token_uri=f"{srv.url}/token")
        src = GoogleTokenSource(credentials_file=str(key))
        waiters = [src.token() for _ in range(5)]
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(r, GoogleCredentialsError) for r in results)
        assert all(r is results[0] for r in results)  # one refresh, one error shared by all
        assert str(key) in results[0].message  # type: ignore[union-attr]
        assert sum(1 for r in app.state.requests if r.path == "/token") == 1


async def test_static_token_mode() -> None:
    src = GoogleTokenSource.from_settings(VertexSettings(access_token="fixed", project_id="p"))
    await src.start()
    assert await src.token() == "fixed"
    src.invalidate("fixed")
    assert await src.token() == "fixed"
    assert not src.can_refresh
    assert src.refresh_count == 0
    await src.close()


async def test_application_default_credentials_from_env(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(emulator.key_file))
    src = GoogleTokenSource.from_settings(VertexSettings())
    assert src.source == "Application Default Credentials"
    await src.start()
    try:
        assert emulator.app.state.tokens.is_valid(await src.token())
        assert src.project_id == "sa-project"  # ADC's project: the provider's last fallback
    finally:
        await src.close()


# -- the other credential kinds Application Default Credentials can find ----------------------


@pytest.fixture
def user_emulator(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[EmulatorApp, BackgroundServer, dict[str, str]]]:
    """An emulator that accepts one `gcloud auth application-default login` identity.

    google-auth always sends authorized-user refreshes to Google's own token URL (a module
    constant, no setting), so the test points that constant at the emulator.
    """
    from google.oauth2 import credentials as user_credentials

    from cloudgate.emulator import AuthorizedUser

    user = {
        "client_id": "cid.apps.googleusercontent.com",
        "client_secret": "s3cret",
        "refresh_token": "1//rt",
    }
    app = create_emulator_app(EmulatorConfig(authorized_users=[AuthorizedUser(**user)]))
    with serving(app) as srv:
        monkeypatch.setattr(user_credentials, "_GOOGLE_OAUTH2_TOKEN_ENDPOINT", f"{srv.url}/token")
        yield app, srv, user


def _authorized_user_file(path: Path, user: dict[str, str], project: str) -> Path:
    path.write_text(json.dumps({"type": "authorized_user", "quota_project_id": project, **user}))
    return path


async def test_authorized_user_file(user_emulator, tmp_path: Path) -> None:
    app, _, user = user_emulator
    src = GoogleTokenSource(credentials_file=str(_authorized_user_file(tmp_path / "adc.json", user, "qp")))
    await src.start()
    try:
        assert app.state.tokens.is_valid(await src.token())
    finally:
        await src.close()


async def test_gcloud_application_default_login(
    user_emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _, user = user_emulator
    gcloud = tmp_path / "gcloud"
    gcloud.mkdir()
    _authorized_user_file(gcloud / "application_default_credentials.json", user, "login-project")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(gcloud))  # where gcloud keeps its files
    src = GoogleTokenSource.from_settings(VertexSettings())
    await src.start()
    try:
        assert app.state.tokens.is_valid(await src.token())
        assert src.project_id == "login-project"
    finally:
        await src.close()


async def test_metadata_server_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from google.auth.compute_engine import _metadata

    app = create_emulator_app(EmulatorConfig(metadata_project="gce-project", token_ttl=3600))
    with serving(app) as srv:
        host = f"127.0.0.1:{srv.port}"
        monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
        monkeypatch.setenv("GCE_METADATA_HOST", host)
        monkeypatch.setenv("GCE_METADATA_IP", host)
        monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", host)  # read once at import
        src = GoogleTokenSource.from_settings(VertexSettings())
        await src.start()
        try:
            token = await src.token()
            assert app.state.tokens.is_valid(token)
            assert src.project_id == "gce-project"
            assert any(r.path.endswith("/service-accounts/default/token") for r in app.state.requests)
        finally:
            await src.close()
