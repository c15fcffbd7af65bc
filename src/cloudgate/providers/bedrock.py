"""Claude on Amazon Bedrock: `/model/{id}/invoke`, `/invoke-with-response-stream`, `/count-tokens`.

The request is the one the official SDK (`anthropic.AnthropicBedrock`) sends: the model moves
from the body into the URL, `stream` goes (the path says it), `anthropic_version` and the
beta list (`anthropic_beta`) go into the body, and the request is signed with SigV4 over the
exact bytes sent. Token counting, which the SDK does not offer on Bedrock, wraps the invoke
body as Bedrock's CountTokens API asks: `{"input":{"invokeModel":{"body":"<base64>"}}}`.
"""

from __future__ import annotations

import base64
import functools
import logging
from typing import Any
from urllib.parse import quote, unquote

import orjson

from cloudgate.config.settings import BedrockSettings
from cloudgate.protocol.errors import GatewayError
from cloudgate.protocol.messages import MessagesCall, Operation, WireFormat
from cloudgate.providers.auth.aws import AwsSigner
from cloudgate.providers.base import (
    Target,
    UpstreamRequest,
    raise_for_upstream_status,
    transport_error_to_gateway,
)
from cloudgate.providers.betas import filter_betas
from cloudgate.providers.transport import Transport, TransportError, UpstreamResponse

log = logging.getLogger("cloudgate.providers")

# An InvokeModel body needs max_tokens; a count-tokens call (Anthropic shape) has none.
_COUNT_TOKENS_MAX_TOKENS = 1


def default_base_url(region: str) -> str:
    """The Bedrock runtime endpoint for an AWS region."""
    return f"https://bedrock-runtime.{region}.amazonaws.com"


@functools.lru_cache(maxsize=1024)
def model_path(model: str, action: str) -> str:
    """`/model/{id}/{action}` with the id quoted as the SDK quotes it (`:` and `;` kept, `/` -> `%2F`)."""
    # Ids arrive decoded from the router; an ARN copied from a URL may still carry `%2F`.
    plain = unquote(model) if "%" in model else model
    before_params = plain.partition(";")[0]
    if not before_params or before_params in (".", ".."):
        raise GatewayError(400, f"invalid Bedrock model id: {model!r}", error_type="invalid_request_error")
    return f"/model/{quote(plain, safe=':;')}/{action}"


class BedrockProvider:
    """The Bedrock upstream: builds the SDK's request, signs it for AWS, maps errors."""

    name = "bedrock"
    response_format = WireFormat.BEDROCK

    def __init__(
        self, settings: BedrockSettings, transport: Transport, signer: AwsSigner | None = None
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.signer = signer if signer is not None else AwsSigner.from_settings(settings)
        self._drop = frozenset(settings.drop_betas)

    @property
    def region(self) -> str:
        """The default AWS region (the signer's: configured, the profile's, or us-east-1)."""
        return self.signer.region

    async def start(self) -> None:
        """Resolve the AWS region and credentials (once)."""
        await self.signer.start()

    async def close(self) -> None:
        """Release the signer."""
        await self.signer.close()

    def base_url_for(self, region: str) -> str:
        """The runtime base URL for `region`, honouring a configured override."""
        return (self.settings.base_url or default_base_url(region)).rstrip("/")

    async def build_request(self, call: MessagesCall, target: Target) -> UpstreamRequest:
        """The exact upstream request for `call` at `target`, signed."""
        await self.signer.refresh_if_needed()
        return self._build(call, target)

    def _build(self, call: MessagesCall, target: Target) -> UpstreamRequest:
        region = target.region or self.signer.region
        filtered = filter_betas(call.betas, call.body, "bedrock", extra_drop=self._drop)
        headers: dict[str, str] = dict(call.passthrough_headers) if call.passthrough_headers else {}
        # What the SDK sends: the version goes in the body only; the betas in the body (which
        # Bedrock reads) and, as the SDK leaves them, in the header too.
        headers["accept"] = "application/json"
        headers["content-type"] = "application/json"
        if filtered.betas:
            headers["anthropic-beta"] = ",".join(filtered.betas)

        counting = call.operation is Operation.COUNT_TOKENS
        action = "count-tokens" if counting else "invoke-with-response-stream" if call.stream else "invoke"
        url = self.base_url_for(region) + model_path(target.model, action)

        caller_version = call.body_version if call.frontdoor is WireFormat.BEDROCK else None
        if (
            not counting
            and caller_version
            and call.raw_body
            and not filtered.body_changed
            and _raw_betas_clean(call.raw_body, filtered.dropped, filtered.replaced)
        ):
            # The caller already spoke Bedrock and nothing needs changing: forward its bytes.
            body = call.raw_body
        else:
            invoke = self._invoke_body(filtered.body, filtered.body_changed, filtered.betas, caller_version)
            if counting:
                invoke.setdefault("max_tokens", _COUNT_TOKENS_MAX_TOKENS)
                body = orjson.dumps({"input": {"invokeModel": {"body": _b64(orjson.dumps(invoke))}}})
            else:
                body = orjson.dumps(invoke)
        return UpstreamRequest("POST", url, self.signer.sign("POST", url, headers, body, region=region), body)

    def _invoke_body(
        self,
        source: dict[str, Any],
        owned: bool,
        betas: list[str],
        caller_version: str | None,
    ) -> dict[str, Any]:
        # One shallow copy: filtering already copied the body when it removed a field.
        body: dict[str, Any] = source if owned else dict(source)
        for name in ("model", "stream", "anthropic_version", "anthropic_beta"):
            body.pop(name, None)
        body["anthropic_version"] = caller_version or self.settings.anthropic_version
        if betas:
            body["anthropic_beta"] = betas
        return body

    async def send(self, call: MessagesCall, target: Target) -> UpstreamResponse:
        """Send `call`; return the 2xx response, else raise `GatewayError` (upstream body kept)."""
        req = await self.build_request(call, target)
        try:
            resp = await self.transport.request(
                req.method, req.url, headers=req.headers, body=req.body, timeouts=target.timeouts
            )
        except TransportError as exc:
            raise transport_error_to_gateway(exc, provider=self.name) from exc
        if 200 <= resp.status < 300:
            return resp
        await raise_for_upstream_status(resp, provider=self.name)
        # A 1xx/3xx (redirects are not followed) is no answer a caller can use.
        resp.release()
        raise GatewayError(502, f"bedrock upstream answered HTTP {resp.status}", error_type="api_error")


def _raw_betas_clean(raw: bytes, dropped: tuple[str, ...], replaced: tuple[str, ...]) -> bool:
    # Whether none of the betas filtered out is in the caller's bytes (Claude Code sends the ones
    # Bedrock rejects in the header only). A hit in the message text only costs a re-serialisation.
    return not any(f'"{beta}"'.encode() in raw for beta in (*dropped, *replaced))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
