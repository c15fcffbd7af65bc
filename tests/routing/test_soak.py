"""A bounded soak: random faults on every deployment, parallel callers on every door.

Every client request must end in a success or a well-formed error in its own format, the
gateway must stay up, and the spend log must account for every upstream request: each one the
emulator saw belongs to a logged request whose attempt count matches. Runs for
CLOUDGATE_SOAK_SECONDS (default 40).
"""

from __future__ import annotations

import collections
import os
import random
import sqlite3
import threading
import time
from typing import Any

import requests
from tests.conftest import Stack
from tests.gateway.wire_clients import Answer, send

from cloudgate.emulator import EmulatorConfig, Fault

SECONDS = float(os.environ.get("CLOUDGATE_SOAK_SECONDS", "40"))
WORKERS = 6
MODEL = "claude-sonnet-4-5-20250929"
DOORS = ("anthropic", "vertex", "bedrock")

FAULTS = [
    Fault(kind="rate_limit", location="global", probability=0.3),
    Fault(kind="server_error", status=503, location="us-east5", probability=0.15),
    Fault(kind="overloaded", platform="bedrock", probability=0.2),
    Fault(kind="drop_connection", platform="anthropic", probability=0.1),
    Fault(kind="slow_first_byte", delay=0.05, probability=0.1),
    Fault(kind="cut_stream", after_events=4, stream=True, probability=0.05),
]


def _well_formed(door: str, stream: bool, answer: Answer) -> str:
    """'ok', 'error' or a description of what is wrong with the answer."""
    if answer.status == 200:
        if stream and answer.events and answer.events[-1].get("type") == "error":
            return "error"  # cut mid-stream: an in-band error, as the clouds report it
        if answer.message.get("type") == "message" and answer.message.get("stop_reason"):
            return "ok"
        return f"200 without a complete message: {answer.message!r:.200}"
    body = answer.message
    if door == "bedrock":
        ok = bool(answer.headers.get("x-amzn-errortype")) and isinstance(body, dict) and "message" in body
    elif door == "vertex":
        doc = body[0] if isinstance(body, list) and body else body
        ok = isinstance(doc, dict) and ("error" in doc)
    else:
        ok = isinstance(body, dict) and body.get("type") == "error" and "type" in body.get("error", {})
    return "error" if ok else f"malformed {answer.status}: {body!r:.200}"


def test_soak_with_random_faults(make_stack) -> None:
    gw: Stack = make_stack(
        emulator=EmulatorConfig(fault_seed=7, stream_delay=0.002),
        settings={
            "routing": {
                "deployments": [
                    {"provider": "vertex", "region": "global"},
                    {"provider": "vertex", "region": "us-east5"},
                    {"provider": "bedrock", "region": "us-east-1", "priority": 1},
                    {"provider": "anthropic", "priority": 2},
                ],
                "cooldown_seconds": 0.5,
                "cooldown_max": 2,
                "backoff_initial": 0.05,
                "max_retry_wait": 1,
            }
        },
    )
    gw.emulator.state.faults.add(FAULTS)
    outcomes: collections.Counter[str] = collections.Counter()
    problems: list[str] = []
    request_ids: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        n = 0
        while time.monotonic() < deadline:
            door, stream = rng.choice(DOORS), rng.random() < 0.5
            body = {"max_tokens": 30, "messages": [{"role": "user", "content": f"soak {seed}-{n}"}]}
            n += 1
            try:
                answer = send(gw.url, gw.key, door, MODEL, body, stream=stream)
            except requests.RequestException as exc:
                with lock:
                    problems.append(f"{door} stream={stream}: transport failure {exc}")
                continue
            verdict = _well_formed(door, stream, answer)
            with lock:
                request_ids.append(answer.headers.get("x-cloudgate-request-id", ""))
                if verdict in ("ok", "error"):
                    outcomes[verdict] += 1
                else:
                    problems.append(f"{door} stream={stream}: {verdict}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 60)
    assert not problems, problems[:5]
    total = outcomes["ok"] + outcomes["error"]
    assert total >= 50 and outcomes["ok"] / total > 0.9, outcomes
    assert requests.get(gw.url + "/health", timeout=5).status_code == 200
    assert all(request_ids), "every answer names its request"

    upstream: collections.Counter[str] = collections.Counter()
    for r in gw.upstream_calls:
        rid = r.headers.get("x-cloudgate-request-id")
        assert rid, f"an upstream request without the gateway's request id: {r.path}"
        upstream[rid] += 1
    spend = _spend(gw, set(request_ids))
    missing = set(request_ids) - set(spend)
    assert not missing, f"{len(missing)} client requests missing from the spend log"
    for rid, count in upstream.items():
        assert rid in spend, f"upstream request of {rid} not in the spend log"
        assert spend[rid]["attempts"] == count, (rid, spend[rid], count)
    assert sum(s["attempts"] for s in spend.values()) == sum(upstream.values())


def _spend(gw: Stack, wanted: set[str], timeout: float = 15.0) -> dict[str, dict[str, Any]]:
    """The spend log's rows by request id, once every wanted request is in it."""
    path = gw.db_url.split(":///", 1)[1]
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT request_id, attempts, deployment, status FROM spend").fetchall()
        found = {r[0]: {"attempts": r[1], "deployment": r[2], "status": r[3]} for r in rows}
        if wanted <= set(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
