"""Outage-shaped faults: random hits for soak tests, and connections dropped without an answer."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import botocore.exceptions
import pytest
import requests

from cloudgate.emulator import EmulatorConfig, Fault, FaultSet

from .conftest import MODEL, PROJECT, REGION, TOKEN, Emulator, aws_client, bedrock_body, vertex_client

API_KEY = "sk-ant-outages"
BEDROCK_KEY = "bedrock-outages"
AWS_KEY, AWS_SECRET = "AKIDOUTAGES", "outages-secret"
PROFILE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
HI: Any = [{"role": "user", "content": "hi there"}]


def _config(**kw: Any) -> EmulatorConfig:
    return EmulatorConfig(
        static_tokens=[TOKEN],
        anthropic_api_keys=[API_KEY],
        bedrock_api_keys=[BEDROCK_KEY],
        aws_credentials={AWS_KEY: AWS_SECRET},
        **kw,
    )


def _take(faults: FaultSet, location: str | None = "us-east5") -> list[Fault]:
    return faults.take(path="/p", model=MODEL, location=location, stream=False, platform="vertex")


# ---------------------------------------------------------------------------------------------
# probability and fault_seed


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, math.nan, True, "half"])
def test_probability_must_be_in_range(bad: Any) -> None:
    with pytest.raises(ValueError, match="probability"):
        Fault("rate_limit", probability=bad)
    with pytest.raises(ValueError, match="probability"):
        Fault.from_dict({"kind": "rate_limit", "probability": bad})


def test_probability_one_always_hits() -> None:
    faults = FaultSet([Fault("rate_limit", probability=1)])
    assert all(_take(faults) for _ in range(50))


def test_probability_hits_about_that_often_and_a_seed_replays_them() -> None:
    def pattern(seed: int) -> list[bool]:
        faults = FaultSet([Fault("server_error", probability=0.3)], seed=seed)
        return [bool(_take(faults)) for _ in range(2000)]

    first = pattern(11)
    assert 480 <= sum(first) <= 720  # 600 expected; far outside 5 standard deviations otherwise
    assert pattern(11) == first
    assert pattern(12) != first


def test_times_counts_real_hits_only() -> None:
    fault = Fault("rate_limit", probability=0.5, times=5)
    faults = FaultSet([fault], seed=3)
    outcomes = [bool(_take(faults)) for _ in range(200)]
    assert sum(outcomes) == 5 and fault.hits == 5 and fault.exhausted
    last_hit = max(i for i, hit in enumerate(outcomes) if hit)
    assert last_hit > 4  # the misses before it did not use up `times`


def test_draws_are_safe_across_threads() -> None:
    fault = Fault("rate_limit", probability=0.5, times=300)
    faults = FaultSet([fault], seed=5)
    counts: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        got = sum(bool(_take(faults)) for _ in range(400))
        with lock:
            counts.append(got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == fault.hits == 300


def test_seeded_emulators_fail_the_same_requests(make_emulator: Callable[..., Emulator]) -> None:
    def outcomes() -> list[int]:
        _, srv = make_emulator(
            _config(fault_seed=2024, faults=[Fault("overloaded", probability=0.4, platform="vertex")])
        )
        client = vertex_client(srv)
        statuses = []
        for _ in range(30):
            try:
                client.messages.create(model=MODEL, max_tokens=5, messages=HI)
                statuses.append(200)
            except anthropic.APIStatusError as exc:
                statuses.append(exc.status_code)
        return statuses

    first = outcomes()
    assert set(first) == {200, 529}
    assert outcomes() == first


def test_probability_and_seed_from_yaml_and_the_admin_api(
    tmp_path: Path, make_emulator: Callable[..., Emulator]
) -> None:
    path = tmp_path / "emulator.yaml"
    path.write_text(
        "fault_seed: 9\nfaults:\n  - {kind: drop_connection, probability: 0.25, location: us-east5}\n"
    )
    config = EmulatorConfig.from_file(path)
    assert config.fault_seed == 9
    assert config.faults == [Fault("drop_connection", probability=0.25, location="us-east5")]
    with pytest.raises(ValueError, match="fault_seed"):
        EmulatorConfig.from_dict({"fault_seed": "nine"})
    _, srv = make_emulator()
    admin = f"{srv.url}/_emulator/faults"
    added = requests.post(admin, json={"kind": "drop_connection", "probability": 0.5}, timeout=5)
    assert added.status_code == 200
    assert added.json() == [
        {**Fault("drop_connection").to_dict(), "probability": 0.5},
    ]
    refused = requests.post(admin, json={"kind": "rate_limit", "probability": 2}, timeout=5)
    assert refused.status_code == 400 and "probability" in refused.json()["error"]["message"]


# ---------------------------------------------------------------------------------------------
# drop_connection


def _vertex_call(srv: Any, stream: bool) -> tuple[str, dict[str, str], dict[str, Any]]:
    method = "streamRawPredict" if stream else "rawPredict"
    url = f"{srv.url}/v1/projects/{PROJECT}/locations/{REGION}/publishers/anthropic/models/{MODEL}:{method}"
    body = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 20, "messages": HI, "stream": stream}
    return url, {"authorization": f"Bearer {TOKEN}"}, body


def _bedrock_call(srv: Any, stream: bool) -> tuple[str, dict[str, str], dict[str, Any]]:
    op = "invoke-with-response-stream" if stream else "invoke"
    headers = {"authorization": f"Bearer {BEDROCK_KEY}"}
    return f"{srv.url}/model/{PROFILE}/{op}", headers, bedrock_body(max_tokens=20)


def _anthropic_call(srv: Any, stream: bool) -> tuple[str, dict[str, str], dict[str, Any]]:
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
    return (
        f"{srv.url}/v1/messages",
        headers,
        {"model": "claude-sonnet-4-6", "max_tokens": 20, "messages": HI, "stream": stream},
    )


CALLS = {"vertex": _vertex_call, "bedrock": _bedrock_call, "anthropic": _anthropic_call}


async def _post_twice(url: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[BaseException, int]:
    """The first call's error and the second call's status, each on a fresh aiohttp session."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(url, json=body, headers=headers) as resp:
                await resp.read()
                raise AssertionError(f"got an answer: {resp.status}")
        except aiohttp.ClientError as exc:
            error: BaseException = exc
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers) as resp:
        await resp.read()
        return error, resp.status


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("platform", sorted(CALLS))
def test_drop_connection_answers_nothing(
    make_emulator: Callable[..., Emulator], platform: str, stream: bool
) -> None:
    app, srv = make_emulator(_config())
    app.state.faults.add(Fault("drop_connection", platform=platform, times=1))
    url, headers, body = CALLS[platform](srv, stream)
    error, status = asyncio.run(_post_twice(url, headers, body))
    # The client saw the connection close before a single byte of response: not an HTTP error.
    assert isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError), repr(error)
    assert status == 200  # the emulator itself is fine: times=1 is used up
    assert app.state.abandoned_streams == 0
    assert [f.hits for f in app.state.faults.active()] == [1]


