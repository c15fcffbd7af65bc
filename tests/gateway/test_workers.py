"""`cloudgate serve --workers 2` as a real process group against the emulator: requests, a budget
shared by the workers, /metrics for the whole server, a killed worker replaced, a clean SIGTERM,
and every journal (a single-process run's and each worker's) replayed after kill -9."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
import requests
from sqlalchemy import text

from cloudgate.emulator import EmulatorConfig, create_emulator_app
from cloudgate.governance.types import Period, Scope
from cloudgate.store.migrate import upgrade
from cloudgate.store.repositories import Store
from cloudgate.util.server import BackgroundServer, free_port, serving
from tests.cli.helpers import wait_until_up
from tests.gateway.test_crash import KEY
from tests.gateway.test_crash import _load as stream_load  # streams until told to stop

PROMPT = "lorem ipsum dolor sit amet " * 150
TIMEOUT = 60.0  # generous: a loaded 2-core machine runs the suite


def _poll(check: Callable[[], object], what: str, timeout: float = TIMEOUT) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class Server:
    """One `cloudgate serve` process group (the parent and its workers)."""

    def __init__(self, config: Path, *args: str) -> None:
        self.config = config
        self.port = int(re.search(r"port: (\d+)", config.read_text()).group(1))  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{self.port}"
        self.err = config.parent / f"serve-{time.monotonic_ns()}.log"
        with self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cloudgate.cli.main", "serve", "--config", str(config), *args],
                env={"PATH": os.environ["PATH"], "HOME": str(config.parent)},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
                start_new_session=True,  # its own process group: kill -9 takes the workers too
            )

    def log(self) -> str:
        return self.err.read_text()

    def wait_up(self, workers: int = 2) -> None:
        wait_until_up(f"{self.url}/health", self.proc, timeout=TIMEOUT)
        _poll(lambda: len(self.pids()) == workers, f"{workers} workers in /metrics")

    def pids(self) -> set[int]:
        """The live workers' pids, from the per-worker build_info samples of /metrics."""
        try:
            body = requests.get(f"{self.url}/metrics", timeout=5).text
        except requests.RequestException:
            return set()
        return {int(p) for p in re.findall(r'cloudgate_build_info\{pid="(\d+)"', body)}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise

    def kill_group(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(TIMEOUT)
        # The workers are gone too once nobody in the group answers.
        _poll(lambda: not _group_alive(self.proc.pid), "the process group to die")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def upstream() -> Iterator[BackgroundServer]:
    emulator = create_emulator_app(EmulatorConfig(static_tokens=["tok"], stream_delay=0.02))
    with serving(emulator) as srv:
        yield srv


def _config(tmp_path: Path, upstream: BackgroundServer, extra: str = "") -> Path:
    config = tmp_path / "cloudgate.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        f"gateway:\n  port: {free_port()}\n  keys: [{KEY}]\n  log_requests: false\n"
        f"vertex:\n  project_id: p\n  base_url: {upstream.url}/v1\n  access_token: tok\n" + extra
    )
    return config


def _db(tmp_path: Path) -> str:
    (tmp_path / "data").mkdir(exist_ok=True)
    return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'cloudgate.db'}"


async def _key_with_budget(db_url: str, micro: int) -> tuple[str, str]:
    await upgrade(db_url)
    store = Store.open(db_url)
    try:
        created = await store.keys.create("shared")
        await store.budgets.set(Scope.KEY, created.key.id, Period.DAILY, micro)
        return created.plaintext, created.key.id
    finally:
        await store.close()


async def _spend_rows(db_url: str) -> dict[str, tuple[str, bool, int]]:
    """request id -> (key id, interrupted, cost) of every spend row."""
    store = Store.open(db_url)
    try:
        async with store.engine.connect() as conn:
            rows = await conn.execute(text("SELECT request_id, key_id, interrupted, cost_micro FROM spend"))
            return {r[0]: (r[1], bool(r[2]), int(r[3])) for r in rows}
    finally:
        await store.close()


def _journal_begins(directory: Path) -> set[str]:
    """Request ids with a `begin` line in the journal segments of `directory`."""
    ids: set[str] = set()
    for segment in directory.glob("spend-*.jsonl"):
        for line in segment.read_bytes().splitlines():
            if line.startswith(b'{"op":"begin"'):
                with_values = orjson.loads(line)
                ids.add(with_values["v"][0])
    return ids


def _message(url: str, key: str, stream: bool = False, timeout: float = 30) -> requests.Response:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 20,
        "stream": stream,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    return requests.post(f"{url}/v1/messages", json=body, headers={"x-api-key": key}, timeout=timeout)


