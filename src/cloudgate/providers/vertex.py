"""Claude on Google Vertex AI: `:rawPredict` / `:streamRawPredict` / `count-tokens:rawPredict`.

The request is the one the official SDK (`anthropic.AnthropicVertex`) sends: the model moves
from the body into the URL, `anthropic_version` goes into the body, betas stay in the
`anthropic-beta` header after the ones Vertex rejects are filtered out.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any
from urllib.parse import quote

import orjson

from cloudgate.config.settings import VertexSettings
from cloudgate.protocol.errors import GatewayError
from cloudgate.protocol.messages import MessagesCall, Operation, WireFormat
from cloudgate.providers.auth.google import GoogleTokenSource
from cloudgate.providers.base import (
    Target,
    UpstreamRequest,
    raise_for_upstream_status,
    transport_error_to_gateway,
)
from cloudgate.providers.betas import filter_betas
from cloudgate.providers.transport import Transport, TransportError, UpstreamResponse

log = logging.getLogger("cloudgate.providers")

DEFAULT_ANTHROPIC_VERSION_HEADER = "2023-06-01"

# Statuses with which the `global` location refuses token counting (then a region is tried).
_COUNT_TOKENS_FALLBACK_STATUSES = frozenset({400, 404})

_DOT_SEGMENT = re.compile(r"^(?:\.|%2[eE]){1,2}$")


def default_base_url(region: str) -> str:
    """Google's own Vertex AI base URL for a location, as the SDK chooses it."""
    if region == "global":
        return "https://aiplatform.googleapis.com/v1"
    if region == "us":
        return "https://aiplatform.us.rep.googleapis.com/v1"
    if region == "eu":
        return "https://aiplatform.eu.rep.googleapis.com/v1"
    return f"https://{region}-aiplatform.googleapis.com/v1"


def _segment(name: str, value: str) -> str:
    # The SDK's path-segment quoting (anthropic._utils._path): RFC 3986 pchar stays as is.
    if not value:
        raise GatewayError(400, f"empty Vertex {name}", error_type="invalid_request_error")
    quoted = quote(value, safe="!$&'()*+,;=:@")
    if _DOT_SEGMENT.match(quoted.partition(";")[0]) or quoted.startswith(";"):
        raise GatewayError(400, f"invalid Vertex {name}: {value!r}", error_type="invalid_request_error")
    return quoted


@functools.lru_cache(maxsize=1024)
def _model_path(project: str, region: str, model: str, specifier: str) -> str:
    # A server that cuts a segment at `;` would lose the specifier, so the SDK encodes it.
    model_segment = f"{_segment('model id', model)}:{specifier}".replace(";", "%3B")
    return (
        f"/projects/{_segment('project', project)}/locations/{_segment('location', region)}"
        f"/publishers/anthropic/models/{model_segment}"
    )


@functools.lru_cache(maxsize=256)
def _count_tokens_path(project: str, region: str) -> str:
    return (
        f"/projects/{_segment('project', project)}/locations/{_segment('location', region)}"
        "/publishers/anthropic/models/count-tokens:rawPredict"
    )


