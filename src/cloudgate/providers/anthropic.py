"""Claude on the Anthropic API: `POST /v1/messages` and `POST /v1/messages/count_tokens`.

The request is the one the official SDK (`anthropic.Anthropic`) sends: the model and, when
streaming, `"stream": true` in the body; `anthropic-version` and `anthropic-beta` as headers;
auth as `x-api-key` or `Authorization: Bearer`.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from cloudgate.config.settings import AnthropicSettings
from cloudgate.protocol.errors import GatewayError
from cloudgate.protocol.messages import MessagesCall, Operation, WireFormat
from cloudgate.providers.auth.api_key import AnthropicCredentials
from cloudgate.providers.base import (
    Target,
    UpstreamRequest,
    raise_for_upstream_status,
    transport_error_to_gateway,
)
from cloudgate.providers.betas import filter_betas
from cloudgate.providers.transport import Transport, TransportError, UpstreamResponse

log = logging.getLogger("cloudgate.providers")

DEFAULT_ANTHROPIC_VERSION = "2023-06-01"


class AnthropicProvider:
    """The Anthropic API upstream: builds the SDK's request, adds the key, maps errors."""

    name = "anthropic"
    response_format = WireFormat.ANTHROPIC

    def __init__(
        self,
        settings: AnthropicSettings,
        transport: Transport,
        credentials: AnthropicCredentials | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.credentials = (
            credentials if credentials is not None else AnthropicCredentials.from_settings(settings)
        )
        self._drop = frozenset(settings.drop_betas)
        base = settings.base_url.rstrip("/")
        self._messages_url = f"{base}/v1/messages"
        self._count_tokens_url = f"{base}/v1/messages/count_tokens"

    async def start(self) -> None:
        """Fetch the first key (helper mode)."""
        await self.credentials.start()

    async def close(self) -> None:
        """Stop a helper run in flight."""
        await self.credentials.close()

    async def build_request(self, call: MessagesCall, target: Target) -> UpstreamRequest:
        """The exact upstream request for `call` at `target`, authenticated."""
        return self._build(call, target, await self.credentials.headers())

    def _build(self, call: MessagesCall, target: Target, auth: dict[str, str]) -> UpstreamRequest:
        filtered = filter_betas(call.betas, call.body, "anthropic", extra_drop=self._drop)
        headers: dict[str, str] = dict(call.passthrough_headers) if call.passthrough_headers else {}
        headers.update(auth)
        headers["content-type"] = "application/json"
        headers["anthropic-version"] = call.anthropic_version or DEFAULT_ANTHROPIC_VERSION
        if filtered.betas:
            headers["anthropic-beta"] = ",".join(filtered.betas)

        counting = call.operation is Operation.COUNT_TOKENS
        url = self._count_tokens_url if counting else self._messages_url
        if (
            call.frontdoor is WireFormat.ANTHROPIC
            and call.raw_body
            and call.model == target.model
            and not filtered.body_changed
        ):
            # The caller already spoke the Anthropic API and nothing needs changing: forward its bytes.
            return UpstreamRequest("POST", url, headers, call.raw_body)

        # One new dict, model first, then the caller's fields in their order.
        body: dict[str, Any] = {"model": target.model}
        for key, value in filtered.body.items():
            if key not in _LIFTED:
                body[key] = value
        if call.stream and not counting:
            body["stream"] = True
        return UpstreamRequest("POST", url, headers, orjson.dumps(body))

    async def send(self, call: MessagesCall, target: Target) -> UpstreamResponse:
        """Send `call`; return the 2xx response, else raise `GatewayError` (upstream body kept)."""
        auth = await self.credentials.headers()
        key = self.credentials.current_key()
        req = self._build(call, target, auth)
        resp = await self._post(req, target)

        if resp.status == 401 and self.credentials.can_refresh:
            # The helper's key may have been rotated: one fresh run (shared by all) and one retry.
            await _discard(resp)
            log.info("anthropic answered 401; running api_key_helper again and retrying once")
            self.credentials.invalidate(key)
            req.headers.update(await self.credentials.headers())
            resp = await self._post(req, target)

        if 200 <= resp.status < 300:
            return resp
        await raise_for_upstream_status(resp, provider=self.name)
        # A 1xx/3xx (redirects are not followed) is no answer a caller can use.
        resp.release()
        raise GatewayError(502, f"anthropic upstream answered HTTP {resp.status}", error_type="api_error")

    async def _post(self, req: UpstreamRequest, target: Target) -> UpstreamResponse:
        try:
            return await self.transport.request(
                req.method, req.url, headers=req.headers, body=req.body, timeouts=target.timeouts
            )
        except TransportError as exc:
            raise transport_error_to_gateway(exc, provider=self.name) from exc


# Transport fields the provider sets itself; a caller's stray copies are not forwarded.
_LIFTED = frozenset({"model", "stream", "anthropic_version"})


async def _discard(resp: UpstreamResponse) -> None:
    # Read the (small) error body so the connection can go back to the pool.
    try:
        await resp.read()
    except TransportError:
        resp.close()
