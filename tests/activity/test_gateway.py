"""The activity log behind a real gateway: one entry per request, bodies when asked, and no secret kept.

The gateway is the one `make_stack` serves (emulator upstream, store keys), with its own activity
log configured through the settings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from cloudgate.activity import ActivityEntry, ActivityFilter, ActivityLog
from cloudgate.activity.files import activity_files
from cloudgate.store import Store
from tests.conftest import ANTHROPIC_API_KEY, BEDROCK_API_KEY, GATEWAY_KEY, Stack
from tests.gateway.wire_clients import send

# Real-looking secrets a user might paste into a prompt; the emulator says the prompt back.
PASTED = {
    "anthropic": "sk-ant-api03-" + "Qm2Lp9Xy7Rt4" * 7 + "AA",
    "google": "ya29.a0AfB_byD8kLmN3pQrS5tUvW7xYz9AbCdEfGh",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2,
}


def on_gateway(stack: Stack, coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` on the gateway's event loop (where the log and its store connections live)."""
    loop = stack.gateway_server.loop
    assert loop is not None
    return asyncio.run_coroutine_threadsafe(coro, loop).result(30)


def read_store(stack: Stack, read: Callable[[Store], Coroutine[Any, Any, Any]]) -> Any:
    async def go() -> Any:
        store = Store.open(stack.db_url)
        try:
            return await read(store)
        finally:
            await store.close()

    return asyncio.run(go())


@pytest.fixture
def logged(make_stack: Callable[..., Stack], tmp_path: Path) -> Iterator[tuple[Stack, ActivityLog]]:
    """A gateway whose requests go to an activity log writing both to the store and to files."""
    activity = {"sink": "both", "directory": str(tmp_path / "activity"), "flush_interval": 0.05}
    stack = make_stack(settings={"admin_key": "cg-admin-" + "k" * 32, "activity": activity})
    log = stack.gateway.state.activity
    assert log is not None
    yield stack, log


def entries(stack: Stack, log: ActivityLog, count: int) -> list[ActivityEntry]:
    """The store's entries, oldest first, once `count` requests have been logged."""
    deadline = time.monotonic() + 10
    while len(stack.sink.records) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert on_gateway(stack, log.flush())
    found = read_store(stack, lambda s: _all(s))
    assert len(found) == count, [e.request_id for e in found]
    return found


async def _all(store: Store) -> list[ActivityEntry]:
    return [e async for e in store.activity.export(ActivityFilter())]


def store_key(stack: Stack, **kw: Any) -> tuple[str, str]:
    created = read_store(stack, lambda s: s.keys.create("k", **kw))
    return created.plaintext, created.key.id


def test_requests_are_logged_with_who_what_and_bodies_when_the_key_asks(
    logged: tuple[Stack, ActivityLog],
) -> None:
    stack, log = logged
    team = read_store(stack, lambda s: s.teams.create("platform"))
    loud, loud_id = store_key(stack, team_id=team.id, log_bodies=True)
    quiet, _ = store_key(stack)
    body = {"max_tokens": 30, "messages": [{"role": "user", "content": "Say hello"}]}
    assert send(stack.url, loud, "anthropic", "claude-sonnet-4-5", body, stream=False).status == 200
    assert send(stack.url, loud, "anthropic", "claude-sonnet-4-5", body, stream=True).status == 200
    assert send(stack.url, loud, "bedrock", "claude-sonnet-4-5", body, stream=True).status == 200
    assert send(stack.url, quiet, "vertex", "claude-sonnet-4-5", body, stream=True).status == 200
    whole, sse, bedrock, vertex = entries(stack, log, 4)

    assert (whole.key_id, whole.team_id, whole.status, whole.frontdoor) == (
        loud_id,
        team.id,
        200,
        "anthropic",
    )
    assert whole.output_tokens > 0 and whole.cost_micro and whole.client_ip == "127.0.0.1"
    assert whole.request_headers["anthropic-version"] == "2023-06-01"
    assert orjson.loads(whole.request_body or "")["messages"] == body["messages"]
    assert orjson.loads(whole.response_body or "")["content"][0]["text"].startswith("Hello from")
    assert sse.stream and (sse.response_body or "").startswith("event: message_start")
    assert "event: message_stop" in (sse.response_body or "")
    # The Bedrock caller got an AWS event stream: kept as the JSON of its events.
    kinds = [orjson.loads(line)["type"] for line in (bedrock.response_body or "").splitlines()]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    # The quiet key's request is logged without bodies.
    assert (vertex.request_body, vertex.response_body, vertex.frontdoor) == (None, None, "vertex")
    assert not any(e.bodies_truncated for e in (whole, sse, bedrock, vertex))
    # The files hold the same entries.
    lines = [
        orjson.loads(line)
        for p in activity_files(Path(log.files.directory))
        for line in p.read_bytes().splitlines()
    ]
    assert sorted(line["request_id"] for line in lines) == sorted(
        e.request_id for e in (whole, sse, bedrock, vertex)
    )


