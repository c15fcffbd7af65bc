"""`cloudgate logs list|show|session|export` in-process on a real SQLite store (and PostgreSQL)."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from cloudgate.activity.entry import ActivityEntry
from cloudgate.activity.export import COLUMNS, from_csv, from_jsonl
from cloudgate.cli import logs
from cloudgate.cli.main import main
from cloudgate.gateway.frontdoors.admin_views import assistant_text, last_user_text, log_view
from cloudgate.store import Store, upgrade
from tests.activity.test_export import AWKWARD, full_entry, sparse_entry
from tests.gateway.test_shared_budget import postgres_database  # noqa: F401 - a fixture


def now() -> datetime:
    """The time, to the second, taken when a test runs (relative filters are relative to it)."""
    return datetime.now(UTC).replace(microsecond=0)


SESSION = "6f1c2a0e-claude-code-session"


def sse(*events: dict[str, object]) -> str:
    """A Messages stream as the API sends it."""
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


def text_stream(*pieces: str, tool: str | None = None) -> list[dict[str, object]]:
    """The events of an answer made of `pieces` of text, then a tool use when `tool` is given."""
    events: list[dict[str, object]] = [
        {"type": "message_start", "message": {"id": "msg_1", "role": "assistant", "content": []}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
            for p in pieces
        ),
        {"type": "content_block_stop", "index": 0},
    ]
    if tool:
        events += [
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "name": tool, "input": {}},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"command": "pytest"}'},
            },
            {"type": "content_block_stop", "index": 1},
        ]
    return [
        *events,
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
        {"type": "message_stop"},
    ]


def request_body(*messages: dict[str, object]) -> str:
    return json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": list(messages)})


def session_entries(at: datetime) -> list[ActivityEntry]:
    """A Claude Code session of five requests ending 6 minutes before `at`: SSE, JSON, a Bedrock
    stream, a failure without bodies, and bodies cut short."""
    base = dict(
        session_id=SESSION, key_id="key_ada", user_id="user_ada", team_id="team_p", model="claude-sonnet-4-5"
    )
    first_user = {"role": "user", "content": [{"type": "text", "text": "Fix the failing test, please"}]}
    second_user = {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "1 failed"}]},
            {"type": "text", "text": "Now make it pass"},
        ],
    }
    return [
        ActivityEntry(
            "req_s1", at - timedelta(minutes=10), at - timedelta(minutes=10) + timedelta(seconds=3),
            **base, deployment="vertex/global", status=200, stream=True, input_tokens=1000, output_tokens=50,
            cost_micro=3_750, request_body=request_body(first_user),
            response_body=sse(*text_stream("I'll look ", "at the test.", tool="Bash")),
        ),
        ActivityEntry(
            "req_s2", at - timedelta(minutes=9), **base, deployment="anthropic", status=200,
            input_tokens=1200, output_tokens=20, cache_read_tokens=900, cost_micro=1_000,
            request_body=request_body(first_user, {"role": "assistant", "content": "ok"}, second_user),
            response_body=json.dumps(
                {"type": "message", "role": "assistant", "content": [{"type": "text", "text": "All 12 tests pass."}]}
            ),
        ),
        ActivityEntry(
            "req_s3", at - timedelta(minutes=8), **base, deployment="bedrock/eu", status=200, stream=True,
            input_tokens=10, output_tokens=5, cost_micro=100,
            request_body=request_body({"role": "user", "content": "And on Bedrock?"}),
            # How the activity log keeps a Bedrock event stream: each event's JSON on a line.
            response_body="\n".join(json.dumps(e) for e in text_stream("Same ", "there."))
        ),
        ActivityEntry(
            "req_s4", at - timedelta(minutes=7), **base, deployment="vertex/global", status=529,
            error_type="overloaded_error", error_message="Overloaded",
        ),
        ActivityEntry(
            "req_s5", at - timedelta(minutes=6), **base, deployment="vertex/global", status=200, stream=True,
            input_tokens=5, output_tokens=1, cost_micro=None, bodies_truncated=True,
            request_body=request_body(first_user)[:40],
            # Cut in the middle of the second text delta.
            response_body=(cut := sse(*text_stream("Cut sh", "ort")))[: cut.index('"ort"') + 3],
        ),
    ]  # fmt: skip


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated SQLite store, with no settings file or environment to get in the way."""
    monkeypatch.chdir(tmp_path)
    for name in ("CLOUDGATE_CONFIG", "CLOUDGATE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDGATE_DATA_DIR", str(tmp_path / "data"))
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    asyncio.run(upgrade(url))
    return url


