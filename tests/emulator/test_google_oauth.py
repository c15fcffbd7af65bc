"""The token endpoint and metadata server, driven by the real google-auth library."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import anthropic
import google.auth
import google.auth.exceptions
import pytest
import requests
from google.auth import compute_engine, jwt
from google.auth import crypt as google_crypt
from google.auth.compute_engine import _metadata
from google.auth.transport.requests import Request as GoogleRequest
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from cloudgate.emulator import AuthorizedUser, EmulatorConfig, write_service_account_key

from .conftest import MODEL, Emulator, vertex_client

SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def _ask(client: anthropic.AnthropicVertex) -> anthropic.types.Message:
    return client.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}])


def test_service_account_flow_with_real_google_auth(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    key = tmp_path / "sa.json"
    # The key is written after the app exists: the emulator reads configured files lazily.
    app, srv = make_emulator(EmulatorConfig(service_account_files=[str(key)]))
    info = write_service_account_key(key, token_uri=f"{srv.url}/token")
    assert info["type"] == "service_account" and info["private_key"].startswith("-----BEGIN PRIVATE KEY-----")

    creds = service_account.Credentials.from_service_account_file(str(key), scopes=[SCOPE])
    creds.refresh(GoogleRequest())
    assert creds.token.startswith("ya29.emu-")
    assert creds.expiry is not None

    message = _ask(vertex_client(srv, token=creds.token))
    assert message.content[0].text.startswith("Hello from the cloudgate emulator")

    # The token request really carried a JWT assertion, form-encoded, as google-auth sends it.
    token_calls = [r for r in app.state.requests if r.path == "/token"]
    assert (
        token_calls
        and b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in token_calls[0].body
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_load_credentials_from_file_accepts_generated_key(tmp_path: Path) -> None:
    key = tmp_path / "sa.json"
    write_service_account_key(key, token_uri="http://127.0.0.1:1/token", project_id="p-123")
    creds, project = google.auth.load_credentials_from_file(str(key), scopes=[SCOPE])
    assert project == "p-123"
    assert isinstance(creds, service_account.Credentials)
    assert key.stat().st_mode & 0o077 == 0


def test_untrusted_key_is_refused(make_emulator: Callable[..., Emulator], tmp_path: Path) -> None:
    _, srv = make_emulator(EmulatorConfig())
    key = tmp_path / "rogue.json"
    write_service_account_key(key, token_uri=f"{srv.url}/token")
    creds = service_account.Credentials.from_service_account_file(str(key), scopes=[SCOPE])
    with pytest.raises(google.auth.exceptions.RefreshError, match="Invalid JWT Signature"):
        creds.refresh(GoogleRequest())


def test_forged_signature_with_trusted_key_id_is_refused(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    config = EmulatorConfig()
    app, srv = make_emulator(config)
    trusted = write_service_account_key(tmp_path / "a.json", token_uri=f"{srv.url}/token")
    rogue = write_service_account_key(tmp_path / "b.json", token_uri=f"{srv.url}/token")
    config.trust_key(trusted)
    # Same kid and issuer as the trusted key, but signed with another private key.
    signer = google_crypt.RSASigner.from_string(rogue["private_key"], trusted["private_key_id"])
    now = int(time.time())
    claims = {"iss": trusted["client_email"], "aud": "https://oauth2.googleapis.com/token", "scope": SCOPE,
              "iat": now, "exp": now + 3600}  # fmt: skip
    grant = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"}
    resp = requests.post(
        f"{srv.url}/token", data={**grant, "assertion": jwt.encode(signer, claims)}, timeout=5
    )
    assert resp.status_code == 400
    assert resp.json() == {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}

    good = google_crypt.RSASigner.from_string(trusted["private_key"], trusted["private_key_id"])
    ok = requests.post(f"{srv.url}/token", data={**grant, "assertion": jwt.encode(good, claims)}, timeout=5)
    assert ok.status_code == 200 and ok.json()["token_type"] == "Bearer"

    for bad_claims, fragment in [
        ({**claims, "aud": "https://elsewhere.example/token"}, "audience"),
        ({**claims, "iat": now - 7200, "exp": now - 3600}, "short-lived"),
        ({k: v for k, v in claims.items() if k != "scope"}, "scope"),
    ]:
        resp = requests.post(
            f"{srv.url}/token", data={**grant, "assertion": jwt.encode(good, bad_claims)}, timeout=5
        )
        assert resp.status_code == 400, bad_claims
        assert fragment in resp.json()["error_description"]
    assert app.state.tokens.is_valid(ok.json()["access_token"])


def test_authorized_user_refresh_flow(make_emulator: Callable[..., Emulator]) -> None:
    user = AuthorizedUser(
        client_id="cid.apps.googleusercontent.com", client_secret="s3cret", refresh_token="1//rt"
    )
    _, srv = make_emulator(EmulatorConfig(authorized_users=[user]))
    creds = user_credentials.Credentials(
        token=None,
        refresh_token=user.refresh_token,
        client_id=user.client_id,
        client_secret=user.client_secret,
        token_uri=f"{srv.url}/token",
    )
    creds.refresh(GoogleRequest())
    assert creds.token.startswith("ya29.emu-")
    assert _ask(vertex_client(srv, token=creds.token)).stop_reason == "end_turn"

    wrong = user_credentials.Credentials(
        token=None, refresh_token="1//other", client_id=user.client_id, client_secret=user.client_secret,
        token_uri=f"{srv.url}/token",
    )  # fmt: skip
    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_grant"):
        wrong.refresh(GoogleRequest())


def test_metadata_server_flow(
    make_emulator: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, srv = make_emulator(EmulatorConfig(metadata_project="md-project"))
    host = f"127.0.0.1:{srv.port}"
    monkeypatch.setenv("GCE_METADATA_HOST", host)
    monkeypatch.setenv("GCE_METADATA_IP", host)
    # google-auth reads GCE_METADATA_HOST once, at import: point the already-imported module too.
    monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", host)

    request = GoogleRequest()
    assert _metadata.ping(request)
    assert _metadata.get_project_id(request) == "md-project"
    creds = compute_engine.Credentials()
    creds.refresh(request)
    assert creds.token.startswith("ya29.emu-")
    assert creds.service_account_email == "cloudgate-test@emulated-project.iam.gserviceaccount.com"
    assert _ask(vertex_client(srv, token=creds.token)).content


def test_metadata_server_requires_flavor_header(emulator: Emulator) -> None:
    _, srv = emulator
    url = f"{srv.url}/computeMetadata/v1/instance/service-accounts/default/token"
    refused = requests.get(url, timeout=5)
    assert refused.status_code == 403
    assert refused.headers["metadata-flavor"] == "Google"
    ok = requests.get(url, headers={"Metadata-Flavor": "Google"}, timeout=5)
    assert ok.status_code == 200 and ok.headers["metadata-flavor"] == "Google"
    assert ok.json()["expires_in"] == 3600


def test_expired_token_is_rejected(make_emulator: Callable[..., Emulator]) -> None:
    _, srv = make_emulator(EmulatorConfig(token_ttl=1))
    url = f"{srv.url}/computeMetadata/v1/instance/service-accounts/default/token"
    token = requests.get(url, headers={"Metadata-Flavor": "Google"}, timeout=5).json()["access_token"]
    client = vertex_client(srv, token=token)
    assert _ask(client).content
    time.sleep(1.1)
    with pytest.raises(anthropic.AuthenticationError) as info:
        _ask(client)
    assert info.value.status_code == 401
    assert info.value.body == {
        "error": {
            "code": 401,
            "message": (
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                "or other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project."
            ),
            "status": "UNAUTHENTICATED",
        }
    }


def test_unsupported_grant_type(emulator: Emulator) -> None:
    _, srv = emulator
    resp = requests.post(f"{srv.url}/token", data={"grant_type": "password"}, timeout=5)
    assert resp.status_code == 400
    assert resp.json()["error"] == "unsupported_grant_type"


def test_own_token_url_is_an_accepted_audience(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    app, srv = make_emulator(EmulatorConfig())
    app.state.base_url = None  # derived from the Host header instead
    info = write_service_account_key(tmp_path / "k.json", token_uri="https://oauth2.googleapis.com/token")
    app.state.trust_key(info)
    signer = google_crypt.RSASigner.from_string(info["private_key"], info["private_key_id"])
    now = int(time.time())
    claims = {
        "iss": info["client_email"],
        "aud": f"{srv.url}/token",
        "scope": SCOPE,
        "iat": now,
        "exp": now + 600,
    }
    grant = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": jwt.encode(signer, claims),
    }
    resp = requests.post(f"{srv.url}/token", data=grant, timeout=5)
    assert resp.status_code == 200, resp.text
    assert resp.json()["expires_in"] == 3600
