"""AWS request signing for Bedrock: SigV4 with botocore's credential chain, or a Bedrock API key.

The credential chain (environment, shared config and credentials files, profiles, SSO,
credential_process, container and instance metadata) is resolved once, at `start()`, into
botocore's credentials object. Temporary credentials are refreshed by botocore itself ahead of
their expiry; `refresh_if_needed()` runs that refresh in a thread so the event loop never
waits on it, and `sign()` only reads the frozen credentials: no I/O per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import botocore.credentials
import botocore.exceptions
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from cloudgate.config.settings import BedrockSettings
from cloudgate.protocol.errors import GatewayError

log = logging.getLogger("cloudgate.providers.auth")

DEFAULT_REGION = "us-east-1"
SERVICE_NAME = "bedrock"

_NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
    "(with ~/.aws/credentials or ~/.aws/config, SSO or credential_process), run on an instance or "
    "container with a role, or set bedrock.api_key (AWS_BEARER_TOKEN_BEDROCK)"
)


class AwsCredentialsError(GatewayError):
    """No usable AWS credentials: the gateway's own credentials are missing or wrong."""

    def __init__(self, message: str) -> None:
        # 500, not 401/403: the caller's key is fine, the gateway's AWS credentials are not.
        super().__init__(500, message, error_type="api_error")


class AwsSigner:
    """Signs Bedrock requests: SigV4 (service `bedrock`) or `Authorization: Bearer` with an API key."""

    def __init__(
        self,
        *,
        region: str | None = None,
        profile: str | None = None,
        api_key: str | None = None,
        credentials: botocore.credentials.Credentials | None = None,
    ) -> None:
        self._configured_region = region
        self._profile = profile
        self._api_key = api_key
        self._credentials = credentials
        self._region = region or DEFAULT_REGION
        self._bearer = f"Bearer {api_key}" if api_key else None
        self._refreshing: asyncio.Task[None] | None = None
        # How many times the credential chain was walked (it should be once per process).
        self.resolve_count = 0

    @classmethod
    def from_settings(cls, settings: BedrockSettings) -> AwsSigner:
        """A signer configured like `settings` says (API key, named profile, or the default chain)."""
        return cls(region=settings.region, profile=settings.profile, api_key=settings.api_key)

    @property
    def region(self) -> str:
        """The AWS region: configured, else the profile's (known after `start()`), else us-east-1."""
        return self._region

    @property
    def uses_api_key(self) -> bool:
        """Whether requests carry a Bedrock API key instead of a SigV4 signature."""
        return self._bearer is not None

    @property
    def method(self) -> str:
        """Where the credentials came from (botocore's name for the provider), for messages."""
        if self._bearer is not None:
            return "bedrock-api-key"
        return str(getattr(self._credentials, "method", None) or "unresolved")

    async def start(self) -> None:
        """Resolve the region and the credential chain once, in a thread (it may do I/O)."""
        if self._configured_region and (self._bearer is not None or self._credentials is not None):
            return
        await asyncio.to_thread(self._resolve_blocking)

    async def close(self) -> None:
        """Wait for a refresh in flight, if any."""
        task, self._refreshing = self._refreshing, None
        if task is not None:
            # A failed refresh matters only to a request that still needs the credentials.
            with contextlib.suppress(GatewayError):
                await task

    def _resolve_blocking(self) -> None:
        try:
            session = botocore.session.Session(profile=self._profile)
            if not self._configured_region:
                region = session.get_config_variable("region")
                self._region = str(region) if region else DEFAULT_REGION
            if self._bearer is not None or self._credentials is not None:
                return
            self.resolve_count += 1
            credentials = session.get_credentials()
        except botocore.exceptions.ProfileNotFound as exc:
            raise AwsCredentialsError(f"AWS profile not found: {exc}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise AwsCredentialsError(f"AWS credentials could not be loaded: {exc}") from exc
        if credentials is None:
            raise AwsCredentialsError(_NO_CREDENTIALS)
        self._credentials = credentials
        log.info("AWS credentials from %s, region %s", self.method, self._region)

    def _refresh_due(self) -> bool:
        creds = self._credentials
        if not isinstance(creds, botocore.credentials.RefreshableCredentials):
            return False
        # Advisory window: botocore would refresh inside get_frozen_credentials(), blocking the loop.
        return bool(creds.refresh_needed())

    async def refresh_if_needed(self) -> None:
        """Refresh temporary credentials in a thread when botocore would refresh them (single-flight)."""
        if self._bearer is not None:
            return
        if self._credentials is None:
            raise AwsCredentialsError(_NO_CREDENTIALS + " (the signer was not started)")
        if not self._refresh_due():
            return
        task = self._refreshing
        if task is None or task.done():
            task = asyncio.ensure_future(asyncio.to_thread(self._refresh_blocking))
            self._refreshing = task
        # shield: one caller giving up must not cancel the refresh the others wait for.
        await asyncio.shield(task)

    def _refresh_blocking(self) -> None:
        assert self._credentials is not None
        try:
            self._credentials.get_frozen_credentials()
        except botocore.exceptions.BotoCoreError as exc:
            raise AwsCredentialsError(f"AWS credentials could not be refreshed: {exc}") from exc

    def sign(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, *, region: str | None = None
    ) -> dict[str, str]:
        """`headers` plus the auth headers for this exact request (SigV4 over `body`, or the API key).

        `region` is the region in the signature's scope: the one the URL points at (default `region`).
        """
        if self._bearer is not None:
            out = dict(headers)
            out["Authorization"] = self._bearer
            return out
        creds = self._credentials
        if creds is None:
            raise AwsCredentialsError(_NO_CREDENTIALS + " (the signer was not started)")
        try:
            frozen = creds.get_frozen_credentials()
        except botocore.exceptions.BotoCoreError as exc:
            raise AwsCredentialsError(f"AWS credentials could not be refreshed: {exc}") from exc
        # As the SDK does: a proxy may strip `connection`, so it is never signed.
        to_sign = {k: v for k, v in headers.items() if k.lower() != "connection"}
        request = AWSRequest(method=method.upper(), url=url, headers=to_sign, data=body)
        SigV4Auth(frozen, SERVICE_NAME, region or self._region).add_auth(request)
        return _plain_headers(request.headers)


def _plain_headers(headers: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in headers.items() if v is not None}