def seed(url: str, entries: list[ActivityEntry]) -> None:
    async def go() -> None:
        store = Store.open(url)
        try:
            await store.activity.write(entries)
        finally:
            await store.close()

    asyncio.run(go())


def stored(url: str, request_ids: list[str]) -> list[ActivityEntry | None]:
    async def go() -> list[ActivityEntry | None]:
        store = Store.open(url)
        try:
            return [await store.activity.get(r) for r in request_ids]
        finally:
            await store.close()

    return asyncio.run(go())


def run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> str:
    assert main([*argv, "--url", url]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.out


def fails(url: str, *argv: str) -> str:
    with pytest.raises(SystemExit) as raised:
        main([*argv, "--url", url])
    message = str(raised.value.code)
    assert message.startswith("cloudgate: "), message
    return message


def traffic(at: datetime) -> list[ActivityEntry]:
    """Ten requests a minute apart back from `at`, newest first by index: two keys, models, outcomes."""
    return [
        full_entry(
            f"req_{i:02d}",
            at - timedelta(minutes=i),
            key_id="key_a" if i % 2 else "key_b",
            model="claude-opus-4-1" if i % 3 == 0 else "claude-sonnet-4-5",
            status=529 if i == 4 else 200,
            error_type="overloaded_error" if i == 4 else None,
            session_id=None,
        )
        for i in range(10)
    ]


def test_listed_in_the_main_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "    logs " in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["logs", "--help"])
    out = capsys.readouterr().out
    assert all(action in out for action in ("list", "show", "session", "export"))


# -- list --------------------------------------------------------------------------------------------


