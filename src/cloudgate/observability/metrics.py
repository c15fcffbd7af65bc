"""Prometheus metrics, fed from the one `RequestRecord` every request ends in.

`MetricsSink` sits among the record sinks (`GatewayState.sinks`), so the request path pays one
`emit` per request and nothing per chunk. Each gateway app has a registry of its own, so
several apps in one process (tests, the demo) keep separate counts. What is only interesting at
scrape time (the health board, open streams, lifetime ratios) is computed then, by a collector,
and costs the request path nothing.

Labels stay low-cardinality: front door, operation, provider, deployment, model (the Anthropic
id of the model sent upstream), status, stream flag, error type. Nothing the caller chooses
freely becomes a label: a model name the gateway could not resolve is left out (`model=""`)
and unknown error types become `other`. Key ids and session ids are never labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector

from cloudgate import __version__
from cloudgate.governance.pricing import cache_write_split
from cloudgate.observability.context import current_request

if TYPE_CHECKING:
    from cloudgate.gateway.records import RequestRecord
    from cloudgate.routing.health import HealthBoard
    from cloudgate.routing.router import Router

# Upstream calls run from well under a second (count_tokens) to minutes (long generations).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
FIRST_BYTE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
# The gateway's own share is meant to stay well under a millisecond.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

TOKEN_KINDS = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
HEALTH_STATES = ("healthy", "cooling", "half-open", "not-offered", "saturated")

# Error types a record can carry; anything else (an upstream's own name) is reported as `other`.
KNOWN_ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
        "timeout_error",
        "client_disconnected",
    }
)

# Why the gateway itself refused a request (no upstream attempt), by the refusal's error type.
REJECTION_REASONS = {
    "authentication_error": "auth",
    "permission_error": "permission",
    "billing_error": "budget",
    "rate_limit_error": "rate_limit",
    "invalid_request_error": "invalid_request",
    "not_found_error": "not_found",
    "request_too_large": "too_large",
}

_SERIES_LIMIT = 10_000  # the label cache is bounded even if an upstream invents error types


def error_label(error_type: str | None) -> str:
    """The `error_type` label for a record's error type: "" for none, `other` for unknown ones."""
    if error_type is None:
        return ""
    return error_type if error_type in KNOWN_ERROR_TYPES else "other"


def rejection_reason(record: RequestRecord) -> str | None:
    """Why the gateway refused `record`'s request itself, or None if it did not."""
    if record.attempts or not 400 <= record.status < 500 or record.status == 499:
        return None
    return REJECTION_REASONS.get(record.error_type or "", "other")


def overhead_seconds(record: RequestRecord) -> float | None:
    """The gateway's own time before the request went upstream, when this request is the one
    in progress here and it got that far (see docs/decisions/0024-metrics-from-records.md)."""
    context = current_request()
    if context is None or context.request_id != record.request_id or context.upstream_at is None:
        return None
    return context.upstream_at - context.started


class _Children:
    """A labelled counter's children by label values, without `labels()`'s validation and lock
    on every use."""

    __slots__ = ("_cache", "_metric")

    def __init__(self, metric: Counter) -> None:
        self._metric = metric
        self._cache: dict[tuple[str, ...], Counter] = {}

    def __call__(self, *labels: str) -> Counter:
        """The child for these label values."""
        child = self._cache.get(labels)
        if child is None:
            child = self._cache[labels] = self._metric.labels(*labels)
        return child


@dataclass(slots=True)
class _Upstream:
    """The children a request that went upstream updates beyond its request count."""

    duration: Histogram
    first_byte: Histogram
    overhead: Histogram
    # Running sums for the series' (provider, deployment, model): tokens in TOKEN_KINDS order,
    # then cost in micro-dollars; None for count_tokens answers, which report a count, not usage.
    usage: list[int] | None


@dataclass(slots=True)
class _Series:
    """The metric children one combination of record labels updates, looked up once."""

    requests: Counter
    upstream: _Upstream | None = None  # made on the first such request that went upstream


