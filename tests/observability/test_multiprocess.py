"""Metrics of several workers: each writes its own files, any one renders the sum of all.

Two "workers" are played in this process by giving prometheus_client a different process id for
each sink's values (what a fork gives each worker for real; tests/gateway/test_workers.py runs
the real thing).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import values

from cloudgate.observability.metrics import MetricsSink
from cloudgate.observability.multiprocess import (
    MULTIPROC_ENV,
    MultiprocessMetricsSink,
    mark_process_dead,
    metrics_sink,
)
from cloudgate.protocol.messages import Usage
from tests.observability.helpers import parse, total
from tests.observability.test_metrics_sink import upstream


@pytest.fixture
def as_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """`as_worker(pid)` makes the next metrics created write as process `pid` in `tmp_path`."""
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    saved = values.ValueClass

    def switch(pid: int) -> None:
        values.ValueClass = values.MultiProcessValue(process_identifier=lambda: pid)

    yield switch
    values.ValueClass = saved


def test_single_process_unless_the_directory_is_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    assert type(metrics_sink(model_name=str)) is MetricsSink
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    assert isinstance(metrics_sink(model_name=str), MultiprocessMetricsSink)


def test_any_worker_renders_every_worker(tmp_path: Path, as_worker) -> None:
    sinks = []
    for pid in (101, 102):
        as_worker(pid)
        sinks.append(MultiprocessMetricsSink(directory=str(tmp_path)))
    usage = Usage(input_tokens=10, output_tokens=5, cache_read_input_tokens=30)
    sinks[0].emit(upstream(usage=usage, cost_micro=1_500))
    sinks[1].emit(upstream(usage=usage, cost_micro=2_500))
    sinks[1].emit(upstream(usage=usage, cost_micro=0))
    sinks[0].open_streams += 1
    sinks[1].open_streams += 2
    for sink in sinks:  # either worker may answer the scrape
        samples = parse(sink.render()[0].decode())
        assert total(samples, "cloudgate_requests_total", status="200") == 3
        assert total(samples, "cloudgate_tokens_total", kind="output") == 15
        assert total(samples, "cloudgate_cost_usd_total") == pytest.approx(0.004)
        assert total(samples, "cloudgate_cache_hit_ratio") == pytest.approx(90 / 120)
        assert total(samples, "cloudgate_open_streams") == 3
        pids = {dict(labels)["pid"] for name, labels in samples if name == "cloudgate_build_info"}
        assert pids == {"101", "102"}
    # A worker that died: its live gauges go, its counts stay.
    mark_process_dead(102, str(tmp_path))
    samples = parse(sinks[0].render()[0].decode())
    assert total(samples, "cloudgate_open_streams") == 1
    assert total(samples, "cloudgate_requests_total", status="200") == 3
    assert {dict(labels)["pid"] for name, labels in samples if name == "cloudgate_build_info"} == {"101"}