def test_list_newest_first_with_filters_and_formats(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    t = now()
    seed(db, traffic(t))
    out = run(capsys, db, "logs", "list")
    lines = out.splitlines()
    assert lines[0].split() == [
        "TIME", "REQUEST", "ID", "KEY", "MODEL", "DEPLOYMENT", "STATUS", "TOKENS", "IN", "TOKENS", "OUT",
        "COST", "USD", "LATENCY", "MS",
    ]  # fmt: skip
    assert [line.split()[2] for line in lines[2:]] == [f"req_{i:02d}" for i in range(10)]
    # Times to the second, the cost in dollars, the latency in whole milliseconds.
    first = lines[2].split()
    assert first[:2] == t.strftime("%Y-%m-%d %H:%M:%S").split()
    assert first[-2:] == ["4.567891", "2346"]

    rows = json.loads(run(capsys, db, "logs", "list", "--key", "key_a", "--format", "json"))
    assert [r["request_id"] for r in rows] == ["req_01", "req_03", "req_05", "req_07", "req_09"]
    assert (
        "request_body" not in rows[0] and rows[0]["bodies_kept"] is True and rows[0]["cost_usd"] == 4.567891
    )

    errors = json.loads(run(capsys, db, "logs", "list", "--errors", "-f", "json"))
    assert [r["request_id"] for r in errors] == ["req_04"]
    assert [
        r["request_id"] for r in json.loads(run(capsys, db, "logs", "list", "--status", "529", "-f", "json"))
    ] == ["req_04"]
    opus = json.loads(
        run(capsys, db, "logs", "list", "--model", "claude-opus-4-1", "--since", "7m", "-f", "json")
    )
    assert [r["request_id"] for r in opus] == ["req_00", "req_03", "req_06"]
    window = json.loads(
        run(
            capsys,
            db,
            "logs",
            "list",
            "--since",
            (t - timedelta(minutes=5)).isoformat(),
            "--until",
            "2m",
            "-f",
            "json",
        )
    )
    assert [r["request_id"] for r in window] == ["req_02", "req_03", "req_04", "req_05"]
    for flag, value in (("--user", "user_ada"), ("--team", "team_platform"), ("--provider", "vertex"),
                        ("--deployment", "vertex/europe-west1")):  # fmt: skip
        assert len(json.loads(run(capsys, db, "logs", "list", flag, value, "-f", "json"))) == 10
    assert run(capsys, db, "logs", "list", "--user", "nobody") == "(none)\n"

    table = list(csv.DictReader(io.StringIO(run(capsys, db, "logs", "list", "--limit", "3", "-f", "csv"))))
    assert [r["request_id"] for r in table] == ["req_00", "req_01", "req_02"]
    assert table[0]["started_at"] == t.isoformat() and table[0]["cost_usd"] == "4.567891"


def test_list_limit_reads_page_by_page(
    db: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(db, traffic(now()))
    monkeypatch.setattr(logs, "PAGE", 3)
    rows = json.loads(run(capsys, db, "logs", "list", "--limit", "8", "-f", "json"))
    assert [r["request_id"] for r in rows] == [f"req_{i:02d}" for i in range(8)]
    rows = json.loads(run(capsys, db, "logs", "list", "--limit", "50", "-f", "json"))
    assert len(rows) == 10


def test_list_refuses_bad_input(db: str) -> None:
    assert "--since: 'yesterday' is neither a duration" in fails(db, "logs", "list", "--since", "yesterday")
    assert "--until: must be later than --since" in fails(
        db, "logs", "list", "--since", "1h", "--until", "2h"
    )
    assert "--status: 'ok' is not an HTTP status" in fails(db, "logs", "list", "--status", "ok")
    assert "--limit must be at least 1" in fails(db, "logs", "list", "--limit", "0")


# -- show --------------------------------------------------------------------------------------------


def test_show_tells_everything_bodies_included(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    t = now()
    entry = full_entry(
        "req_show", t, request_body=json.dumps({"messages": [{"role": "user", "content": AWKWARD}]})
    )
    seed(db, [entry])
    out = run(capsys, db, "logs", "show", "req_show")
    for expected in ("request id", "req_show", "vertex/europe-west1", "overloaded_error", "4.567891",
                     "context-1m-2025-08-07, interleaved-thinking-2025-05-14", "x-api-key: [REDACTED]",
                     "request body:", "response body:", "event: message_start", "cut at activity.max_body_bytes"):  # fmt: skip
        assert expected in out, expected
    # The attempts, as a table, and the request body indented for reading.
    assert "vertex/global" in out and "529" in out
    assert '  "messages": [' in out and json.dumps(AWKWARD)[1:-1][:20] in out

    assert json.loads(run(capsys, db, "logs", "show", "req_show", "--format", "json")) == json.loads(
        orjson.dumps(log_view(stored(db, ["req_show"])[0]))  # type: ignore[arg-type]
    )


def test_show_without_bodies_says_how_to_keep_them(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    t = now()
    seed(db, [sparse_entry("req_plain", t)])
    out = run(capsys, db, "logs", "show", "req_plain")
    assert "bodies: not kept" in out and "--log-bodies" in out and "request body:" not in out


def test_show_unknown_request_exits_1(db: str) -> None:
    assert (
        fails(db, "logs", "show", "req_missing") == "cloudgate: no request 'req_missing' in the activity log"
    )


# -- session -----------------------------------------------------------------------------------------


def test_conversation_text_from_kept_bodies() -> None:
    s1, s2, s3, s4, s5 = session_entries(now())
    assert last_user_text(s1.request_body) == "Fix the failing test, please"
    assert assistant_text(s1.response_body) == "I'll look at the test.\n[tool use: Bash]"
    assert last_user_text(s2.request_body) == "[tool result] 1 failed\nNow make it pass"
    assert assistant_text(s2.response_body) == "All 12 tests pass."
    assert (last_user_text(s3.request_body), assistant_text(s3.response_body)) == (
        "And on Bedrock?",
        "Same there.",
    )
    assert (last_user_text(s4.request_body), assistant_text(s4.response_body)) == (None, None)
    # Cut short: the request is no longer JSON; the stream gives what it has.
    assert last_user_text(s5.request_body) is None and assistant_text(s5.response_body) == "Cut sh"
    error = json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert assistant_text(error) is None and assistant_text("not a body") is None


def test_session_reads_as_a_conversation(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    t = now()
    seed(db, [*session_entries(t), full_entry("req_other", t, session_id="another")])
    out = run(capsys, db, "logs", "session", SESSION)
    assert out.startswith(f"Session {SESSION}: 5 requests, ")
    turns = out.split("\n#")[1:]
    assert [t.split()[0] for t in turns] == ["1", "2", "3", "4", "5"]
    assert "vertex/global" in turns[0] and "in 1,000 / out 50 tokens" in turns[0] and "$0.00375" in turns[0]
    assert "user:      Fix the failing test, please" in turns[0]
    assert "assistant: I'll look at the test." in turns[0] and "[tool use: Bash]" in turns[0]
    assert "Now make it pass" in turns[1] and "All 12 tests pass." in turns[1]
    assert "Same there." in turns[2]
    assert "529 overloaded_error" in turns[3] and "user:" not in turns[3]
    assert "Total: 5 requests (1 failed), in 2,215 / out 76 tokens, cache read 900" in out
    assert out.endswith("cost $0.00485\n")

    doc = json.loads(run(capsys, db, "logs", "session", SESSION, "--format", "json"))
    assert doc["session_id"] == SESSION and [t["request_id"] for t in doc["turns"]] == [
        f"req_s{i}" for i in range(1, 6)
    ]
    assert doc["turns"][1]["user_text"] == "[tool result] 1 failed\nNow make it pass"
    assert doc["turns"][0]["assistant_text"] == "I'll look at the test.\n[tool use: Bash]"
    assert doc["turns"][3]["user_text"] is None and "request_body" not in doc["turns"][0]
    assert doc["total"] == {
        "requests": 5, "errors": 1, "input_tokens": 2215, "output_tokens": 76, "cache_write_5m_tokens": 0,
        "cache_write_1h_tokens": 0, "cache_read_tokens": 900, "cost_usd": 0.00485,
    }  # fmt: skip
    assert doc["started_at"] == (t - timedelta(minutes=10)).isoformat()


def test_session_long_messages_are_cut_unless_full(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    long_text = "\n".join(f"line {n}" for n in range(40))
    entry = dataclasses.replace(
        session_entries(now())[1],
        response_body=json.dumps({"type": "message", "content": [{"type": "text", "text": long_text}]}),
    )
    seed(db, [entry])
    out = run(capsys, db, "logs", "session", SESSION)
    assert "line 5" in out and "line 6\n" not in out and "--full shows all" in out
    assert "line 39" in run(capsys, db, "logs", "session", SESSION, "--full")


def test_unknown_session_exits_1(db: str) -> None:
    assert fails(db, "logs", "session", "nope") == "cloudgate: no session 'nope' in the activity log"


# -- export ------------------------------------------------------------------------------------------


def export_round_trip(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = now()
    """Export in both formats to files and to stdout; what is re-read equals what is stored."""
    written = [
        full_entry("req_e1", t - timedelta(hours=3)),
        sparse_entry("req_e2", t - timedelta(hours=2)),
        full_entry("req_e3", t - timedelta(hours=1), response_body=AWKWARD * 10_000, key_id="key_z"),
        full_entry("req_old", t - timedelta(days=30)),
    ]
    seed(url, written)
    expected = stored(url, ["req_e1", "req_e2", "req_e3"])
    assert expected == written[:3]
    for fmt, read in (("jsonl", from_jsonl), ("csv", from_csv)):
        target = tmp_path / f"out.{fmt}"
        assert (
            main(["logs", "export", "--since", "1d", "--format", fmt, "--output", str(target), "--url", url])
            == 0
        )
        assert f"Exported 3 requests to {target}." in capsys.readouterr().err
        with target.open(encoding="utf-8", newline="") as f:
            assert list(read(f)) == expected, fmt
        streamed = run(capsys, url, "logs", "export", "--since", "1d", "--format", fmt)
        assert list(read(io.StringIO(streamed, newline=""))) == expected, fmt
    only = run(capsys, url, "logs", "export", "--since", "1d", "--key", "key_z", "--until", "30m")
    assert [e.request_id for e in from_jsonl(only.split("\n"))] == ["req_e3"]
    assert run(capsys, url, "logs", "export", "--since", "1m", "-f", "csv") == ",".join(COLUMNS) + "\n"


def test_export_round_trips_on_sqlite(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export_round_trip(db, tmp_path, capsys)


def test_export_round_trips_on_postgresql(
    postgres_database: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("CLOUDGATE_CONFIG", "CLOUDGATE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    asyncio.run(upgrade(postgres_database))
    export_round_trip(postgres_database, tmp_path, capsys)


def test_export_streams_many_pages_in_order(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    t = now()
    start = t - timedelta(hours=1)
    seed(db, [sparse_entry(f"req_{i:05d}", start + timedelta(milliseconds=i)) for i in range(2500)])
    out = run(capsys, db, "logs", "export", "--since", "2h")
    assert [e.request_id for e in from_jsonl(out.splitlines())] == [f"req_{i:05d}" for i in range(2500)]


def test_export_needs_since_and_a_known_format(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["logs", "export", "--url", db])
    assert raised.value.code == 2 and "--since" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["logs", "export", "--since", "1d", "--format", "xml", "--url", db])
    assert "--since: 'last week' is neither" in fails(db, "logs", "export", "--since", "last week")