class MetricsSink:
    """A record sink that keeps the gateway's Prometheus metrics; `render` gives /metrics."""

    def __init__(
        self,
        router: Callable[[], Router] | None = None,
        *,
        model_name: Callable[[str], str] | None = None,
        process_metrics: bool = True,
    ) -> None:
        self.registry = CollectorRegistry()
        self._model_name = model_name or (lambda name: name)
        registry = self.registry
        record_labels = ("frontdoor", "operation", "provider", "deployment", "model", "status", "stream")
        self.requests = Counter(
            "cloudgate_requests",
            "Requests served, by outcome.",
            [*record_labels, "error_type"],
            registry=registry,
        )
        upstream_labels = ("provider", "deployment", "model", "stream")
        self.duration = Histogram(
            "cloudgate_request_duration_seconds",
            "Whole time of requests that went upstream, from arrival to the last byte.",
            upstream_labels,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.first_byte = Histogram(
            "cloudgate_time_to_first_byte_seconds",
            "Upstream time of the answering attempt: from sending it to its first event "
            "(streams) or its whole body (other answers).",
            upstream_labels,
            buckets=FIRST_BYTE_BUCKETS,
            registry=registry,
        )
        self.overhead = Histogram(
            "cloudgate_gateway_overhead_seconds",
            "The gateway's own time before a request goes upstream: authentication, body, "
            "decoding, routing, caching policy, admission.",
            ("frontdoor",),
            buckets=OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.upstream_errors = Counter(
            "cloudgate_upstream_errors",
            "Upstream attempts that answered with a non-2xx status (or failed to connect, as 502/504).",
            ("deployment", "status"),
            registry=registry,
        )
        self.failovers = Counter(
            "cloudgate_failovers",
            "Attempts made after an earlier one failed, by the deployment that failed.",
            ("from_deployment",),
            registry=registry,
        )
        self.rejections = Counter(
            "cloudgate_rejections",
            "Requests the gateway refused itself, without an upstream attempt.",
            ("reason",),
            registry=registry,
        )
        # With several workers (observability/multiprocess.py): one sample per live worker.
        Gauge(
            "cloudgate_build_info",
            "The running cloudgate.",
            ("version",),
            registry=registry,
            multiprocess_mode="liveall",
        ).labels(__version__).set(1)
        # Plain numbers rather than metric children where the request path only adds: a list
        # element costs a tenth of a Counter's locked increment, and money stays an integer
        # (micro-dollars) until it is exported. The scrape-time collector reads them.
        self.open_streams = 0
        self._usage: dict[tuple[str, str, str], list[int]] = {}
        self._series: dict[tuple[object, ...], _Series] = {}
        self._upstream_error = _Children(self.upstream_errors)
        self._failover = _Children(self.failovers)
        self._rejection = _Children(self.rejections)
        registry.register(_ScrapeTimeCollector(self, router))
        if process_metrics:
            ProcessCollector(registry=registry)
            GCCollector(registry=registry)

    # -- the request path ------------------------------------------------------------------

    def emit(self, record: RequestRecord) -> None:
        """Count one finished request."""
        key = (
            record.frontdoor,
            record.operation,
            record.provider,
            record.deployment,
            record.upstream_model,
            record.status,
            record.stream,
            record.error_type,
        )
        series = self._series.get(key)
        if series is None:
            series = self._new_series(record)
            if len(self._series) >= _SERIES_LIMIT:
                self._series.clear()
            self._series[key] = series
        series.requests.inc()
        attempts = record.attempts
        if not attempts:
            reason = rejection_reason(record)
            if reason is not None:
                self._rejection(reason).inc()
            return
        upstream = series.upstream
        if upstream is None:
            upstream = series.upstream = self._new_upstream(record)
        upstream.duration.observe(record.duration_ms / 1000)
        if record.first_byte_ms is not None:
            upstream.first_byte.observe(record.first_byte_ms / 1000)
        overhead = overhead_seconds(record)
        if overhead is not None:
            upstream.overhead.observe(overhead)
        previous: str | None = None
        for attempt in attempts:
            deployment = attempt["deployment"]
            if previous is not None:
                self._failover(previous).inc()
            status = attempt["status"]
            if status is not None and not 200 <= status < 300 and status != 499:
                self._upstream_error(deployment, str(status)).inc()
            previous = deployment
        sums = upstream.usage
        if sums is not None:
            usage = record.usage
            five, hour = cache_write_split(usage)
            sums[0] += usage.input_tokens
            sums[1] += usage.output_tokens
            sums[2] += usage.cache_read_input_tokens
            sums[3] += five
            sums[4] += hour
            if record.cost_micro:
                sums[5] += record.cost_micro

    def _model(self, record: RequestRecord) -> str:
        return self._model_name(record.upstream_model) if record.upstream_model else ""

    def _new_series(self, record: RequestRecord) -> _Series:
        requests = self.requests.labels(
            record.frontdoor,
            record.operation,
            record.provider,
            record.deployment,
            self._model(record),
            str(record.status),
            str(record.stream).lower(),
            error_label(record.error_type),
        )
        return _Series(requests)

    def _new_upstream(self, record: RequestRecord) -> _Upstream:
        provider, deployment, model = record.provider, record.deployment, self._model(record)
        labels = (provider, deployment, model, str(record.stream).lower())
        usage = None
        if record.operation == "messages":
            usage = self._usage.setdefault((provider, deployment, model), [0] * (len(TOKEN_KINDS) + 1))
        return _Upstream(
            duration=self.duration.labels(*labels),
            first_byte=self.first_byte.labels(*labels),
            overhead=self.overhead.labels(record.frontdoor),
            usage=usage,
        )

    def close(self) -> None:
        """Nothing to write out: metrics live as long as the process."""

    # -- scrape time -----------------------------------------------------------------------

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition for a scrape and its content type (OpenMetrics when asked for)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def usage_families(self) -> Iterator[Metric]:
        """Tokens and spend so far, and the lifetime cache-hit ratio."""
        tokens = CounterMetricFamily(
            "cloudgate_tokens",
            "Tokens used by Messages calls; kind=input counts uncached input only.",
            labels=("provider", "deployment", "model", "kind"),
        )
        cost = CounterMetricFamily(
            "cloudgate_cost_usd",
            "Spend on Messages calls in US dollars, as governance priced them.",
            labels=("provider", "deployment", "model"),
        )
        every_input = cache_read = 0
        for labels, sums in self._usage.items():
            for kind, count in zip(TOKEN_KINDS, sums, strict=False):
                tokens.add_metric((*labels, kind), count)
            cost.add_metric(labels, sums[5] / 1_000_000)
            every_input += sums[0] + sums[2] + sums[3] + sums[4]
            cache_read += sums[2]
        yield tokens
        yield cost
        yield GaugeMetricFamily(
            "cloudgate_cache_hit_ratio",
            "Cache-read share of all input tokens since the process started (use the "
            "tokens_total counters for a ratio over a time window).",
            value=cache_read / every_input if every_input else 0.0,
        )


class _ScrapeTimeCollector:
    """What is read when Prometheus scrapes: streams open, spend, and the health board."""

    def __init__(self, sink: MetricsSink, router: Callable[[], Router] | None) -> None:
        self._sink = sink
        self._router = router

    def collect(self) -> Iterable[Metric]:
        """The scrape-time metric families."""
        yield GaugeMetricFamily(
            "cloudgate_open_streams",
            "Streamed requests in progress (from going upstream until the stream ends).",
            value=self._sink.open_streams,
        )
        yield from self._sink.usage_families()
        if self._router is not None:
            router = self._router()
            yield from health_families(router.board, [d.name for d in router.table.all()])


def health_families(board: HealthBoard, deployments: list[str]) -> Iterator[Metric]:
    """The health board as gauges: cooldowns per deployment, and each (deployment, model)
    pair's state, requests in flight and concurrency cap."""
    cooldowns = dict.fromkeys(deployments, 0)
    state = GaugeMetricFamily(
        "cloudgate_deployment_state",
        "1 for the state each deployment is in for each model, 0 for the others.",
        labels=("deployment", "model", "state"),
    )
    in_flight = GaugeMetricFamily(
        "cloudgate_deployment_in_flight",
        "Requests in flight to each deployment for each model.",
        labels=("deployment", "model"),
    )
    limit = GaugeMetricFamily(
        "cloudgate_deployment_concurrency_limit",
        "The adaptive cap on requests in flight to each deployment for each model.",
        labels=("deployment", "model"),
    )
    for entry in board.snapshot():
        deployment, model, now = str(entry["deployment"]), str(entry["model"]), entry["state"]
        if now == "cooling":
            cooldowns[deployment] = cooldowns.get(deployment, 0) + 1
        for name in HEALTH_STATES:
            state.add_metric((deployment, model, name), 1.0 if name == now else 0.0)
        in_flight.add_metric((deployment, model), float(entry["in_flight"]))
        limit.add_metric((deployment, model), float(entry["concurrency_limit"]))
    cooling = GaugeMetricFamily(
        "cloudgate_cooldowns",
        "Models each deployment is cooling down for after failures.",
        labels=("deployment",),
    )
    for deployment, count in cooldowns.items():
        cooling.add_metric((deployment,), float(count))
    yield cooling
    yield state
    yield in_flight
    yield limit
