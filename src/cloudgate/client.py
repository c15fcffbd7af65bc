"""Official `anthropic` SDK clients configured the way Claude Code is configured.

`client_from_claude_code()` resolves Claude Code's environment and settings files (see
`cloudgate.clientconfig.resolve`) and returns `anthropic.Anthropic`, `AnthropicVertex` or
`AnthropicBedrock` pointed where Claude Code would send its requests, with the credentials it
would use: straight to the cloud, or through a gateway such as cloudgate.

    client = client_from_claude_code()
    client.messages.create(model=main_model(resolve()), max_tokens=100, messages=[...])

Needs the SDK with its cloud extras: `pip install "anthropic[vertex,bedrock]"`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict, Unpack

import anthropic

from cloudgate.catalog import default_catalog
from cloudgate.clientconfig import ModelChoice, ResolvedConfig, choice_for, effective_base_url, resolve
from cloudgate.config.claude_env import parse_custom_headers

SyncClient = anthropic.Anthropic | anthropic.AnthropicVertex | anthropic.AnthropicBedrock
AsyncClient = anthropic.AsyncAnthropic | anthropic.AsyncAnthropicVertex | anthropic.AsyncAnthropicBedrock

# How long an apiKeyHelper may take; Claude Code warns about helpers slower than 10 s.
API_KEY_HELPER_TIMEOUT_S = 30.0


class ClientConfigError(RuntimeError):
    """The configuration cannot produce a client (a failing apiKeyHelper, unreadable credentials)."""


def api_key_from_helper(command: str, *, timeout: float = API_KEY_HELPER_TIMEOUT_S) -> str:
    """Run an `apiKeyHelper` command and return the key it prints."""
    try:
        # The setting is a shell command line (Claude Code runs it through the shell), written
        # by the user or their administrator in a settings file.
        done = subprocess.run(  # noqa: S602
            command, shell=True, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise ClientConfigError(f"apiKeyHelper `{command}` did not finish within {timeout:.0f}s") from None
    except OSError as exc:
        raise ClientConfigError(f"apiKeyHelper `{command}` could not run: {exc}") from None
    key = done.stdout.strip()
    if done.returncode != 0:
        err = done.stderr.strip().splitlines()[-1:] or [""]
        raise ClientConfigError(f"apiKeyHelper `{command}` failed (exit {done.returncode}) {err[0]}".rstrip())
    if not key:
        raise ClientConfigError(f"apiKeyHelper `{command}` printed nothing")
    return key


def model_choice(resolved: ResolvedConfig, model: str | None = None) -> ModelChoice:
    """The ModelChoice for `model` (a name, platform id or alias such as `opus`), else the main model."""
    if model is None:
        return resolved.model("main")
    return choice_for(model, "requested", resolved.env, resolved.platform, resolved.region, default_catalog())


def main_model(resolved: ResolvedConfig) -> str:
    """The id to send for Claude Code's main model on the resolved platform."""
    return resolved.model("main").platform_id


class ClientOptions(TypedDict, total=False):
    """Keyword arguments of `client_from_claude_code` and `async_client_from_claude_code`.

    `cwd`, `home`, `settings_file`, `managed_file` are `resolve()`'s; `resolved` is a
    configuration already resolved (then those are not used); `model` picks the model whose
    Vertex region the client is built for (default: the main model); `max_retries` and
    `timeout` go to the SDK.
    """

    cwd: Path | None
    home: Path | None
    settings_file: Path | str | None
    managed_file: Path | None
    resolved: ResolvedConfig | None
    model: str | None
    max_retries: int
    timeout: float | None


def client_from_claude_code(
    env: Mapping[str, str] | None = None, **options: Unpack[ClientOptions]
) -> SyncClient:
    """A synchronous SDK client for Claude Code's configuration (`env`: as for `resolve`).

    On Vertex AI the region is the one `model` goes to, since VERTEX_REGION_* may send each
    model to a different region.
    """
    resolved, kind, kwargs = _prepare(env, options)
    return _SYNC_CLASSES[kind][resolved.skip_auth](**kwargs)


def async_client_from_claude_code(
    env: Mapping[str, str] | None = None, **options: Unpack[ClientOptions]
) -> AsyncClient:
    """The asyncio counterpart of `client_from_claude_code` (same arguments)."""
    resolved, kind, kwargs = _prepare(env, options)
    return _ASYNC_CLASSES[kind][resolved.skip_auth](**kwargs)


def _prepare(
    env: Mapping[str, str] | None, options: ClientOptions
) -> tuple[ResolvedConfig, str, dict[str, Any]]:
    resolved = options.get("resolved") or resolve(
        env,
        cwd=options.get("cwd"),
        home=options.get("home"),
        settings_file=options.get("settings_file"),
        managed_file=options.get("managed_file"),
    )
    choice = model_choice(resolved, options.get("model"))
    kind, kwargs = _client_arguments(resolved, choice, options.get("max_retries", 2), options.get("timeout"))
    return resolved, kind, kwargs


