"""Governance through the gateway: store keys, allow-lists, rate limits, budgets, spend."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import requests

from cloudgate.config import Settings, load_settings
from cloudgate.gateway.governor import default_counters
from cloudgate.governance.counters import MemoryCounters, RedisCounters
from cloudgate.governance.sqlite_counters import SQLiteCounters
from cloudgate.governance.types import Limits, Period, Scope, usd_to_micro
from cloudgate.store.repositories import Store
from tests.conftest import Stack
from tests.gateway.wire_clients import send

MSG = {"role": "user", "content": "Hello there"}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _with_store(stack: Stack, fn: Any) -> Any:
    store = Store.open(stack.db_url)
    try:
        return await fn(store)
    finally:
        await store.close()


def new_key(stack: Stack, **kw: Any) -> tuple[str, str]:
    """A fresh store key: (plaintext, key id)."""
    created = run(_with_store(stack, lambda s: s.keys.create("test", **kw)))
    return created.plaintext, created.key.id


def spend_rows(stack: Stack, expected: int, timeout: float = 10.0) -> list[Any]:
    """The spend log's rows once there are `expected` requests in it."""
    since = datetime.now(UTC) - timedelta(hours=1)
    deadline = time.monotonic() + timeout
    while True:
        rows = run(_with_store(stack, lambda s: s.spend.spend_report("key", since)))
        if sum(r.requests for r in rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def ask(stack: Stack, key: str, model: str = "claude-sonnet-4-5", **body: Any) -> requests.Response:
    doc = {"model": model, "max_tokens": 20, "messages": [MSG], **body}
    return requests.post(
        f"{stack.url}/v1/messages", data=orjson.dumps(doc), headers={"x-api-key": key}, timeout=30
    )


def test_store_key_is_accepted_priced_and_logged(gw: Stack) -> None:
    key, key_id = new_key(gw)
    resp = ask(gw, key)
    assert resp.status_code == 200, resp.text
    cost = float(resp.headers["x-cloudgate-cost-usd"])
    usage = resp.json()["usage"]
    # Sonnet 4.5 on us-east5 (regional: +10%): 3 and 15 USD per million tokens.
    expected = (usage["input_tokens"] * 3 + usage["output_tokens"] * 15) * 1.1 / 1_000_000
    assert cost == pytest.approx(expected, abs=1e-6)
    (record,) = gw.records(1)
    assert record.caller == key_id and record.cost_micro == round(cost * 1_000_000)
    (row,) = spend_rows(gw, 1)
    assert (row.group, row.requests) == (key_id, 1)
    assert row.input_tokens == usage["input_tokens"] and row.output_tokens == usage["output_tokens"]
    assert row.cost_micro == record.cost_micro


def test_unknown_revoked_and_expired_keys_are_refused(gw: Stack) -> None:
    assert ask(gw, "cg-not-a-real-key").status_code == 401
    gw.gateway.state.governor.cache_seconds = 0.2  # type: ignore[union-attr]  # production: 5 s
    key, key_id = new_key(gw)
    assert ask(gw, key).status_code == 200
    run(_with_store(gw, lambda s: s.keys.revoke(key_id)))
    time.sleep(0.3)
    refused = ask(gw, key)
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    expired, _ = new_key(gw, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert ask(gw, expired).status_code == 401


def test_model_allow_list(gw: Stack) -> None:
    key, _ = new_key(gw, allowed_models=["claude-haiku-4-5"])
    assert ask(gw, key, model="claude-haiku-4-5-20251001").status_code == 200
    refused = ask(gw, key, model="claude-opus-4-6")
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"


def test_rate_limit_is_a_429_with_anthropic_headers(gw: Stack) -> None:
    key, key_id = new_key(gw)
    run(_with_store(gw, lambda s: s.limits.set(Scope.KEY, key_id, Limits(requests_per_minute=2))))
    assert [ask(gw, key).status_code for _ in range(2)] == [200, 200]
    refused = ask(gw, key)
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_error"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["anthropic-ratelimit-requests-limit"] == "2"
    assert refused.headers["anthropic-ratelimit-requests-remaining"] == "0"
    # The same refusal in the other wire formats.
    vertex = send(
        gw.url, key, "vertex", "claude-sonnet-4-5", {"max_tokens": 5, "messages": [MSG]}, stream=False
    )
    assert vertex.status == 429 and vertex.message["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert vertex.headers["retry-after"]
    bedrock = send(
        gw.url, key, "bedrock", "claude-sonnet-4-5", {"max_tokens": 5, "messages": [MSG]}, stream=False
    )
    assert bedrock.status == 429 and bedrock.headers["x-amzn-errortype"] == "ThrottlingException"


def test_budget_exhausted_in_each_format(gw: Stack) -> None:
    key, key_id = new_key(gw)
    run(_with_store(gw, lambda s: s.budgets.set(Scope.KEY, key_id, Period.MONTHLY, usd_to_micro("0.000001"))))
    anthropic = ask(gw, key)
    assert anthropic.status_code == 402 and anthropic.json()["error"]["type"] == "billing_error"
    assert "budget" in anthropic.json()["error"]["message"]
    vertex = send(
        gw.url, key, "vertex", "claude-sonnet-4-5", {"max_tokens": 5, "messages": [MSG]}, stream=False
    )
    assert vertex.status == 402 and "budget" in vertex.message["error"]["message"]
    bedrock = send(
        gw.url, key, "bedrock", "claude-sonnet-4-5", {"max_tokens": 5, "messages": [MSG]}, stream=False
    )
    assert bedrock.status == 403 and bedrock.headers["x-amzn-errortype"] == "AccessDeniedException"
    assert not gw.upstream_calls


def test_streamed_answers_are_priced_too(gw: Stack) -> None:
    key, _ = new_key(gw)
    answer = send(
        gw.url, key, "anthropic", "claude-haiku-4-5", {"max_tokens": 30, "messages": [MSG]}, stream=True
    )
    assert answer.status == 200
    (record,) = gw.records(1)
    usage = answer.message["usage"]
    expected = (usage["input_tokens"] * 1 + usage["output_tokens"] * 5) * 1.1  # Haiku 4.5, regional
    assert record.cost_micro == round(expected)
    (row,) = spend_rows(gw, 1)
    assert row.cost_micro == record.cost_micro


def test_parallel_requests_cannot_overshoot_the_budget(gw: Stack) -> None:
    gw.gateway.state.governor.cache_seconds = 0.0  # type: ignore[union-attr]  # see budget changes at once
    key, key_id = new_key(gw)
    # Each request: ~1,000 input tokens and 20 output tokens, ~$0.0036 of Sonnet at us-east5.
    text = "lorem ipsum dolor sit amet " * 150
    body = {"messages": [{"role": "user", "content": text}]}
    probe = ask(gw, key, **body)
    one = float(probe.headers["x-cloudgate-cost-usd"])
    budget = usd_to_micro(one * 10)
    run(_with_store(gw, lambda s: s.budgets.set(Scope.KEY, key_id, Period.DAILY, budget)))
    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda _: ask(gw, key, **body).status_code, range(100)))
    assert set(statuses) <= {200, 402} and statuses.count(402) > 0 and statuses.count(200) > 0
    served = statuses.count(200) + 1
    rows = spend_rows(gw, served)
    spent = sum(r.cost_micro for r in rows)
    max_cost = usd_to_micro(
        one * 5
    )  # the reservation covers the input at the 1-hour cache-write rate and more
    assert spent <= budget + usd_to_micro(one) + max_cost


def test_models_the_catalog_does_not_know_are_not_free(gw: Stack) -> None:
    key, _ = new_key(gw)
    resp = ask(gw, key, model="claude-opus-9-9")  # a future Opus: priced as the newest known one
    assert resp.status_code == 200, resp.text
    usage = resp.json()["usage"]
    expected = (
        (usage["input_tokens"] * 5 + usage["output_tokens"] * 25) * 1.1 / 1_000_000
    )  # Opus 4.6, regional
    assert float(resp.headers["x-cloudgate-cost-usd"]) == pytest.approx(expected, abs=1e-6)


def test_admin_api_through_the_gateway(make_stack) -> None:
    admin = "cg-admin-" + "x" * 30
    stack = make_stack(settings={"admin_key": admin})
    bearer = {"authorization": f"Bearer {admin}"}
    team = requests.post(f"{stack.url}/admin/v1/teams", json={"name": "platform"}, headers=bearer, timeout=10)
    assert team.status_code == 201, team.text
    created = requests.post(
        f"{stack.url}/admin/v1/keys",
        json={"name": "ci", "team_id": team.json()["id"]},
        headers=bearer,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert ask(stack, key).status_code == 200
    budget = requests.put(
        f"{stack.url}/admin/v1/budgets",
        json={"scope": "team", "scope_id": team.json()["id"], "period": "monthly", "amount_usd": 0.000001},
        headers=bearer,
        timeout=10,
    )
    assert budget.status_code in (200, 201), budget.text
    # Ordinary keys, and no key, are kept out of the admin API.
    assert (
        requests.get(f"{stack.url}/admin/v1/keys", headers={"x-api-key": key}, timeout=10).status_code == 403
    )
    assert (
        requests.get(f"{stack.url}/admin/v1/keys", headers={"x-api-key": stack.key}, timeout=10).status_code
        == 403
    )
    assert requests.get(f"{stack.url}/admin/v1/keys", timeout=10).status_code == 401
    listed = requests.get(f"{stack.url}/admin/v1/keys", headers=bearer, timeout=10).json()
    assert key not in str(listed)  # the plaintext is shown once, at creation
    assert (
        requests.get(f"{stack.url}/admin/v1/openapi.json", headers=bearer, timeout=10)
        .json()["openapi"]
        .startswith("3.1")
    )


def test_an_abandoned_stream_is_charged_for_what_was_produced(make_stack) -> None:
    from cloudgate.emulator import EmulatorConfig

    stack = make_stack(emulator=EmulatorConfig(stream_delay=0.05))
    key, _ = new_key(stack)
    body = {"model": "claude-haiku-4-5", "max_tokens": 2000, "stream": True,
            "messages": [{"role": "user", "content": "long " * 300}]}  # fmt: skip
    with requests.post(
        f"{stack.url}/v1/messages", json=body, headers={"x-api-key": key}, stream=True, timeout=30
    ) as resp:
        for count, _ in enumerate(resp.iter_content(chunk_size=None), start=1):
            if count == 12:
                break
    (record,) = stack.records(1)
    assert record.status == 499
    assert record.usage.output_tokens >= 5  # the deltas relayed before the client left
    input_only = record.usage.input_tokens * 1.1  # Haiku 4.5 input at $1/M, regional
    assert record.cost_micro > round(input_only)
    (row,) = spend_rows(stack, 1)
    assert row.cost_micro == record.cost_micro


def test_the_worst_case_is_priced_at_the_dearest_deployment(tmp_path) -> None:
    from cloudgate.catalog import default_catalog
    from cloudgate.config.settings import Settings
    from cloudgate.gateway.governor import Governor
    from cloudgate.providers.base import Target

    governor = Governor(Settings(data_dir=str(tmp_path)), default_catalog())
    cheap = Target("vertex", "claude-sonnet-4-5@20250929", "global")
    dear = Target("vertex", "claude-sonnet-4-5@20250929", "us-east5")  # +10% regional premium
    bedrock = Target("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "us-east-1")
    assert governor._dearest([cheap]) == [cheap]
    assert governor._dearest([cheap, dear, bedrock]) == [dear]
    other = Target("vertex", "claude-haiku-4-5@20251001", "global")
    assert governor._dearest([cheap, other]) == [cheap, other], "different models are both priced"


def test_counters_are_shared_by_several_workers(tmp_path) -> None:
    def settings(**extra: object) -> Settings:
        return load_settings(env={}, overrides={"data_dir": str(tmp_path), **extra})

    assert isinstance(default_counters(settings()), MemoryCounters)
    shared = default_counters(settings(gateway={"workers": 2}))
    assert isinstance(shared, SQLiteCounters) and shared.path == tmp_path / "counters.db"
    assert isinstance(
        default_counters(settings(gateway={"workers": 2}, redis_url="redis://h:1/0")), RedisCounters
    )


class _CountedLookups:
    """Counts the governor's store lookups of keys; `fail` makes the next ones raise."""

    def __init__(self, governor: Any) -> None:
        self.calls = 0
        self.fail: Exception | None = None
        self._real = governor.store.keys.principal_for_hash
        governor.store.keys.principal_for_hash = self

    async def __call__(self, key_hash: str) -> Any:
        self.calls += 1
        await asyncio.sleep(0.01)  # a query takes a while: requests pile up behind it
        if self.fail is not None:
            raise self.fail
        return await self._real(key_hash)


async def _governor_with_key(tmp_path: Any) -> tuple[Any, str, str, _CountedLookups]:
    from cloudgate.catalog import default_catalog
    from cloudgate.gateway.governor import Governor

    governor = Governor(Settings(data_dir=str(tmp_path)), default_catalog())
    await governor.start()
    created = await governor.store.keys.create("test")
    return governor, created.plaintext, created.key.id, _CountedLookups(governor)


def test_requests_arriving_together_share_one_key_lookup(tmp_path) -> None:
    async def main() -> None:
        governor, key, key_id, lookups = await _governor_with_key(tmp_path)
        try:
            found = await asyncio.gather(*(governor.principal([key]) for _ in range(20)))
            assert {p.key_id for p in found} == {key_id} and lookups.calls == 1
            # One caller giving up does not cancel the lookup the others wait for.
            governor._cache.clear()
            leaver = asyncio.ensure_future(governor.principal([key]))
            stayer = asyncio.ensure_future(governor.principal([key]))
            await asyncio.sleep(0)
            leaver.cancel()
            assert (await stayer).key_id == key_id and lookups.calls == 2
            # A failed lookup reaches every waiter and is not remembered: the next request asks again.
            governor._cache.clear()
            lookups.fail = RuntimeError("store down")
            failed = await asyncio.gather(
                *(governor.principal([key]) for _ in range(5)), return_exceptions=True
            )
            assert all(isinstance(f, RuntimeError) for f in failed) and lookups.calls == 3
            lookups.fail = None
            assert (await governor.principal([key])).key_id == key_id and lookups.calls == 4
        finally:
            await governor.close()

    run(main())


def test_a_busy_key_is_looked_up_again_before_its_cache_entry_expires(tmp_path) -> None:
    async def main() -> None:
        governor, key, key_id, lookups = await _governor_with_key(tmp_path)
        governor.cache_seconds = 0.5  # refreshed in its last 0.1 s
        try:
            assert (await governor.principal([key])).key_id == key_id and lookups.calls == 1
            await asyncio.sleep(0.3)
            await governor.principal([key])
            assert lookups.calls == 1, "early in its life an entry is just used"
            await asyncio.sleep(0.15)
            started = time.monotonic()
            assert (await governor.principal([key])).key_id == key_id
            assert time.monotonic() - started < 0.01, "the request did not wait for the refresh"
            await asyncio.sleep(0.05)
            assert lookups.calls == 2
            await asyncio.sleep(0.2)  # past the first entry's end: the refreshed one serves
            await governor.principal([key])
            assert lookups.calls == 2
            # Revocation still takes effect within the cache's lifetime.
            await governor.store.keys.revoke(key_id)
            await asyncio.sleep(0.55)
            assert await governor.principal([key]) is None and lookups.calls == 3
        finally:
            await governor.close()

    run(main())


def test_spend_rows_are_written_by_the_configured_batch(make_stack) -> None:
    stack = make_stack(settings={"store": {"spend_flush_interval": 60, "spend_batch_size": 2}})
    key, key_id = new_key(stack)
    assert ask(stack, key).status_code == 200
    assert spend_rows(stack, 1, timeout=1.0) == []  # one waiting: neither the interval nor the batch
    assert ask(stack, key).status_code == 200
    (row,) = spend_rows(stack, 2)  # the second fills the batch: written at once
    assert (row.group, row.requests) == (key_id, 2)


def test_a_writer_process_records_spend_and_activity_and_survives_being_killed(make_stack) -> None:
    # The default of `cloudgate serve` (the test stacks write inline, for speed).
    settings = {
        "store": {"writer": "process", "spend_flush_interval": 0.1},
        "activity": {"flush_interval": 0.1},
    }
    stack = make_stack(settings=settings)
    governor = stack.gateway.state.governor
    assert governor is not None and governor.offload is not None
    key, key_id = new_key(stack)
    assert [ask(stack, key).status_code for _ in range(3)] == [200, 200, 200]
    (row,) = spend_rows(stack, 3)
    assert (row.group, row.requests) == (key_id, 3)
    first = governor.offload.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)  # its replacement takes the next batches; nothing is lost
    assert [ask(stack, key).status_code for _ in range(2)] == [200, 200]
    (row,) = spend_rows(stack, 5)
    assert row.requests == 5 and governor.offload.pid not in (None, first)
    logged = run(_with_store(stack, lambda s: s.activity.count()))
    deadline = time.monotonic() + 10
    while logged < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
        logged = run(_with_store(stack, lambda s: s.activity.count()))
    assert logged == 5
