"""/metrics after known traffic: every count and sum checked against the request records."""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from collections import defaultdict
from typing import Any

import requests

from cloudgate.catalog import default_catalog
from cloudgate.emulator import EmulatorConfig, Fault
from cloudgate.governance.pricing import cache_write_split
from cloudgate.governance.types import Limits, Period, Scope, usd_to_micro
from tests.conftest import Stack
from tests.gateway.test_app import post
from tests.gateway.test_governor import _with_store, new_key, run
from tests.observability.helpers import (
    SONNET,
    Samples,
    ask,
    label_values,
    parse,
    routed,
    scrape,
    series,
    total,
    value,
)

VERTEX, BEDROCK, ANTHROPIC = "vertex/us-east5", "bedrock/us-east-1", "anthropic"
# One failure cools a deployment down (visible on the health board); no affinity, so the order holds.
THREE_PROVIDERS = routed(cooldown_failures=1, affinity=False)
SESSION = "session-0f3e5d7c-not-a-label"
IN_SESSION = {"x-claude-code-session-id": SESSION}
CACHED_SYSTEM = [
    {"type": "text", "text": "You are a careful assistant. " * 40, "cache_control": {"type": "ephemeral"}}
]


def model_label(record: Any) -> str:
    return default_catalog().anthropic_id(record.upstream_model) if record.upstream_model else ""


def request_labels(record: Any) -> frozenset[tuple[str, str]]:
    return frozenset(
        {
            "frontdoor": record.frontdoor,
            "operation": record.operation,
            "provider": record.provider,
            "deployment": record.deployment,
            "model": model_label(record),
            "status": str(record.status),
            "stream": str(record.stream).lower(),
            "error_type": record.error_type or "",
        }.items()
    )


