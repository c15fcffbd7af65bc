"""Metrics, structured logs, traces and readiness for the gateway.

- `metrics.MetricsSink`: Prometheus metrics fed from request records, served at /metrics.
- `logging.configure_logging`: text or JSON log lines carrying the request id.
- `tracing.build_trace_sink`: one OpenTelemetry span per request (the optional `otel` extra).
- `health.store_problem`: the store check behind /readyz.
- `context`: the request being served, for log lines and sinks.
"""

from cloudgate.observability.context import RequestContext, current_request, current_request_id
from cloudgate.observability.logging import configure_logging
from cloudgate.observability.metrics import MetricsSink
from cloudgate.observability.tracing import TraceSink, build_trace_sink

__all__ = [
    "MetricsSink",
    "RequestContext",
    "TraceSink",
    "build_trace_sink",
    "configure_logging",
    "current_request",
    "current_request_id",
]
