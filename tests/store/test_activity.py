"""The activity repository on SQLite and PostgreSQL: upserts, filters, keyset pages, exports, deletes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from cloudgate.activity import ActivityEntry, ActivityFilter
from cloudgate.activity.entry import ENTRY_FIELDS
from cloudgate.store import Store

T0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def entry(request_id: str, at: datetime = T0, **fields: Any) -> ActivityEntry:
    """A plain successful request at `at`."""
    values: dict[str, Any] = {
        "key_id": "key_a",
        "frontdoor": "anthropic",
        "operation": "messages",
        "model": "claude-sonnet-4-5",
        "provider": "vertex",
        "deployment": "vertex/us-east5",
        "status": 200,
        "input_tokens": 10,
        "output_tokens": 5,
        "finished_at": at + timedelta(seconds=1),
        "latency_ms": 1000.0,
    }
    values.update(fields)
    return ActivityEntry(request_id, at, **values)


async def test_write_reads_back_every_field(store: Store) -> None:
    full = entry(
        "req_full",
        user_id="user_ada",
        team_id="team_p",
        session_id="sess-1",
        region="us-east5",
        project="proj",
        upstream_model="claude-sonnet-4-5@20250929",
        stream=True,
        error_type=None,
        stop_reason="end_turn",
        cache_write_5m_tokens=1,
        cache_write_1h_tokens=2,
        cache_read_tokens=3,
        cost_micro=4_567,
        first_token_ms=12.5,
        attempts=[
            {"deployment": "vertex/global", "status": 429, "error": "rate_limit_error"},
            {"deployment": "vertex/us-east5", "status": 200, "error": None},
        ],
        betas=["interleaved-thinking-2025-05-14"],
        client_ip="10.1.2.3",
        user_agent="claude-cli/2.0.1 (external, cli)",
        request_headers={"anthropic-version": "2023-06-01", "x-api-key": "[REDACTED]"},
        request_body='{"messages": [{"role": "user", "content": "héllo 日本 🚀"}]}',
        response_body="event: message_start\ndata: {}\n\n",
        bodies_truncated=True,
    )
    await store.activity.write([full])
    assert await store.activity.get("req_full") == full
    assert await store.activity.get("req_missing") is None


async def test_write_upserts_by_request_id_within_and_across_batches(store: Store) -> None:
    await store.activity.write([entry("req_1", status=0), entry("req_1", status=502)])
    assert (await store.activity.get("req_1")).status == 502  # type: ignore[union-attr]
    await store.activity.write([entry("req_1", status=200, output_tokens=9)])
    got = await store.activity.get("req_1")
    assert got is not None and (got.status, got.output_tokens) == (200, 9)
    assert await store.activity.count() == 1
    await store.activity.write([])


async def test_values_the_columns_cannot_hold_are_cut_not_refused(store: Store) -> None:
    odd = entry(
        "req_odd",
        user_agent="x" * 2000,
        model="m" * 500,
        error_message="nul\x00byte",
        request_body="a\x00b",
        request_headers={"user-agent": "n\x00ul"},
    )
    await store.activity.write([odd])
    got = await store.activity.get("req_odd")
    assert got is not None
    assert got.user_agent == "x" * 512 and got.model == "m" * 200
    assert got.error_message == "nul\ufffdbyte" and got.request_body == "a\ufffdb"
    assert got.request_headers == {"user-agent": "n\ufffdul"}


async def test_a_backslash_before_u0000_is_text_not_a_nul(store: Store) -> None:
    # Encoded as JSON this holds the six characters \u0000 after an escaped backslash: not a NUL.
    literal = entry("req_lit", request_headers={"x-odd": "\\u0000", "x-nul": "\x00"}, betas=["b\\u0000"])
    await store.activity.write([literal])
    got = await store.activity.get("req_lit")
    assert got is not None
    assert got.request_headers == {"x-odd": "\\u0000", "x-nul": "\ufffd"}
    assert got.betas == ["b\\u0000"]


async def test_filters(store: Store) -> None:
    await store.activity.write(
        [
            entry("req_a", T0, key_id="key_a", user_id="u1", team_id="t1", session_id="s1"),
            entry("req_b", T0 + timedelta(minutes=1), key_id="key_b", model="claude-haiku-4-5"),
            entry("req_c", T0 + timedelta(minutes=2), status=429, error_type="rate_limit_error"),
            entry("req_d", T0 + timedelta(minutes=3), provider="bedrock", deployment="bedrock/us-east-1"),
            entry("req_e", T0 + timedelta(minutes=4), status=200, error_type="overloaded_error"),
        ]
    )

    async def ids(**kw: Any) -> list[str]:
        listed = [e.request_id for e in await store.activity.list(ActivityFilter(**kw))]
        assert await store.activity.count(ActivityFilter(**kw)) == len(listed)
        return listed

    assert await ids() == ["req_e", "req_d", "req_c", "req_b", "req_a"]
    assert await ids(key_id="key_b") == ["req_b"]
    assert await ids(user_id="u1") == await ids(team_id="t1") == await ids(session_id="s1") == ["req_a"]
    assert await ids(model="claude-haiku-4-5") == ["req_b"]
    assert await ids(status=429) == ["req_c"]
    assert await ids(provider="bedrock") == await ids(deployment="bedrock/us-east-1") == ["req_d"]
    # A stream that broke after its 200 counts as an error too.
    assert await ids(errors_only=True) == ["req_e", "req_c"]
    assert await ids(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)) == ["req_c", "req_b"]
    assert await ids(key_id="key_a", errors_only=True, since=T0 + timedelta(minutes=3)) == ["req_e"]
    assert await store.activity.count() == 5


async def test_list_pages_by_keyset_even_within_one_instant(store: Store) -> None:
    # Ten requests in the same microsecond and ten spread out: pages must neither skip nor repeat.
    same = [entry(f"req_same_{i:02d}", T0) for i in range(10)]
    spread = [entry(f"req_t_{i:02d}", T0 + timedelta(seconds=i + 1)) for i in range(10)]
    await store.activity.write(same + spread)
    seen: list[str] = []
    before: tuple[datetime, str] | None = None
    while True:
        page = await store.activity.list(ActivityFilter(), limit=3, before=before)
        if not page:
            break
        assert len(page) <= 3
        seen.extend(e.request_id for e in page)
        before = (page[-1].started_at, page[-1].request_id)
    expected = [e.request_id for e in sorted(same + spread, key=lambda e: (e.started_at, e.request_id))]
    assert seen == expected[::-1]


async def test_session_is_oldest_first(store: Store) -> None:
    await store.activity.write(
        [entry(f"req_{i}", T0 - timedelta(minutes=i), session_id="sess-x") for i in range(4)]
        + [entry("req_other", T0, session_id="sess-y")]
    )
    assert [e.request_id for e in await store.activity.session("sess-x")] == [
        "req_3",
        "req_2",
        "req_1",
        "req_0",
    ]
    assert await store.activity.session("sess-none") == []


async def test_export_reads_in_pages_oldest_first(store: Store) -> None:
    entries = [entry(f"req_{i:03d}", T0 + timedelta(seconds=i // 3)) for i in range(25)]
    await store.activity.write(entries[::-1])
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        exported = [e async for e in store.activity.export(ActivityFilter(), page=10)]
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", seen)
    assert exported == sorted(entries, key=lambda e: (e.started_at, e.request_id))
    assert len(statements) == 3  # 10 + 10 + 5: never everything at once
    since = T0 + timedelta(seconds=5)
    later = [e.request_id async for e in store.activity.export(ActivityFilter(since=since), page=4)]
    assert later == [e.request_id for e in exported if e.started_at >= since]


async def test_delete_before_is_bounded_and_takes_the_oldest(store: Store) -> None:
    old = [entry(f"req_old_{i}", T0 - timedelta(days=40, minutes=i)) for i in range(7)]
    new = [entry(f"req_new_{i}", T0 - timedelta(days=1, minutes=i)) for i in range(3)]
    await store.activity.write(old + new)
    cutoff = T0 - timedelta(days=30)
    assert await store.activity.delete_before(cutoff, batch=3) == 3
    # The oldest went first.
    remaining_old = await store.activity.list(ActivityFilter(until=cutoff))
    assert {e.request_id for e in remaining_old} == {f"req_old_{i}" for i in range(4)}
    assert await store.activity.delete_before(cutoff, batch=3) == 3
    assert await store.activity.delete_before(cutoff, batch=3) == 1
    assert await store.activity.delete_before(cutoff, batch=3) == 0
    assert sorted(e.request_id for e in await store.activity.list(ActivityFilter())) == sorted(
        e.request_id for e in new
    )


async def test_entries_keep_their_types(store: Store) -> None:
    bare = ActivityEntry("req_bare", T0)
    await store.activity.write([bare])
    got = await store.activity.get("req_bare")
    assert got == bare
    assert got is not None and got.started_at.tzinfo is not None
    assert dataclasses.asdict(got)["attempts"] == []


async def test_a_batch_larger_than_one_statement(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudgate.store import common

    monkeypatch.setattr(common, "_SQLITE_VARIABLES", 5 * len(ENTRY_FIELDS))  # four rows a statement
    batch = [entry(f"req_{i:03d}", T0 + timedelta(seconds=i), output_tokens=i) for i in range(23)]
    batch.append(entry("req_004", T0, output_tokens=99))  # a repeat: the last one wins
    await store.activity.write(batch)
    assert await store.activity.count() == 23
    got = await store.activity.get("req_004")
    assert got is not None and got.output_tokens == 99
    again = await store.activity.get("req_022")
    assert again is not None and again.output_tokens == 22