def test_two_workers_share_a_budget_and_report_as_one(tmp_path: Path, upstream: BackgroundServer) -> None:
    # One such request costs about 3,400 micro-dollars and reserves about 12,000: room for a few.
    budget = 40_000
    key, key_id = asyncio.run(_key_with_budget(_db(tmp_path), budget))
    server = Server(_config(tmp_path, upstream), "--workers", "2")
    statuses: list[int] = []
    try:
        server.wait_up()
        journals = [tmp_path / "data" / "journal" / f"worker-{i}" for i in (0, 1)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            # Fresh connections, many at once, until each worker has served some (its journal
            # has begin lines): the kernel hands a connection to whichever worker accepts first.
            deadline = time.monotonic() + TIMEOUT
            while not all(_journal_begins(j) for j in journals):
                assert time.monotonic() < deadline, "one worker served every request"
                statuses += [r.status_code for r in pool.map(lambda _: _message(server.url, KEY), range(16))]
            assert set(statuses) == {200}, statuses
            # The budgeted key, through both workers at once: neither may spend the budget again.
            budgeted = [r.status_code for r in pool.map(lambda _: _message(server.url, key), range(48))]
        assert set(budgeted) == {200, 402}, budgeted
        statuses += budgeted
        metrics = requests.get(f"{server.url}/metrics", timeout=5).text
        pattern = r'cloudgate_requests_total\{[^}]*operation="messages"[^}]*\} (\S+)'
        # Both workers' requests, whichever of them answered the scrape.
        assert sum(float(v) for v in re.findall(pattern, metrics)) == len(statuses)
    finally:
        code = server.stop()
    assert code == 0, server.log()
    assert "Traceback" not in server.log()
    spend = asyncio.run(_spend_rows(_db(tmp_path)))
    assert len(spend) == statuses.count(200)  # every worker's entries reached the store
    assert sum(cost for owner, _, cost in spend.values() if owner == key_id) <= budget


def test_a_killed_worker_is_replaced(tmp_path: Path, upstream: BackgroundServer) -> None:
    server = Server(_config(tmp_path, upstream), "--workers", "2")
    try:
        server.wait_up()
        before = server.pids()
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        after = _poll(lambda: (p := server.pids()) and len(p) == 2 and victim not in p and p, "a new worker")
        assert isinstance(after, set) and len(after & before) == 1
        assert _message(server.url, KEY).status_code == 200
    finally:
        code = server.stop()
    assert code == 0
    assert f"(pid {victim}) was killed by SIGKILL" in server.log()
    assert not _group_alive(server.proc.pid)


def _crash_under_load(server: Server, journals: list[Path]) -> set[str]:
    """Stream into `server` until every journal in `journals` has begun requests, then kill -9
    the whole group; the request ids the journals hold."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=stream_load, args=(f"{server.url}/v1/messages", stop)) for _ in range(8)
    ]
    for t in threads:
        t.start()
    try:
        _poll(lambda: all(_journal_begins(j) for j in journals), "requests in every journal")
        time.sleep(0.2)  # some finished, some in flight
        server.kill_group()
    finally:
        stop.set()
        for t in threads:
            t.join()
    begun = set().union(*(_journal_begins(j) for j in journals))
    assert begun
    return begun


def test_every_journal_is_replayed_after_kill_9(tmp_path: Path, upstream: BackgroundServer) -> None:
    config = _config(tmp_path, upstream)
    journal = tmp_path / "data" / "journal"
    # A single-process run leaves a plain journal/ behind.
    single = Server(config)
    single.wait_up(workers=0)
    left_single = _crash_under_load(single, [journal])
    # Two workers take over that data directory: the parent replays journal/ before forking.
    first = Server(config, "--workers", "2")
    first.wait_up()
    assert left_single <= set(asyncio.run(_spend_rows(_db(tmp_path))))
    left_workers = _crash_under_load(first, [journal / "worker-0", journal / "worker-1"])
    # And again: both workers' journals are replayed.
    second = Server(config, "--workers", "2")
    second.wait_up()
    spend = asyncio.run(_spend_rows(_db(tmp_path)))
    assert left_workers <= set(spend)
    assert any(interrupted for _, interrupted, _ in spend.values())
    assert "spend journal" in second.log()
    # The metric files of the run killed with the group are gone: the next run removed them.
    assert not list(Path(tempfile.gettempdir()).glob(f"cloudgate-metrics-{first.proc.pid}-*"))
    left_again = _crash_under_load(second, [journal / "worker-0", journal / "worker-1"])
    # Back to a single process: it replays the workers' journals as well as its own.
    last = Server(config)
    try:
        last.wait_up(workers=0)
        assert left_again <= set(asyncio.run(_spend_rows(_db(tmp_path))))
        assert _message(last.url, KEY).status_code == 200
    finally:
        # A single process ends as it always has: uvicorn re-raises the SIGTERM it drained for.
        assert last.stop() in (0, -signal.SIGTERM), last.log()


def test_a_worker_that_cannot_start_stops_the_server(tmp_path: Path, upstream: BackgroundServer) -> None:
    lock_dir = tmp_path / "data" / "journal" / "worker-0"
    lock_dir.mkdir(parents=True)
    with open(lock_dir / "journal.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as if another gateway used this data dir
        server = Server(_config(tmp_path, upstream), "--workers", "2")
        code = server.proc.wait(TIMEOUT)
    log = server.log()
    assert code == 1, log
    # Worker 0 tried once, said why (as a single process would), and no other worker started.
    assert log.count("Application startup failed") == 1 and "is in use by another process" in log
    assert "cloudgate: worker 0 exited with code 3 before it could serve" in log
    assert not _group_alive(server.proc.pid)
