"""An EU-restricted key never produces an upstream request outside the EU, failover included."""

from __future__ import annotations

import re

import requests
from tests.gateway.test_app import post

from cloudgate.emulator import EmulatorConfig, Fault

ADMIN = "cg-admin-key-for-residency-tests"
SONNET = "claude-sonnet-4-5-20250929"
_LOCATION = re.compile(r"/locations/([^/]+)/")
_BEDROCK_MODEL = re.compile(r"^/model/([^/]+)/")

DEPLOYMENTS = [
    {"provider": "vertex", "region": "global"},  # cheapest: first for everyone else
    {"provider": "vertex", "region": "us-east5"},
    {"provider": "vertex", "region": "europe-west1"},
    {"provider": "vertex", "region": "eu"},
    {"provider": "bedrock", "region": "eu-west-1", "priority": 1},  # the eu. profile
    {"provider": "bedrock", "region": "eu-west-1", "inference_profile": "global", "priority": 1},
    {"provider": "bedrock", "region": "us-east-1", "priority": 1},
    {"provider": "anthropic", "priority": 2},
]


def _key(stack, **fields: object) -> str:
    resp = requests.post(
        stack.url + "/admin/v1/keys", json={"name": "k", **fields}, headers={"x-api-key": ADMIN}, timeout=10
    )
    assert resp.status_code in (200, 201), resp.text
    return str(resp.json()["key"])


def _places(stack) -> list[str]:
    out = []
    for r in stack.upstream_calls:
        if m := _LOCATION.search(r.path):
            out.append(m.group(1))
        elif m := _BEDROCK_MODEL.match(r.path):
            out.append("bedrock:" + m.group(1).split(".")[0])
        else:
            out.append("anthropic")
    return out


def test_an_eu_key_stays_in_the_eu_through_every_failure(make_stack) -> None:
    # Bedrock API-key requests carry no signature naming their region: the emulator plays eu-west-1.
    gw = make_stack(
        emulator=EmulatorConfig(aws_region="eu-west-1"),
        settings={"admin_key": ADMIN, "routing": {"deployments": DEPLOYMENTS, "cooldown_seconds": 0.2}},
    )
    eu_key = _key(gw, allowed_regions=["eu"])
    faults = gw.emulator.state.faults
    # Every EU place fails in turn, so failover is pushed as far as it can go.
    faults.add(Fault(kind="rate_limit", location="europe-west1", times=6))
    faults.add(Fault(kind="server_error", location="eu", times=4))
    faults.add(Fault(kind="overloaded", platform="bedrock", times=3))
    statuses = []
    for i in range(12):
        body = {"model": SONNET, "max_tokens": 20, "messages": [{"role": "user", "content": f"eu {i}"}]}
        statuses.append(post(gw, "/v1/messages", body, key=eu_key).status_code)
    assert statuses.count(200) >= 8, [(r.status, r.attempts) for r in gw.sink.records]
    assert all(s in (200, 429, 503, 529, 500) for s in statuses)
    places = _places(gw)
    assert places and set(places) <= {"europe-west1", "eu", "bedrock:eu"}, places
    assert {"europe-west1", "eu", "bedrock:eu"} <= set(places), "failover did reach every EU place"

    # The same load with an unrestricted key goes to global first.
    before = len(places)
    body = {"model": SONNET, "max_tokens": 20, "messages": [{"role": "user", "content": "anywhere"}]}
    assert post(gw, "/v1/messages", body).status_code == 200
    assert _places(gw)[before] == "global"


def test_a_key_whose_regions_nobody_serves_is_refused_without_an_upstream_call(make_stack) -> None:
    gw = make_stack(settings={"admin_key": ADMIN, "routing": {"deployments": DEPLOYMENTS}})
    apac = _key(gw, allowed_regions=["apac"])
    body = {"model": SONNET, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    resp = post(gw, "/v1/messages", body, key=apac)
    assert resp.status_code == 403
    assert resp.json()["error"]["type"] == "permission_error" and "apac" in resp.json()["error"]["message"]
    assert gw.upstream_calls == []


def test_team_regions_and_provider_preference_apply_to_their_keys(make_stack) -> None:
    gw = make_stack(
        emulator=EmulatorConfig(aws_region="eu-west-1"),
        settings={"admin_key": ADMIN, "routing": {"deployments": DEPLOYMENTS}},
    )
    resp = requests.post(
        gw.url + "/admin/v1/teams",
        json={"name": "eu-team", "allowed_regions": ["eu"], "preferred_providers": ["bedrock"]},
        headers={"x-api-key": ADMIN},
        timeout=10,
    )
    assert resp.status_code in (200, 201), resp.text
    key = _key(gw, team_id=resp.json()["id"])
    body = {"model": SONNET, "max_tokens": 20, "messages": [{"role": "user", "content": "team"}]}
    assert post(gw, "/v1/messages", body, key=key).status_code == 200
    assert _places(gw) == ["bedrock:eu"]
