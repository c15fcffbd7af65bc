"""The store writer process: spend rows, report rollups and activity entries written by a child.

Why a process: turning a batch of finished requests into SQL rows and rollups, and handing them
to the database driver, is Python work that holds the gateway's one event loop (and its GIL) for
tens of milliseconds a batch. Requests arriving meanwhile wait, and at one connection those
waits made much of the 99th percentile (moving the work here took ~1.5 ms off it and ~55 us
of CPU off each request there; decision 0038). The gateway process now only encodes each
batch (about 2 us an entry, one orjson call per slice) and sends it over a socket; a child
process it started itself decodes it and writes it through the same repositories
(`SqlSpendSink`, `ActivityRepository`) as before, in one transaction per batch, and answers
once it has committed.

Nothing about safety changes: the spend writer checkpoints its journal only after the child's
answer, so a batch is replayed if the child (or the gateway) dies before that; the activity
log keeps a batch queued until it is acknowledged. A child that dies fails the calls waiting on
it (their writers retry with backoff) and the next call starts a new one. The child ends when
the socket closes: when the gateway stops, or dies.

Wire: a frame is a 4-byte big-endian length and an orjson array. Requests are
`[id, "spend", fresh, rows]` and `[id, "activity", rows]`, a row being the entry's field values
in declaration order (both ends run the same code); answers are `[id, null]` or
`[id, "<error>"]`.

    python -m cloudgate.store.writer_process --fd N --url URL [--schema S] [--log-level L]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import operator
import os
import signal
import socket
import struct
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from cloudgate.activity.entry import ENTRY_FIELDS as ACTIVITY_FIELDS
from cloudgate.activity.entry import ActivityEntry
from cloudgate.governance.journal import ENTRY_FIELDS as SPEND_FIELDS
from cloudgate.governance.types import SpendEntry
from cloudgate.util.tasks import spawn

log = logging.getLogger("cloudgate.store.writer")

_HEADER = struct.Struct(">I")
_SLICE = 256  # entries encoded between two yields to the event loop
_spend_values = operator.attrgetter(*SPEND_FIELDS)  # the spend journal's row order
_activity_values = operator.attrgetter(*ACTIVITY_FIELDS)
_SPEND_TIMES = tuple(SPEND_FIELDS.index(n) for n in ("started_at", "finished_at"))
_ACTIVITY_TIMES = tuple(ACTIVITY_FIELDS.index(n) for n in ("started_at", "finished_at"))
_STOP_SECONDS = 10.0  # how long a closing gateway waits for its child to finish the last write


class WriterProcessError(Exception):
    """The child did not write a batch: it failed (its error is the message) or went away."""


async def _encode(values: Any, entries: Sequence[Any]) -> bytes:
    """The rows of `entries` as one JSON array, a slice at a time so the loop keeps serving."""
    if len(entries) <= _SLICE:
        return orjson.dumps(list(map(values, entries)))
    parts = []
    for start in range(0, len(entries), _SLICE):
        if start:
            await asyncio.sleep(0)
        parts.append(orjson.dumps(list(map(values, entries[start : start + _SLICE])))[1:-1])
    return b"[" + b",".join(parts) + b"]"


class WriterProcess:
    """The gateway's end: starts the child when first needed, sends batches, awaits their answers."""

    def __init__(self, url: str, *, schema: str | None = None, log_level: str = "INFO") -> None:
        self._url = url
        self._schema = schema
        self._log_level = log_level
        self._process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._next_id = 0
        self._starting = asyncio.Lock()
        self._closed = False
        self.starts = 0  # children started so far (more than one: a child died and was replaced)

    @property
    def pid(self) -> int | None:
        """The running child's process id, if one runs."""
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start the child now (else the first write starts it)."""
        await self._ensure()

    async def write_spend(self, entries: Sequence[SpendEntry], *, fresh: bool = False) -> None:
        """A `SpendSink`: the child writes these spend entries (and their rollups) or this raises."""
        rows = await _encode(_spend_values, entries)
        await self._call(b'"spend",' + (b"true," if fresh else b"false,") + rows)

    async def write_activity(self, entries: Sequence[ActivityEntry]) -> None:
        """The activity log's database write, done by the child; raises if it was not written."""
        rows = await _encode(_activity_values, entries)
        await self._call(b'"activity",' + rows)

    async def close(self, grace: float = _STOP_SECONDS) -> None:
        """Let the child finish what it was sent, then stop it (killed after `grace` seconds)."""
        self._closed = True
        async with self._starting:
            await self._stop(grace)

    # -- the conversation -------------------------------------------------------------------

    async def _call(self, body: bytes) -> None:
        if self._closed:
            raise WriterProcessError("the store writer is closed")
        writer = await self._ensure()
        self._next_id += 1
        ident = self._next_id
        frame = b"[%d," % ident + body + b"]"
        answer = asyncio.get_running_loop().create_future()
        self._waiting[ident] = answer
        try:
            writer.write(_HEADER.pack(len(frame)) + frame)
            await writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            self._waiting.pop(ident, None)
            raise WriterProcessError(f"the store writer went away: {exc}") from None
        await answer

    async def _ensure(self) -> asyncio.StreamWriter:
        async with self._starting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            await self._stop(0.0)
            return await self._spawn()

    async def _spawn(self) -> asyncio.StreamWriter:
        ours, theirs = socket.socketpair()
        try:
            argv = [sys.executable, "-m", "cloudgate.store.writer_process", "--fd", str(theirs.fileno())]
            argv += ["--url", self._url, "--log-level", self._log_level]
            if self._schema:
                argv += ["--schema", self._schema]
            self._process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, pass_fds=(theirs.fileno(),)
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        self._writer = writer
        self.starts += 1
        if self.starts > 1:
            log.warning("started a new store writer process (pid %d)", self._process.pid)
        else:
            log.info("store writer process started (pid %d)", self._process.pid)
        answers = self._read_answers(reader, writer, self._process)
        self._reader_task = spawn(answers, name="store-writer answers")
        return writer

    async def _read_answers(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, process: asyncio.subprocess.Process
    ) -> None:
        try:
            while True:
                size = _HEADER.unpack(await reader.readexactly(_HEADER.size))[0]
                ident, error = orjson.loads(await reader.readexactly(size))
                answer = self._waiting.pop(ident, None)
                if answer is None or answer.done():
                    continue
                if error is None:
                    answer.set_result(None)
                else:
                    answer.set_exception(WriterProcessError(error))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            # Before any await: a write made after this point goes to the next child, whose
            # answers must not be failed here.
            writer.close()
            gone = WriterProcessError(f"the store writer process (pid {process.pid}) went away")
            for answer in self._waiting.values():
                if not answer.done():
                    answer.set_exception(gone)
            self._waiting.clear()
            if not self._closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), 1.0)
                log.error("%s (exit code %s); the next write starts another", gone, process.returncode)

    async def _stop(self, grace: float) -> None:
        process, writer, reader_task = self._process, self._writer, self._reader_task
        self._process = self._writer = self._reader_task = None
        if writer is not None and not writer.is_closing():
            if grace > 0 and writer.can_write_eof():
                # End of input, the socket still open the other way: the child finishes what
                # it was sent, answers it, and exits.
                writer.write_eof()
            else:
                writer.close()
        if process is not None:
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                if grace > 0:
                    log.warning("the store writer process did not stop within %.0f s: killed", grace)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if reader_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await reader_task


