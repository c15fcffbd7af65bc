"""OpenTelemetry traces: one span per request, made from its finished record.

The span is built after the fact with the record's start and end times, so tracing costs the
request path nothing per chunk and nothing at all while a request runs; spans leave in batches
from the SDK's own thread. Attributes follow the OpenTelemetry GenAI semantic conventions
(`gen_ai.*`), with the gateway's own under `cloudgate.*`. When the caller sent a W3C
`traceparent`, the span joins the caller's trace.

OpenTelemetry is an optional extra (`pip install 'cloudgate[otel]'`): without it, a configured
endpoint gives one warning and the gateway runs without traces.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cloudgate import __version__
from cloudgate.config.settings import TelemetrySettings
from cloudgate.observability.context import current_request

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from cloudgate.gateway.records import RequestRecord

log = logging.getLogger("cloudgate.observability")

# gen_ai.system (and its successor gen_ai.provider.name) for each upstream.
GEN_AI_SYSTEMS = {"vertex": "gcp.vertex_ai", "bedrock": "aws.bedrock", "anthropic": "anthropic"}

# (provider, deployment, region) -> the upstream's host name, or None when unknown.
AddressResolver = Callable[[str, str, str], str | None]


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for an endpoint given as a base URL (as OTEL_EXPORTER_OTLP_ENDPOINT
    is) or already as the full `/v1/traces` URL."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def span_attributes(record: RequestRecord, server_address: str | None = None) -> dict[str, Any]:
    """The span attributes for one record (GenAI semantic conventions plus cloudgate's own)."""
    system = GEN_AI_SYSTEMS.get(record.provider, record.provider)
    usage = record.usage
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation_name(record),
        "gen_ai.request.model": record.model,
        # Input tokens include the cached ones, as the conventions ask; the split follows.
        "gen_ai.usage.input_tokens": usage.total_input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": usage.cache_read_input_tokens,
        "gen_ai.usage.cache_creation.input_tokens": usage.cache_creation_input_tokens,
        "http.response.status_code": record.status,
        "cloudgate.request_id": record.request_id,
        "cloudgate.frontdoor": record.frontdoor,
        "cloudgate.stream": record.stream,
        "cloudgate.attempts": len(record.attempts),
    }
    if system:
        attributes["gen_ai.system"] = system
        attributes["gen_ai.provider.name"] = system
    if record.upstream_model:
        attributes["gen_ai.response.model"] = record.upstream_model
    if record.stop_reason:
        attributes["gen_ai.response.finish_reasons"] = (record.stop_reason,)
    if record.deployment:
        attributes["cloudgate.deployment"] = record.deployment
    if record.region:
        attributes["cloud.region"] = record.region
    if server_address:
        attributes["server.address"] = server_address
    if record.first_byte_ms is not None:
        attributes["cloudgate.first_byte_ms"] = record.first_byte_ms
    if record.cost_micro is not None:
        attributes["cloudgate.cost_usd"] = record.cost_micro / 1_000_000
    if record.error_type is not None:
        attributes["error.type"] = record.error_type
    return attributes


def operation_name(record: RequestRecord) -> str:
    """`chat` for Messages calls; the gateway's own name for token counting."""
    return "chat" if record.operation == "messages" else record.operation or "chat"


class TraceSink:
    """A record sink that turns each record into one finished span."""

    def __init__(self, provider: TracerProvider, address_for: AddressResolver | None = None) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.address_for = address_for
        self._tracer = provider.get_tracer("cloudgate", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._client = SpanKind.CLIENT
        self._error = Status(StatusCode.ERROR)
        self._addresses: dict[tuple[str, str, str], str | None] = {}

    def emit(self, record: RequestRecord) -> None:
        """Record one request as a span, timed as the request was."""
        context = current_request()
        parent = None
        if context is not None and context.request_id == record.request_id and context.traceparent:
            parent = self._propagator.extract({"traceparent": context.traceparent})
        attributes = span_attributes(record, self._address(record))
        if context is not None and context.max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = context.max_tokens
        start = int(record.started_at * 1e9)
        span = self._tracer.start_span(
            f"{attributes['gen_ai.operation.name']} {record.model}".rstrip(),
            context=parent,
            kind=self._client,
            attributes=attributes,
            start_time=start,
        )
        if record.status >= 400 or record.error_type is not None:
            span.set_status(self._error)
        span.end(end_time=start + int(record.duration_ms * 1e6))

    def _address(self, record: RequestRecord) -> str | None:
        if self.address_for is None or not record.provider:
            return None
        key = (record.provider, record.deployment, record.region)
        if key not in self._addresses:
            if len(self._addresses) > 1000:
                self._addresses.clear()
            self._addresses[key] = self.address_for(*key)
        return self._addresses[key]

    def close(self) -> None:
        """Send the spans still queued and stop the exporter."""
        self.provider.shutdown()


def build_trace_sink(
    settings: TelemetrySettings, address_for: AddressResolver | None = None
) -> TraceSink | None:
    """A trace sink exporting by OTLP/HTTP to `settings.otlp_endpoint`; None when no endpoint is
    set, or (with one warning) when the OpenTelemetry packages are not installed."""
    if not settings.otlp_endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.warning(
            "telemetry.otlp_endpoint is set but OpenTelemetry is not installed (%s); running without "
            "traces. Install it with: pip install 'cloudgate[otel]'",
            exc,
        )
        return None
    resource = Resource.create({"service.name": settings.service_name, "service.version": __version__})
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=traces_url(settings.otlp_endpoint), headers=settings.otlp_headers)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return TraceSink(provider, address_for)