def test_long_answers_are_cut_and_marked(make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    activity = {"sink": "files", "directory": str(tmp_path / "a"), "log_bodies": True, "max_body_bytes": 300}
    stack = make_stack(settings={"activity": activity})
    log = stack.gateway.state.activity
    assert log is not None
    body = {"max_tokens": 200, "messages": [{"role": "user", "content": "word " * 100}]}
    assert send(stack.url, GATEWAY_KEY, "anthropic", "claude-haiku-4-5", body, stream=True).status == 200
    stack.records(1)
    on_gateway(stack, log.aclose())
    (line,) = [
        orjson.loads(raw) for p in activity_files(tmp_path / "a") for raw in p.read_bytes().splitlines()
    ]
    assert line["bodies_truncated"] is True
    assert len(line["response_body"].encode()) <= 300 and len(line["request_body"].encode()) <= 300


def test_no_key_token_or_credential_reaches_a_row_or_a_file(logged: tuple[Stack, ActivityLog]) -> None:
    stack, log = logged
    settings = stack.gateway.state.settings
    loud, _ = store_key(stack, log_bodies=True)
    prompt = "Keep these safe: " + " ".join(
        [*PASTED.values(), loud, GATEWAY_KEY, ANTHROPIC_API_KEY, BEDROCK_API_KEY, "cg-admin-" + "k" * 32]
    )
    body = {"max_tokens": 150, "messages": [{"role": "user", "content": prompt}]}
    for door in ("anthropic", "vertex", "bedrock"):
        for stream in (False, True):
            assert send(stack.url, loud, door, "claude-sonnet-4-5", body, stream=stream).status == 200
    # Configured keys and refused keys are presented too.
    assert send(stack.url, GATEWAY_KEY, "anthropic", "claude-sonnet-4-5", body, stream=False).status == 200
    refused = "cg-" + "Z" * 40
    assert send(stack.url, refused, "anthropic", "claude-sonnet-4-5", body, stream=False).status == 401
    resp = requests.post(
        f"{stack.url}/v1/messages",
        json={"model": "claude-sonnet-4-5", **body},
        headers={
            "authorization": f"Bearer {loud}",
            "cookie": f"session={loud}",
            "x-goog-api-key": "AIzaSyA-secret-value",
        },
        timeout=30,
    )
    assert resp.status_code == 200
    logged_entries = entries(stack, log, 9)

    # Everything secret the gateway saw or used: presented keys, upstream credentials, tokens.
    forbidden = {
        *PASTED.values(),
        loud,
        GATEWAY_KEY,
        ANTHROPIC_API_KEY,
        BEDROCK_API_KEY,
        refused,
        "AIzaSyA-secret-value",
    }
    forbidden |= {t for t in stack.emulator.state.tokens._tokens}  # the Vertex access tokens used upstream
    forbidden |= {settings.admin_key or ""}
    for call in stack.upstream_calls:
        forbidden |= {v for k, v in call.headers.items() if k.lower() in ("authorization", "x-api-key")}
    forbidden.discard("")
    rows = [orjson.dumps(e).decode() for e in logged_entries]
    lines = [
        raw.decode() for p in activity_files(Path(log.files.directory)) for raw in p.read_bytes().splitlines()
    ]
    assert len(lines) == len(rows) == 9
    # The test is only worth something if the secrets were there to leak: bodies were kept and
    # the answers said the prompt back.
    kept = [e for e in logged_entries if e.status == 200]
    assert all(e.request_body and e.response_body for e in kept[:-2])
    assert all("[REDACTED]" in (e.response_body or "") for e in kept[:-2])
    for text in rows + lines:
        for secret in forbidden:
            # Whole, or in the halves JSON escaping and event framing cannot hide.
            assert secret not in text, secret
            assert orjson.dumps(secret).decode()[1:-1] not in text, secret
        # Nor a telling part of one: the emulator's echo cuts the prompt mid-secret.
        for secret in [*PASTED.values(), loud]:
            assert secret[:20] not in text, secret
