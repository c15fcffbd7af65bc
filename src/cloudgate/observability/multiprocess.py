"""Metrics for `cloudgate serve --workers N`: every worker counts, any worker answers for all.

A scrape reaches one worker, so with several workers `/metrics` must report the whole server.
prometheus_client's multiprocess mode does that: each process writes its values to memory-mapped
files in `PROMETHEUS_MULTIPROC_DIR` (one directory per `serve` run, made and removed by the
parent), and the worker that answers a scrape reads and merges every process's files. Counters
and histograms are summed over all workers, dead ones included (so a restart loses nothing);
`cloudgate_open_streams` is summed over live workers; `cloudgate_build_info` has one sample per
live worker, with its `pid` label.

What one process keeps as plain numbers in single-process mode (open streams, tokens, spend)
becomes real metrics here, since another process must be able to read them. Spend is counted in
dollars as a float per worker, so its sum may differ from the exact micro-dollar total in the
last digits. Left per worker, as the scraped worker sees them: the health board gauges (each
worker routes with its own board) and no process or GC metrics (they would describe only the
scraped worker; use the node's own metrics).

With a single process (`--workers 1`, the default) none of this is used: `metrics_sink` returns
the plain `MetricsSink`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from cloudgate.governance.pricing import cache_write_split
from cloudgate.observability.metrics import TOKEN_KINDS, MetricsSink, health_families

if TYPE_CHECKING:
    from cloudgate.gateway.records import RequestRecord
    from cloudgate.routing.router import Router

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

__all__ = [
    "MULTIPROC_ENV",
    "MultiprocessMetricsSink",
    "enable_multiprocess",
    "mark_process_dead",
    "metrics_sink",
]


def enable_multiprocess(directory: str) -> None:
    """Make this process write metric values to `directory` (call in a worker, before any app).

    prometheus_client picks its value class when first imported, from the environment; the
    parent imported it before it knew how many workers it would run, so each worker switches.
    """
    os.environ[MULTIPROC_ENV] = directory
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def metrics_sink(
    router: Callable[[], Router] | None = None, *, model_name: Callable[[str], str]
) -> MetricsSink:
    """The metrics sink for this process: merged across workers when multiprocess mode is on."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        return MultiprocessMetricsSink(router, model_name=model_name, directory=directory)
    return MetricsSink(router, model_name=model_name)


class MultiprocessMetricsSink(MetricsSink):
    """A `MetricsSink` for one of several workers; `render` reports every worker's counts."""

    def __init__(
        self,
        router: Callable[[], Router] | None = None,
        *,
        model_name: Callable[[str], str] | None = None,
        directory: str,
    ) -> None:
        self._directory = directory
        self._streams = Gauge(
            "cloudgate_open_streams",
            "Streamed requests in progress (from going upstream until the stream ends).",
            multiprocess_mode="livesum",
            registry=None,
        )
        self._open = 0
        super().__init__(router, model_name=model_name, process_metrics=False)
        self._router = router
        self._tokens = Counter(
            "cloudgate_tokens",
            "Tokens used by Messages calls; kind=input counts uncached input only.",
            ("provider", "deployment", "model", "kind"),
            registry=None,
        )
        self._cost = Counter(
            "cloudgate_cost_usd",
            "Spend on Messages calls in US dollars, as governance priced them.",
            ("provider", "deployment", "model"),
            registry=None,
        )
        self._usage_children: dict[tuple[str, str, str], tuple[list[Counter], Counter]] = {}

    @property  # type: ignore[override]
    def open_streams(self) -> int:
        """Streams open in this worker (the gauge other workers read is kept equal)."""
        return self._open

    @open_streams.setter
    def open_streams(self, value: int) -> None:
        self._open = value
        self._streams.set(value)

    def emit(self, record: RequestRecord) -> None:
        """Count one finished request, tokens and spend included."""
        super().emit(record)
        if not record.attempts or record.operation != "messages":
            return
        labels = (record.provider, record.deployment, self._model(record))
        children = self._usage_children.get(labels)
        if children is None:
            kinds = [self._tokens.labels(*labels, kind) for kind in TOKEN_KINDS]
            children = self._usage_children[labels] = (kinds, self._cost.labels(*labels))
        kinds, cost = children
        usage = record.usage
        five, hour = cache_write_split(usage)
        for child, count in zip(
            kinds,
            (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens, five, hour),
            strict=True,
        ):
            if count:
                child.inc(count)
        if record.cost_micro:
            cost.inc(record.cost_micro / 1_000_000)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition of every worker's metrics, merged, and its content type."""
        encoder, content_type = choose_encoder(accept)
        registry = CollectorRegistry()
        registry.register(_MergedCollector(self._directory, self._router))
        return encoder(registry), content_type


class _MergedCollector:
    """Every worker's metric files merged, the cache-hit ratio over all of them, and this
    worker's health board."""

    def __init__(self, directory: str, router: Callable[[], Router] | None) -> None:
        self._files = MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call]
        self._router = router

    def collect(self) -> Iterable[Metric]:
        """The merged metric families."""
        every_input = cache_read = 0.0
        for metric in self._files.collect():  # type: ignore[no-untyped-call]
            if metric.name == "cloudgate_tokens":
                for sample in metric.samples:
                    if sample.name.endswith("_total"):
                        every_input += 0 if sample.labels["kind"] == "output" else sample.value
                        cache_read += sample.value if sample.labels["kind"] == "cache_read" else 0
            yield metric
        yield GaugeMetricFamily(
            "cloudgate_cache_hit_ratio",
            "Cache-read share of all input tokens since the server started (use the "
            "tokens_total counters for a ratio over a time window).",
            value=cache_read / every_input if every_input else 0.0,
        )
        if self._router is not None:
            router = self._router()
            yield from health_families(router.board, [d.name for d in router.table.all()])
