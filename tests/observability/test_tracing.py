"""Traces: one span per request from its record, with the GenAI attributes, exported by OTLP/HTTP."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from cloudgate.config.settings import TelemetrySettings
from cloudgate.emulator import Fault
from cloudgate.observability.tracing import TraceSink, build_trace_sink, traces_url
from tests.conftest import Stack
from tests.observability.helpers import SONNET, ask, routed

FAILOVER = routed()
PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{PARENT_TRACE}-00f067aa0ba902b7-01"


def traced(stack: Stack) -> InMemorySpanExporter:
    """Give the running gateway a trace sink that keeps its spans in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    state = stack.gateway.state
    state.sinks.append(TraceSink(provider, stack.gateway.upstream_host))
    state.tracing = True
    return exporter


def by_request(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {str(s.attributes["cloudgate.request_id"]): s for s in spans if s.attributes}


def test_one_span_per_request_with_genai_attributes(make_stack) -> None:
    gw = make_stack(settings=FAILOVER)
    exporter = traced(gw)
    gw.emulator.state.faults.add(Fault(kind="server_error", status=503, platform="vertex", times=1))
    first = ask(gw, "fail over", headers={"traceparent": TRACEPARENT})
    second = ask(gw, "stream", stream=True, max_tokens=33)
    refused = ask(gw, key="cg-wrong")
    assert (first.status_code, second.status_code, refused.status_code) == (200, 200, 401)
    records = {r.request_id: r for r in gw.records(3)}
    spans = by_request(exporter.get_finished_spans())
    assert len(exporter.get_finished_spans()) == 3 and spans.keys() == records.keys()

    failed_over = spans[first.headers["x-cloudgate-request-id"]]
    record = records[first.headers["x-cloudgate-request-id"]]
    assert failed_over.name == f"chat {SONNET}" and failed_over.kind is SpanKind.CLIENT
    attributes = dict(failed_over.attributes or {})
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "aws.bedrock",
        "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.request.model": SONNET,
        "gen_ai.request.max_tokens": 20,
        "gen_ai.response.model": record.upstream_model,
        "gen_ai.response.finish_reasons": ("end_turn",),
        "gen_ai.usage.input_tokens": record.usage.total_input_tokens,
        "gen_ai.usage.output_tokens": record.usage.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": 0,
        "gen_ai.usage.cache_creation.input_tokens": 0,
        "server.address": "127.0.0.1",  # the emulator, standing in for bedrock-runtime.<region>
        "http.response.status_code": 200,
        "cloud.region": "us-east-1",
        "cloudgate.request_id": record.request_id,
        "cloudgate.frontdoor": "anthropic",
        "cloudgate.stream": False,
        "cloudgate.deployment": "bedrock/us-east-1",
        "cloudgate.attempts": 2,
        "cloudgate.first_byte_ms": record.first_byte_ms,
        "cloudgate.cost_usd": record.cost_micro / 1_000_000,
    }
    # Timed as the request was, and a child of the caller's trace.
    assert failed_over.start_time == int(record.started_at * 1e9)
    assert failed_over.end_time == failed_over.start_time + int(record.duration_ms * 1e6)
    assert failed_over.context.trace_id == int(PARENT_TRACE, 16)
    assert failed_over.parent is not None and failed_over.parent.span_id == 0x00F067AA0BA902B7
    assert failed_over.status.status_code is StatusCode.UNSET

    streamed = spans[second.headers["x-cloudgate-request-id"]]
    assert (
        streamed.attributes["cloudgate.stream"] is True
        and streamed.attributes["gen_ai.request.max_tokens"] == 33
    )
    assert streamed.parent is None and streamed.context.trace_id != int(PARENT_TRACE, 16)

    (error,) = (s for rid, s in spans.items() if records[rid].status == 401)
    assert error.status.status_code is StatusCode.ERROR
    assert error.attributes["error.type"] == "authentication_error"
    assert "gen_ai.system" not in error.attributes and error.name == "chat"


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver: keeps what is POSTed to /v1/traces."""

    received: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.path == "/v1/traces":
            self.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()
        else:
            self.send_error(404)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []
    handler = type("Handler", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_spans_are_exported_by_otlp_http(make_stack, collector) -> None:
    url, received = collector
    gw = make_stack(
        settings={
            "telemetry": {
                "otlp_endpoint": url,
                "otlp_headers": {"x-tenant": "team-a"},
                "service_name": "gw-test",
            }
        }
    )
    (sink,) = (s for s in gw.gateway.state.sinks if isinstance(s, TraceSink))
    assert gw.gateway.state.tracing
    sent = [ask(gw, f"hello {i}").headers["x-cloudgate-request-id"] for i in range(3)]
    gw.records(3)
    assert sink.provider.force_flush(10_000)
    assert received, "no POST reached /v1/traces"
    spans = []
    for headers, body in received:
        assert headers["content-type"] == "application/x-protobuf" and headers["x-tenant"] == "team-a"
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            assert resource["service.name"] == "gw-test"
            for scope_spans in resource_spans.scope_spans:
                spans.extend(scope_spans.spans)
    assert sorted(s.name for s in spans) == [f"chat {SONNET}"] * 3
    ids = sorted(
        next(a.value.string_value for a in s.attributes if a.key == "cloudgate.request_id") for s in spans
    )
    assert ids == sorted(sent)


def test_without_opentelemetry_one_warning_and_no_traces(monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    settings = TelemetrySettings(otlp_endpoint="http://127.0.0.1:4318")
    with caplog.at_level("WARNING", logger="cloudgate.observability"):
        assert build_trace_sink(settings) is None
    (warning,) = caplog.records
    assert (
        "OpenTelemetry is not installed" in warning.getMessage() and "cloudgate[otel]" in warning.getMessage()
    )


def test_no_endpoint_no_trace_sink(gw: Stack) -> None:
    assert build_trace_sink(TelemetrySettings()) is None
    assert not gw.gateway.state.tracing
    assert not any(isinstance(s, TraceSink) for s in gw.gateway.state.sinks)


def test_endpoint_is_a_base_url_or_the_traces_url() -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert traces_url("https://otlp.example/v1/traces") == "https://otlp.example/v1/traces"