def known_traffic(gw: Stack) -> list[Any]:
    """A failover, a stream, cache writes and reads, a count, and four kinds of refusal."""
    gw.emulator.state.faults.add(Fault(kind="server_error", status=503, platform="vertex", times=1))
    assert ask(gw, "fails over", headers=IN_SESSION).status_code == 200  # Vertex 503, then Bedrock
    assert (
        ask(gw, "streams", headers=IN_SESSION, stream=True).status_code == 200
    )  # Vertex cools down: Bedrock
    for _ in range(2):  # a cache write, then a read
        assert ask(gw, "cached", system=CACHED_SYSTEM).status_code == 200
    counted = post(
        gw, "/v1/messages/count_tokens", {"model": SONNET, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert counted.status_code == 200
    assert ask(gw, key="cg-wrong-key").status_code == 401
    broke, broke_id = new_key(gw)
    run(
        _with_store(
            gw, lambda s: s.budgets.set(Scope.KEY, broke_id, Period.MONTHLY, usd_to_micro("0.000001"))
        )
    )
    assert ask(gw, key=broke).status_code == 402
    limited, limited_id = new_key(gw)
    run(_with_store(gw, lambda s: s.limits.set(Scope.KEY, limited_id, Limits(requests_per_minute=1))))
    assert [ask(gw, key=limited).status_code for _ in range(2)] == [200, 429]
    assert ask(gw, max_tokens=0).status_code == 400
    return gw.records(10)


def test_metrics_match_the_records_exactly(make_stack) -> None:
    gw = make_stack(emulator=EmulatorConfig(min_cacheable_tokens=16), settings=THREE_PROVIDERS)
    records = known_traffic(gw)
    samples = scrape(gw)

    # One request, one count, under exactly the labels of its record.
    expected = Tally(request_labels(r) for r in records)
    got = {ls: v for (n, ls), v in samples.items() if n == "cloudgate_requests_total"}
    assert got == {ls: float(n) for ls, n in expected.items()}

    # The failover and the upstream errors, from the attempts.
    assert records[0].attempts == [
        {"deployment": VERTEX, "status": 503, "error": "overloaded_error"},
        {"deployment": BEDROCK, "status": 200, "error": None},
    ]
    assert series(samples, "cloudgate_failovers_total") == [{"from_deployment": VERTEX}]
    assert value(samples, "cloudgate_failovers_total", from_deployment=VERTEX) == 1
    errors = Tally(
        (a["deployment"], str(a["status"])) for r in records for a in r.attempts if a["status"] != 200
    )
    assert {
        (d["deployment"], d["status"]) for d in series(samples, "cloudgate_upstream_errors_total")
    } == set(errors)
    for (deployment, status), n in errors.items():
        assert value(samples, "cloudgate_upstream_errors_total", deployment=deployment, status=status) == n
    assert errors[(VERTEX, "503")] == 1

    # The gateway's own refusals, by reason.
    assert {
        d["reason"]: value(samples, "cloudgate_rejections_total", **d)
        for d in series(samples, "cloudgate_rejections_total")
    } == {
        "auth": 1,
        "budget": 1,
        "rate_limit": 1,
        "invalid_request": 1,  # max_tokens 0 is refused before going upstream
    }

    # Tokens and spend per (provider, deployment, model), from Messages calls only.
    upstream = [r for r in records if r.attempts]
    sums: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0] * 6)
    for r in upstream:
        if r.operation != "messages":
            continue
        five, hour = cache_write_split(r.usage)
        row = sums[(r.provider, r.deployment, model_label(r))]
        for i, n in enumerate(
            (
                r.usage.input_tokens,
                r.usage.output_tokens,
                r.usage.cache_read_input_tokens,
                five,
                hour,
                r.cost_micro or 0,
            )
        ):
            row[i] += n
    assert {
        (d["provider"], d["deployment"], d["model"]) for d in series(samples, "cloudgate_tokens_total")
    } == set(sums)
    for (provider, deployment, model), row in sums.items():
        where = {"provider": provider, "deployment": deployment, "model": model}
        for kind, n in zip(
            ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h"), row, strict=False
        ):
            assert value(samples, "cloudgate_tokens_total", kind=kind, **where) == n, (kind, where)
        assert value(samples, "cloudgate_cost_usd_total", **where) == row[5] / 1_000_000
    assert total(samples, "cloudgate_tokens_total", kind="cache_read") > 0
    assert total(samples, "cloudgate_cost_usd_total") > 0
    every_input = sum(row[0] + row[2] + row[3] + row[4] for row in sums.values())
    cache_read = sum(row[2] for row in sums.values())
    assert value(samples, "cloudgate_cache_hit_ratio") == cache_read / every_input

    # Durations and first bytes: counts and sums per series, exactly as the records have them.
    durations: dict[frozenset[tuple[str, str]], list[float]] = defaultdict(list)
    first_bytes: dict[frozenset[tuple[str, str]], list[float]] = defaultdict(list)
    for r in upstream:
        labels = frozenset(
            {
                "provider": r.provider,
                "deployment": r.deployment,
                "model": model_label(r),
                "stream": str(r.stream).lower(),
            }.items()
        )
        durations[labels].append(r.duration_ms / 1000)
        if r.first_byte_ms is not None:
            first_bytes[labels].append(r.first_byte_ms / 1000)
    for name, observed in (
        ("cloudgate_request_duration_seconds", durations),
        ("cloudgate_time_to_first_byte_seconds", first_bytes),
    ):
        assert {ls for (n, ls) in samples if n == f"{name}_count"} == set(observed)
        for labels, values in observed.items():
            assert samples[(f"{name}_count", labels)] == len(values)
            assert samples[(f"{name}_sum", labels)] == sum(values, 0.0)
            assert samples[(f"{name}_bucket", labels | {("le", "+Inf")})] == len(values)
    overhead_count = total(samples, "cloudgate_gateway_overhead_seconds_count")
    assert overhead_count == len(upstream)
    assert (
        0
        < total(samples, "cloudgate_gateway_overhead_seconds_sum")
        < sum(r.duration_ms for r in upstream) / 1000
    )

    # Scrape-time state: nothing streaming now, Vertex cooling down after its failure.
    assert value(samples, "cloudgate_open_streams") == 0
    assert value(samples, "cloudgate_cooldowns", deployment=VERTEX) == 1
    assert value(samples, "cloudgate_cooldowns", deployment=BEDROCK) == 0
    assert value(samples, "cloudgate_cooldowns", deployment=ANTHROPIC) == 0
    assert value(samples, "cloudgate_deployment_state", deployment=VERTEX, model=SONNET, state="cooling") == 1
    assert value(samples, "cloudgate_deployment_state", deployment=VERTEX, model=SONNET, state="healthy") == 0
    assert (
        value(samples, "cloudgate_deployment_state", deployment=BEDROCK, model=SONNET, state="healthy") == 1
    )
    assert value(samples, "cloudgate_build_info", version="0.1.0") == 1

    # No key, key id or session id ever becomes a label.
    labels = label_values(samples, "caller") | {v for (_, ls) in samples for _, v in ls}
    assert not any(SESSION in v or v.startswith(("key-", "cg-")) for v in labels)
    assert not label_values(samples, "caller") and not label_values(samples, "session_id")