# -- the child ---------------------------------------------------------------------------------


def _times(row: list[Any], where: tuple[int, ...]) -> list[Any]:
    for i in where:
        if isinstance(row[i], str):
            row[i] = datetime.fromisoformat(row[i])
    return row


def spend_entries(rows: list[list[Any]]) -> list[SpendEntry]:
    """Spend entries from their rows (the gateway's `write_spend` frames)."""
    return [SpendEntry(*_times(row, _SPEND_TIMES)) for row in rows]


def activity_entries(rows: list[list[Any]]) -> list[ActivityEntry]:
    """Activity entries from their rows (the gateway's `write_activity` frames)."""
    return [ActivityEntry(*_times(row, _ACTIVITY_TIMES)) for row in rows]


async def serve(sock: socket.socket, url: str, schema: str | None) -> None:
    """Write what arrives on `sock` until it closes; answer each frame once written."""
    from cloudgate.store.repositories import Store  # the child's own engine and repositories

    store = Store.open(url, schema=schema)
    sink = store.spend_sink()
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    try:
        while True:
            try:
                size = _HEADER.unpack(await reader.readexactly(_HEADER.size))[0]
                frame = await reader.readexactly(size)
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # the gateway closed its end (stopping) or died
            error: str | None = None
            ident = 0
            try:
                message = orjson.loads(frame)
                ident, kind = message[0], message[1]
                if kind == "spend":
                    await sink.write_spend(spend_entries(message[3]), fresh=bool(message[2]))
                elif kind == "activity":
                    await store.activity.write(activity_entries(message[2]))
                else:
                    error = f"unknown request {kind!r}"
            except Exception as exc:  # the gateway retries; the error is its to report
                log.exception("store write failed")
                error = f"{type(exc).__name__}: {exc}"
            answer = orjson.dumps([ident, error])
            writer.write(_HEADER.pack(len(answer)) + answer)
            try:
                await writer.drain()
            except ConnectionError:
                return
    finally:
        writer.close()
        await store.close()


def main(argv: list[str] | None = None) -> int:
    """The child's entry point (started by `WriterProcess`, not by hand)."""
    parser = argparse.ArgumentParser(prog="python -m cloudgate.store.writer_process")
    parser.add_argument("--fd", type=int, required=True, help="the socket the gateway talks on")
    parser.add_argument("--url", required=True, help="the store's SQLAlchemy URL")
    parser.add_argument("--schema", help="the PostgreSQL schema")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[{os.getpid()}]: %(message)s",
        stream=sys.stderr,
    )
    # The child lives exactly as long as its gateway's socket: a Ctrl-C or SIGTERM sent to the
    # whole process group is the gateway's to act on (it writes out what is queued, then
    # closes the socket), and a gateway that dies closes it too.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=args.fd)
    asyncio.run(serve(sock, args.url, args.schema))
    return 0


if __name__ == "__main__":
    sys.exit(main())
