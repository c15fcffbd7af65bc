"""MetricsSink on hand-made records: labels, refusals, attempts, tokens, the label cache."""

from __future__ import annotations

from typing import Any

import pytest

from cloudgate.gateway.records import RequestRecord
from cloudgate.observability import metrics as metrics_module
from cloudgate.observability.context import RequestContext, enter_request, leave_request
from cloudgate.observability.metrics import MetricsSink, error_label, rejection_reason
from cloudgate.protocol.messages import Usage
from tests.observability.helpers import parse, series, total, value


def record(**fields: Any) -> RequestRecord:
    base: dict[str, Any] = {
        "request_id": "req_cg1",
        "started_at": 0.0,
        "frontdoor": "anthropic",
        "operation": "messages",
        "status": 200,
        "duration_ms": 1500.0,
    }
    return RequestRecord(**{**base, **fields})


def upstream(deployment: str = "vertex/global", **fields: Any) -> RequestRecord:
    return record(
        provider="vertex",
        deployment=deployment,
        upstream_model="claude-sonnet-4-5@20250929",
        first_byte_ms=400.0,
        attempts=fields.pop("attempts", [{"deployment": deployment, "status": 200, "error": None}]),
        **fields,
    )


def scraped(sink: MetricsSink) -> dict[Any, float]:
    return parse(sink.render()[0].decode())


@pytest.mark.parametrize(
    ("status", "error_type", "reason"),
    [
        (401, "authentication_error", "auth"),
        (403, "authentication_error", "auth"),  # a bad SigV4 signature
        (403, "permission_error", "permission"),
        (402, "billing_error", "budget"),
        (429, "rate_limit_error", "rate_limit"),
        (400, "invalid_request_error", "invalid_request"),
        (404, "not_found_error", "not_found"),
        (413, "request_too_large", "too_large"),
        (405, "something_new", "other"),
        (499, "client_disconnected", None),
        (500, "api_error", None),
        (503, "api_error", None),
    ],
)
def test_refusals_are_classified_by_error_type(status: int, error_type: str, reason: str | None) -> None:
    assert rejection_reason(record(status=status, error_type=error_type)) == reason
    went_upstream = upstream(status=status, error_type=error_type)
    assert rejection_reason(went_upstream) is None  # the upstream said it: not a refusal


def test_unknown_error_types_become_other() -> None:
    assert error_label(None) == "" and error_label("overloaded_error") == "overloaded_error"
    sink = MetricsSink(process_metrics=False)
    sink.emit(upstream(status=200, error_type="made_up_by_upstream"))
    assert [s["error_type"] for s in series(scraped(sink), "cloudgate_requests_total")] == ["other"]


def test_models_are_labelled_by_their_anthropic_id() -> None:
    sink = MetricsSink(process_metrics=False, model_name=lambda name: name.replace("@", "-"))
    sink.emit(upstream())
    sink.emit(record(status=404, error_type="not_found_error", model="claude-made-up-name"))
    models = {s["model"] for s in series(scraped(sink), "cloudgate_requests_total")}
    assert models == {"claude-sonnet-4-5-20250929", ""}


def test_attempts_give_failovers_and_upstream_errors() -> None:
    sink = MetricsSink(process_metrics=False)
    attempts = [
        {"deployment": "vertex/global", "status": 429, "error": "rate_limit_error"},
        {"deployment": "vertex/us-east5", "status": 504, "error": "timeout_error"},
        {"deployment": "bedrock/us-east-1", "status": 200, "error": None},
    ]
    sink.emit(upstream("bedrock/us-east-1", attempts=attempts))
    sink.emit(
        upstream(attempts=[{"deployment": "vertex/global", "status": None, "error": None}])
    )  # abandoned
    sink.emit(upstream(attempts=[{"deployment": "vertex/global", "status": 499, "error": None}]))
    samples = scraped(sink)
    assert value(samples, "cloudgate_failovers_total", from_deployment="vertex/global") == 1
    assert value(samples, "cloudgate_failovers_total", from_deployment="vertex/us-east5") == 1
    assert total(samples, "cloudgate_failovers_total") == 2
    assert value(samples, "cloudgate_upstream_errors_total", deployment="vertex/global", status="429") == 1
    assert value(samples, "cloudgate_upstream_errors_total", deployment="vertex/us-east5", status="504") == 1
    assert total(samples, "cloudgate_upstream_errors_total") == 2


def test_token_counts_are_not_usage() -> None:
    sink = MetricsSink(process_metrics=False)
    sink.emit(upstream(operation="count_tokens", usage=Usage(input_tokens=9000)))
    sink.emit(
        upstream(
            usage=Usage(
                input_tokens=10,
                output_tokens=20,
                cache_read_input_tokens=300,
                cache_creation_input_tokens=70,  # 50 of them split out as 1-hour writes
                cache_creation_1h_input_tokens=50,
            ),
            cost_micro=1234,
        )
    )
    samples = scraped(sink)
    kinds = {
        s["kind"]: value(samples, "cloudgate_tokens_total", **s)
        for s in series(samples, "cloudgate_tokens_total")
    }
    assert kinds == {"input": 10, "output": 20, "cache_read": 300, "cache_write_5m": 20, "cache_write_1h": 50}
    assert total(samples, "cloudgate_cost_usd_total") == 0.001234
    assert value(samples, "cloudgate_cache_hit_ratio") == 300 / 380
    assert total(samples, "cloudgate_requests_total", operation="count_tokens") == 1


def test_overhead_is_observed_only_for_the_request_in_progress() -> None:
    sink = MetricsSink(process_metrics=False)
    sink.emit(upstream())  # outside any request: nothing to measure from
    token = enter_request(RequestContext("req_cg1", started=10.0, upstream_at=10.0004))
    try:
        sink.emit(upstream(request_id="req_cg2"))  # some other request's record
        sink.emit(upstream())
    finally:
        leave_request(token)
    samples = scraped(sink)
    assert total(samples, "cloudgate_gateway_overhead_seconds_count") == 1
    assert total(samples, "cloudgate_gateway_overhead_seconds_sum") == pytest.approx(0.0004)
    assert total(samples, "cloudgate_request_duration_seconds_count") == 3


def test_the_label_cache_is_bounded_and_loses_no_count(monkeypatch) -> None:
    monkeypatch.setattr(metrics_module, "_SERIES_LIMIT", 2)
    sink = MetricsSink(process_metrics=False)
    for i in range(10):
        sink.emit(upstream(status=200 + i % 5, usage=Usage(input_tokens=1)))
    assert len(sink._series) <= 2
    samples = scraped(sink)
    assert total(samples, "cloudgate_requests_total") == 10
    assert total(samples, "cloudgate_tokens_total", kind="input") == 10