def test_drop_connection_through_the_sdks(make_emulator: Callable[..., Emulator]) -> None:
    app, srv = make_emulator(_config())
    app.state.faults.add(Fault("drop_connection"))
    with pytest.raises(anthropic.APIConnectionError):
        vertex_client(srv).messages.create(model=MODEL, max_tokens=5, messages=HI)
    with pytest.raises(anthropic.APIConnectionError):
        anthropic.Anthropic(api_key=API_KEY, base_url=srv.url, max_retries=0).messages.create(
            model="claude-sonnet-4-6", max_tokens=5, messages=HI
        )
    runtime = aws_client(srv, region="us-east-1", key=AWS_KEY, secret=AWS_SECRET)
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        runtime.invoke_model(modelId=PROFILE, body=json.dumps(bedrock_body()))


def test_drop_connection_after_a_delay_looks_like_a_hung_upstream(
    make_emulator: Callable[..., Emulator],
) -> None:
    app, srv = make_emulator(_config())
    app.state.faults.add(Fault("drop_connection", delay=0.3, times=1))
    started = time.monotonic()
    error, _ = asyncio.run(_post_twice(*_vertex_call(srv, False)))
    assert time.monotonic() - started >= 0.3
    assert isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)


# ---------------------------------------------------------------------------------------------
# location matching per platform


def test_location_bound_faults_never_hit_the_anthropic_api(make_emulator: Callable[..., Emulator]) -> None:
    app, srv = make_emulator(_config())
    # The Anthropic API has no region, "global" included: only location-free faults reach it.
    app.state.faults.add(Fault("rate_limit", location="global"), Fault("rate_limit", location=REGION))
    client = anthropic.Anthropic(api_key=API_KEY, base_url=srv.url, max_retries=0)
    assert client.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=HI).content
    with pytest.raises(anthropic.RateLimitError):
        vertex_client(srv).messages.create(model=MODEL, max_tokens=5, messages=HI)
    app.state.faults.add(Fault("rate_limit", platform="anthropic"))
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=HI)
    assert [f.hits for f in app.state.faults.active()] == [0, 1, 1]


def test_fault_location_matches_vertex_url_location() -> None:
    faults = FaultSet([Fault("not_found", location="europe-west1")])
    assert _take(faults, "us-east5") == [] and _take(faults, None) == []
    assert [f.kind for f in _take(faults, "europe-west1")] == ["not_found"]
