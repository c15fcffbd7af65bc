"""Failover across regions and providers, end to end: emulator faults, the gateway's answers."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
import requests
from tests.conftest import Stack
from tests.gateway.test_app import post, sse_events

from cloudgate.emulator import EmulatorConfig, Fault

SONNET = "claude-sonnet-4-5-20250929"
_LOCATION = re.compile(r"/locations/([^/]+)/")


GLOBAL_THEN_REGION = [
    {"provider": "vertex", "region": "global"},
    {"provider": "vertex", "region": "us-east5"},
]


def routed(deployments: list[dict[str, Any]], **routing: Any) -> dict[str, Any]:
    """Gateway settings with these deployments and routing options."""
    return {"routing": {"deployments": deployments, **routing}}


def where(stack: Stack) -> list[str]:
    """Where each upstream Messages call went: a Vertex location, `bedrock` or `anthropic`."""
    out = []
    for r in stack.upstream_calls:
        match = _LOCATION.search(r.path)
        if match:
            out.append(match.group(1))
        elif r.path.startswith("/model/"):
            out.append("bedrock")
        elif r.path.startswith("/v1/messages"):
            out.append("anthropic")
    return out


def ask(
    stack: Stack, text: str = "Hello", *, stream: bool = False, model: str = SONNET, **headers: str
) -> requests.Response:
    body: dict[str, Any] = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    return post(stack, "/v1/messages", body, **headers)


def deployments(stack: Stack) -> dict[str, Any]:
    resp = requests.get(stack.url + "/health/deployments", headers={"x-api-key": stack.key}, timeout=10)
    assert resp.status_code == 200
    return resp.json()


def test_a_429_storm_on_global_moves_traffic_to_regions_and_back_once_it_clears(make_stack) -> None:
    gw = make_stack(
        settings={
            "routing": {
                "deployments": [
                    {"provider": "vertex", "region": "global"},
                    {"provider": "vertex", "region": "us-east5"},
                    {"provider": "vertex", "region": "europe-west1"},
                ],
                "cooldown_failures": 2,
                "cooldown_seconds": 1.0,
                "affinity": False,
            }
        }
    )
    storm = Fault(kind="rate_limit", location="global")
    gw.emulator.state.faults.add(storm)
    for i in range(10):
        resp = ask(gw, f"storm {i}")
        assert resp.status_code == 200, resp.text
    places = where(gw)
    # The first requests still try global (cheapest) and fail over; then global cools down.
    assert places.count("global") == 2
    served = [r.region for r in gw.records(10)]
    assert "global" not in served and set(served) <= {"us-east5", "europe-west1"}
    view = deployments(gw)
    state = {e["deployment"]: e["state"] for d in view["deployments"] for e in d["health"]}
    assert state["vertex/global"] == "cooling" and view["status"] == "degraded"

    gw.emulator.state.faults.clear()
    time.sleep(1.1)
    for i in range(5):
        assert ask(gw, f"calm {i}").status_code == 200
    assert [r.region for r in gw.records(15)[10:]] == ["global"] * 5, "back on global once it recovers"
    records = gw.records(15)
    assert any(len(r.attempts) == 2 and r.attempts[0]["status"] == 429 for r in records[:10])


def test_a_model_missing_in_one_region_is_served_from_another(make_stack) -> None:
    haiku = "claude-3-5-haiku-20241022"  # Vertex offers it at us-east5 only
    gw = make_stack(
        emulator=EmulatorConfig(strict_models=True),
        settings={
            "routing": {
                "deployments": [
                    {"provider": "vertex", "region": "europe-west1", "models": [haiku]},
                    {"provider": "vertex", "region": "us-east5", "priority": 1},
                ]
            }
        },
    )
    for _ in range(3):
        resp = ask(gw, model=haiku)
        assert resp.status_code == 200, resp.text
    assert where(gw) == ["europe-west1", "us-east5", "us-east5", "us-east5"], "404 once, then skipped"
    view = deployments(gw)
    states = {(e["deployment"], e["model"]): e["state"] for d in view["deployments"] for e in d["health"]}
    assert states[("vertex/europe-west1", haiku)] == "not-offered"


def test_a_provider_outage_fails_over_to_another_provider(make_stack) -> None:
    gw = make_stack(
        settings={
            "routing": {
                "deployments": [
                    {"provider": "vertex", "region": "us-east5"},
                    {"provider": "bedrock", "region": "us-east-1", "priority": 1},
                    {"provider": "anthropic", "priority": 2},
                ]
            }
        }
    )
    gw.emulator.state.faults.add(Fault(kind="server_error", status=503, platform="vertex"))
    gw.emulator.state.faults.add(Fault(kind="overloaded", platform="bedrock", times=1))
    resp = ask(gw, "outage", stream=True)
    assert resp.status_code == 200
    names = [name for name, _ in sse_events(resp)]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert where(gw) == ["us-east5", "bedrock", "anthropic"]
    record = gw.records(1)[0]
    assert (record.provider, record.deployment, record.status) == ("anthropic", "anthropic", 200)
    assert [a["status"] for a in record.attempts] == [503, 503, 200]  # Bedrock says 503 for overloaded
    # The next request skips nothing yet (one failure each) but is served by Bedrock now.
    assert ask(gw, "again").status_code == 200
    assert gw.records(2)[1].provider == "bedrock"


def test_errors_no_deployment_can_fix_come_back_at_once(make_stack) -> None:
    gw = make_stack(
        settings={
            "routing": {"deployments": [{"provider": "vertex", "region": "global"}, {"provider": "bedrock"}]}
        }
    )
    # The gateway passes an unknown role on; the upstream refuses it with a 400 no other
    # deployment would answer differently.
    resp = post(
        gw,
        "/v1/messages",
        {"model": SONNET, "max_tokens": 5, "messages": [{"role": "bogus", "content": "x"}]},
    )
    assert resp.status_code == 400
    assert len(gw.upstream_calls) == 1 and resp.json()["error"]["type"] == "invalid_request_error"
    assert [a["status"] for a in gw.records(1)[0].attempts] == [400]


def test_all_deployments_failing_gives_the_caller_the_most_useful_error(make_stack) -> None:
    gw = make_stack(settings=routed(GLOBAL_THEN_REGION, max_retry_wait=0))
    gw.emulator.state.faults.add(Fault(kind="rate_limit", location="global"))
    gw.emulator.state.faults.add(Fault(kind="server_error", location="us-east5"))
    resp = ask(gw)
    assert resp.status_code == 429
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert len(gw.records(1)[0].attempts) == 2
    assert resp.headers["x-cloudgate-request-id"] == gw.records(1)[0].request_id


def test_a_stream_cut_midway_ends_with_an_error_event_and_is_recorded(make_stack) -> None:
    gw = make_stack(settings=routed(GLOBAL_THEN_REGION))
    gw.emulator.state.faults.add(Fault(kind="cut_stream", after_events=3, times=1))
    resp = ask(gw, "cut", stream=True)
    assert resp.status_code == 200
    events = sse_events(resp)
    assert events[0][0] == "message_start"
    assert events[-1][0] == "error" and events[-1][1]["type"] == "error"
    assert len(gw.upstream_calls) == 1, "no silent retry once bytes were sent"
    record = gw.records(1)[0]
    assert record.status == 502 and record.error_type == "api_error"
    assert record.attempts == [{"deployment": record.deployment, "status": 502, "error": "api_error"}]


def test_an_error_at_the_head_of_a_stream_fails_over(make_stack) -> None:
    gw = make_stack(settings=routed(GLOBAL_THEN_REGION))
    gw.emulator.state.faults.add(Fault(kind="cut_stream", after_events=0, times=1, stream=True))
    resp = ask(gw, "head", stream=True)
    names = [name for name, _ in sse_events(resp)]
    assert resp.status_code == 200 and names[-1] == "message_stop"
    assert len(gw.upstream_calls) == 2


def test_first_byte_timeouts_per_deployment_fail_over(make_stack) -> None:
    gw = make_stack(
        settings={
            "routing": {
                "deployments": [
                    {"provider": "vertex", "region": "global", "timeouts": {"first_byte": 0.3}},
                    {"provider": "vertex", "region": "us-east5", "priority": 1},
                ]
            }
        }
    )
    gw.emulator.state.faults.add(Fault(kind="slow_first_byte", delay=2.0, location="global"))
    started = time.monotonic()
    resp = ask(gw)
    assert resp.status_code == 200 and time.monotonic() - started < 1.8
    assert [a["status"] for a in gw.records(1)[0].attempts] == [504, 200]


def test_health_view_needs_a_key_and_lists_deployments(make_stack) -> None:
    gw = make_stack(
        settings={"routing": {"deployments": [{"name": "main", "provider": "vertex", "region": "global"}]}}
    )
    assert requests.get(gw.url + "/health/deployments", timeout=10).status_code == 401
    ask(gw)
    view = deployments(gw)
    (main,) = view["deployments"]
    assert main["name"] == "main" and main["place"] == "global"
    assert main["health"][0]["successes"] == 1 and main["health"][0]["state"] == "healthy"
    assert orjson.loads(orjson.dumps(view)) == view