def test_open_streams_counts_streams_in_progress(make_stack) -> None:
    gw = make_stack()
    gw.emulator.state.faults.add(Fault(kind="slow_first_byte", delay=1.5, stream=True, times=1))
    done: list[int] = []
    thread = threading.Thread(target=lambda: done.append(ask(gw, "slow", stream=True).status_code))
    thread.start()
    deadline = time.monotonic() + 5
    during: Samples = {}
    while time.monotonic() < deadline:
        during = scrape(gw)
        if value(during, "cloudgate_open_streams") == 1:
            break
        time.sleep(0.02)
    thread.join(10)
    assert done == [200]
    assert value(during, "cloudgate_open_streams") == 1
    assert total(during, "cloudgate_deployment_in_flight") == 1
    gw.records(1)
    assert value(scrape(gw), "cloudgate_open_streams") == 0


def test_metrics_can_require_a_gateway_key(make_stack) -> None:
    gw = make_stack(settings={"telemetry": {"metrics_require_key": True}})
    refused = requests.get(gw.url + "/metrics", timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    assert requests.get(gw.url + "/metrics", headers={"x-api-key": "nope"}, timeout=10).status_code == 401
    assert value(scrape(gw, key=gw.key), "cloudgate_build_info", version="0.1.0") == 1
    bearer = requests.get(gw.url + "/metrics", headers={"authorization": f"Bearer {gw.key}"}, timeout=10)
    assert bearer.status_code == 200  # what Prometheus sends with `authorization: {credentials: ...}`


def test_metrics_can_be_switched_off(make_stack) -> None:
    gw = make_stack(settings={"telemetry": {"metrics": False}})
    assert requests.get(gw.url + "/metrics", timeout=10).status_code == 404
    assert gw.gateway.state.metrics is None and ask(gw).status_code == 200


def test_each_gateway_app_counts_its_own_requests(make_stack) -> None:
    busy, idle = make_stack(), make_stack()
    assert ask(busy).status_code == 200
    busy.records(1)
    assert total(scrape(busy), "cloudgate_requests_total") == 1
    assert total(scrape(idle), "cloudgate_requests_total") == 0


def test_openmetrics_when_prometheus_asks_for_it(gw: Stack) -> None:
    resp = requests.get(gw.url + "/metrics", headers={"accept": "application/openmetrics-text"}, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/openmetrics-text")
    assert resp.text.endswith("# EOF\n")
    plain = requests.get(gw.url + "/metrics", timeout=10)
    assert plain.headers["content-type"].startswith("text/plain")
    assert value(parse(plain.text), "cloudgate_open_streams") == 0