def _client_arguments(
    resolved: ResolvedConfig, choice: ModelChoice, max_retries: int, timeout: float | None
) -> tuple[str, dict[str, Any]]:
    """(platform, constructor keyword arguments) shared by the sync and async clients.

    Every value comes from the resolved configuration, never from the SDK's own reading of
    os.environ, so a client built from an explicit `env` mapping does just what that says.
    """
    env = resolved.env
    kwargs: dict[str, Any] = {
        "base_url": effective_base_url(resolved.platform, resolved.base_url, choice.region),
        "max_retries": max_retries,
        "default_headers": parse_custom_headers(env.get("ANTHROPIC_CUSTOM_HEADERS", "")),
    }
    if timeout is not None:
        kwargs["timeout"] = timeout
    auth = resolved.auth
    if resolved.platform == "vertex":
        kwargs["region"] = choice.region
        if not resolved.project:
            raise ClientConfigError("Vertex AI needs a project: set ANTHROPIC_VERTEX_PROJECT_ID")
        kwargs["project_id"] = resolved.project
        if resolved.skip_auth:
            # Claude Code sends ANTHROPIC_AUTH_TOKEN as the bearer when it skips Google auth
            # (a gateway key, typically); with no token the no-auth client sends nothing.
            kwargs["access_token"] = env.get("ANTHROPIC_AUTH_TOKEN") or None
        else:
            kwargs["credentials"] = _google_credentials(resolved)
        return "vertex", kwargs
    if resolved.platform == "bedrock":
        kwargs["aws_region"] = choice.region
        if auth == "bedrock-api-key":
            kwargs["api_key"] = env["AWS_BEARER_TOKEN_BEDROCK"]
        elif auth == "sigv4-env":
            kwargs["aws_access_key"] = env["AWS_ACCESS_KEY_ID"]
            kwargs["aws_secret_key"] = env["AWS_SECRET_ACCESS_KEY"]
            kwargs["aws_session_token"] = env.get("AWS_SESSION_TOKEN") or None
        elif auth == "sigv4-profile":
            kwargs["aws_profile"] = resolved.auth_detail
        elif resolved.skip_auth:
            # The SDK falls back to AWS_BEARER_TOKEN_BEDROCK from os.environ; skip-auth sends
            # nothing, and the no-auth client never looks at it.
            kwargs["api_key"] = ""
        return "bedrock", kwargs
    # Claude Code sends an API key as `x-api-key`; SDK versions differ in the header they use
    # for `api_key=`, so the header is set explicitly. A credential argument is passed in every
    # case because it also stops the SDK from looking for credentials of its own.
    if auth == "auth-token":
        kwargs["auth_token"] = env["ANTHROPIC_AUTH_TOKEN"]
    elif auth == "api-key":
        kwargs["api_key"] = env["ANTHROPIC_API_KEY"]
        kwargs["default_headers"]["X-Api-Key"] = env["ANTHROPIC_API_KEY"]
    elif auth == "api-key-helper" and resolved.api_key_helper:
        key = api_key_from_helper(resolved.api_key_helper)
        # Claude Code sends the helper's value both as `x-api-key` and as a bearer token.
        kwargs["auth_token"] = key
        kwargs["default_headers"]["X-Api-Key"] = key
    return "anthropic", kwargs


def _google_credentials(resolved: ResolvedConfig) -> Any:
    """The Google credentials Claude Code's google-auth would find, loaded from what was resolved
    rather than from os.environ (the SDK's own lookup)."""
    import google.auth.compute_engine
    import google.auth.exceptions

    # The gateway's loader: the same per-type handling of credentials files for both.
    from cloudgate.providers.auth.google import CLOUD_PLATFORM_SCOPE
    from cloudgate.providers.auth.google import _load_file as load_credentials_file

    if resolved.auth in ("adc-file", "gcloud-user"):
        path = (
            resolved.env["GOOGLE_APPLICATION_CREDENTIALS"]
            if resolved.auth == "adc-file"
            else (resolved.auth_detail or "")
        )
        try:
            credentials, _ = load_credentials_file(str(Path(path).expanduser()), [CLOUD_PLATFORM_SCOPE])
        except (google.auth.exceptions.GoogleAuthError, OSError, ValueError) as exc:
            raise ClientConfigError(f"cannot load Google credentials from {path}: {exc}") from None
        return credentials
    return google.auth.compute_engine.Credentials()  # type: ignore[no-untyped-call]


class _NoAuthVertex(anthropic.AnthropicVertex):
    """AnthropicVertex that fetches no Google token (CLAUDE_CODE_SKIP_VERTEX_AUTH): it sends
    ANTHROPIC_AUTH_TOKEN as the bearer when there is one, else no Authorization at all."""

    def _prepare_request(self, request: Any) -> None:
        if self.access_token and not request.headers.get("Authorization"):
            request.headers["Authorization"] = f"Bearer {self.access_token}"


class _AsyncNoAuthVertex(anthropic.AsyncAnthropicVertex):
    """The asyncio `_NoAuthVertex`."""

    async def _prepare_request(self, request: Any) -> None:
        if self.access_token and not request.headers.get("Authorization"):
            request.headers["Authorization"] = f"Bearer {self.access_token}"


class _NoAuthBedrock(anthropic.AnthropicBedrock):
    """AnthropicBedrock that neither signs nor sends a key (CLAUDE_CODE_SKIP_BEDROCK_AUTH)."""

    def _prepare_request(self, request: Any) -> None:
        return None


class _AsyncNoAuthBedrock(anthropic.AsyncAnthropicBedrock):
    """The asyncio `_NoAuthBedrock`."""

    async def _prepare_request(self, request: Any) -> None:
        return None


# Platform -> (client class, client class when cloud auth is skipped), indexed by skip_auth.
_SYNC_CLASSES: dict[str, tuple[type[SyncClient], type[SyncClient]]] = {
    "anthropic": (anthropic.Anthropic, anthropic.Anthropic),
    "vertex": (anthropic.AnthropicVertex, _NoAuthVertex),
    "bedrock": (anthropic.AnthropicBedrock, _NoAuthBedrock),
}
_ASYNC_CLASSES: dict[str, tuple[type[AsyncClient], type[AsyncClient]]] = {
    "anthropic": (anthropic.AsyncAnthropic, anthropic.AsyncAnthropic),
    "vertex": (anthropic.AsyncAnthropicVertex, _AsyncNoAuthVertex),
    "bedrock": (anthropic.AsyncAnthropicBedrock, _AsyncNoAuthBedrock),
}