class VertexProvider:
    """The Vertex AI upstream: builds the SDK's request, authenticates with Google, maps errors."""

    name = "vertex"
    response_format = WireFormat.ANTHROPIC

    def __init__(
        self, settings: VertexSettings, transport: Transport, tokens: GoogleTokenSource | None = None
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.tokens = tokens if tokens is not None else GoogleTokenSource.from_settings(settings)
        self._drop = frozenset(settings.drop_betas)
        # Projects whose `global` location refused count-tokens: count at the fallback region.
        self._count_tokens_moved: set[str] = set()

    async def start(self) -> None:
        """Load the Google credentials and start the token refresher."""
        await self.tokens.start()

    async def close(self) -> None:
        """Stop the token refresher."""
        await self.tokens.close()

    def base_url_for(self, region: str) -> str:
        """The base URL (ending in `/v1`) for a Vertex location, honouring configured overrides."""
        url = self.settings.base_urls.get(region) or self.settings.base_url or default_base_url(region)
        return url.rstrip("/")

    def project_for(self, target: Target) -> str:
        """The GCP project: the router's, the configured one, then the one in the credentials."""
        project = target.project or self.settings.project_id or self.tokens.project_id
        if not project:
            raise GatewayError(
                500,
                "no Google Cloud project for Vertex AI: set ANTHROPIC_VERTEX_PROJECT_ID "
                "(or GOOGLE_CLOUD_PROJECT, or vertex.project_id)",
                error_type="api_error",
            )
        return project

    def region_for(self, call: MessagesCall, target: Target) -> str:
        """The location to call: the router's, or the configured one (count-tokens may move)."""
        region = target.region or self.settings.region
        if (
            call.operation is Operation.COUNT_TOKENS
            and region == "global"
            and self.project_for(target) in self._count_tokens_moved
        ):
            return self.settings.count_tokens_region
        return region

    async def build_request(self, call: MessagesCall, target: Target) -> UpstreamRequest:
        """The exact upstream request for `call` at `target`, authenticated."""
        token = await self.tokens.token()
        return self._build(call, target, self.region_for(call, target), token)

    def _build(self, call: MessagesCall, target: Target, region: str, token: str) -> UpstreamRequest:
        project = self.project_for(target)
        filtered = filter_betas(call.betas, call.body, "vertex", extra_drop=self._drop)
        headers: dict[str, str] = dict(call.passthrough_headers) if call.passthrough_headers else {}
        headers["Authorization"] = f"Bearer {token}"
        headers["content-type"] = "application/json"
        headers["anthropic-version"] = call.anthropic_version or DEFAULT_ANTHROPIC_VERSION_HEADER
        if filtered.betas:
            headers["anthropic-beta"] = ",".join(filtered.betas)

        counting = call.operation is Operation.COUNT_TOKENS
        if counting:
            path = _count_tokens_path(project, region)
        else:
            path = _model_path(
                project, region, target.model, "streamRawPredict" if call.stream else "rawPredict"
            )
        url = self.base_url_for(region) + path

        caller_version = call.body_version if call.frontdoor is WireFormat.VERTEX else None
        if (
            caller_version
            and call.raw_body
            and not filtered.body_changed
            # count-tokens carries the model in the body: the caller's must be the one we call.
            and (not counting or call.model == target.model)
        ):
            # The caller already spoke Vertex and nothing needs changing: forward its bytes.
            return UpstreamRequest("POST", url, headers, call.raw_body)

        # One shallow copy: filtering already copied the body when it removed a field.
        body: dict[str, Any] = filtered.body if filtered.body_changed else dict(filtered.body)
        body.pop("anthropic_version", None)
        if counting:
            body.pop("stream", None)
            body["model"] = target.model
        else:
            body.pop("model", None)
            if call.stream:
                body["stream"] = True
            else:
                body.pop("stream", None)
        body["anthropic_version"] = caller_version or self.settings.anthropic_version
        return UpstreamRequest("POST", url, headers, orjson.dumps(body))

    async def send(self, call: MessagesCall, target: Target) -> UpstreamResponse:
        """Send `call`; return the 2xx response, else raise `GatewayError` (upstream body kept)."""
        # The token first: loading the credentials may be what tells us the project.
        token = await self.tokens.token()
        region = self.region_for(call, target)
        req = self._build(call, target, region, token)
        resp = await self._post(req, target)

        if resp.status == 401 and self.tokens.can_refresh:
            # The token may have been revoked or expired early: one retry with a fresh one.
            await _discard(resp)
            log.info("vertex answered 401; refreshing the Google token and retrying once")
            self.tokens.invalidate(token)
            token = await self.tokens.token()
            req.headers["Authorization"] = f"Bearer {token}"
            resp = await self._post(req, target)

        if (
            call.operation is Operation.COUNT_TOKENS
            and region == "global"
            and resp.status in _COUNT_TOKENS_FALLBACK_STATUSES
            and self.settings.count_tokens_region != "global"
        ):
            await _discard(resp)
            fallback = self.settings.count_tokens_region
            resp = await self._post(self._build(call, target, fallback, token), target)
            if 200 <= resp.status < 300:
                project = self.project_for(target)
                if project not in self._count_tokens_moved:
                    log.info(
                        "count-tokens refused at global for %s; counting at %s from now on", project, fallback
                    )
                    self._count_tokens_moved.add(project)

        if 200 <= resp.status < 300:
            return resp
        await raise_for_upstream_status(resp, provider=self.name)
        # A 1xx/3xx (redirects are not followed) is no answer a caller can use.
        resp.release()
        raise GatewayError(502, f"vertex upstream answered HTTP {resp.status}", error_type="api_error")

    async def _post(self, req: UpstreamRequest, target: Target) -> UpstreamResponse:
        try:
            return await self.transport.request(
                req.method, req.url, headers=req.headers, body=req.body, timeouts=target.timeouts
            )
        except TransportError as exc:
            raise transport_error_to_gateway(exc, provider=self.name) from exc


async def _discard(resp: UpstreamResponse) -> None:
    # Read the (small) error body so the connection can go back to the pool.
    try:
        await resp.read()
    except TransportError:
        resp.close()
