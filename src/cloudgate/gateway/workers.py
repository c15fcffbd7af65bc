"""`cloudgate serve --workers N`: one listening socket, N worker processes, a parent watching them.

The parent does what must happen once, before any worker runs: it binds the socket (so a port in
use is one clear error), migrates the database, writes to the store what earlier runs left in
every spend journal (a single-process run's `journal/`, each `journal/worker-<i>/`), empties the
shared counters file, and makes a fresh directory for the workers' metric files. Then it forks
worker 0 and waits for it to be ready (a startup error is reported once, and the parent gives up),
then the others. Each worker builds its own gateway app after the fork (event loop, upstream
connection pools and database connections are never shared across a fork), serves the inherited
socket with uvicorn, writes its spend journal to `journal/worker-<i>` (so a restarted worker i
replays what worker i left) and freezes its start-up objects out of the garbage collector.

The parent then only watches: SIGTERM or SIGINT is passed on to the workers as SIGTERM (each
drains its connections and writes out its spend), and it exits 0 once they are gone. A worker
that dies otherwise is replaced, after a back-off that grows while replacements keep dying
young; one that cannot start `MAX_STARTUP_FAILURES` times in a row stops the server (exit 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import select
import shutil
import signal
import socket
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from cloudgate.config.settings import Settings
from cloudgate.gateway.app import create_gateway_app
from cloudgate.gateway.governor import COUNTERS_FILE, journal_directory, leftover_journals, replay_journals
from cloudgate.governance.sqlite_counters import reset_counter_db
from cloudgate.observability.multiprocess import enable_multiprocess, mark_process_dead
from cloudgate.store.engine import data_dir, database_url
from cloudgate.store.migrate import upgrade
from cloudgate.store.repositories import Store
from cloudgate.util.server import uvicorn_config

log = logging.getLogger("cloudgate.serve")

READY = b"r"  # a worker writes it to its pipe once it serves
STARTUP_FAILED = 3  # a worker's exit code when its app did not start
MAX_STARTUP_FAILURES = 5  # in a row, for one worker: the server stops
LIVED_LONG_S = 10.0  # a worker that ran this long is restarted at once, and the back-off resets
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 15.0
STOP_GRACE_S = 20.0  # uvicorn's own grace (10 s) plus writing out spend and activity


class StartupError(Exception):
    """The server cannot start; the message says why, in one line for the user."""


def bind_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The listening socket every worker accepts on; StartupError when the address is unusable."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise StartupError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


def worker_settings(settings: Settings, index: int) -> Settings:
    """Worker `index`'s settings: its own journal directory; the parent has migrated already."""
    journal = journal_directory(settings) / f"worker-{index}"
    store = settings.store.model_copy(update={"journal_dir": str(journal), "migrate_on_start": False})
    return settings.model_copy(update={"store": store})


async def prepare_shared_state(settings: Settings) -> int:
    """Once per run, before the workers: migrate, replay every journal, empty the shared counters;
    returns the spend entries replayed."""
    if not getattr(settings, "governance", True):  # a forwarding gateway without a store
        return 0
    url = database_url(settings)
    if settings.store.migrate_on_start:
        await upgrade(url)
    store = Store.open(url)
    try:
        replayed = await replay_journals(leftover_journals(journal_directory(settings)), store)
    finally:
        await store.close()
    if not settings.redis_url:
        # Budgets are seeded again from the spend log, which now holds every earlier request.
        reset_counter_db(data_dir(settings) / COUNTERS_FILE)
    return replayed


class _WorkerServer(uvicorn.Server):
    """uvicorn in a worker: says when it serves, and ends on SIGTERM/SIGINT with exit code 0."""

    def __init__(self, config: uvicorn.Config, ready_fd: int) -> None:
        super().__init__(config)
        self._ready_fd = ready_fd

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving, then tell the parent."""
        await super().startup(sockets)
        if self.started:
            os.write(self._ready_fd, READY)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Stop gracefully on SIGTERM or SIGINT (a second SIGINT: at once), without re-raising
        the signal afterwards as uvicorn does, so a worker that stopped cleanly exits 0."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle_exit)
        yield


def _worker_main(
    index: int, settings: Settings, sock: socket.socket, ready_fd: int, metrics_dir: str | None
) -> int:
    if metrics_dir is not None:
        enable_multiprocess(metrics_dir)
    with contextlib.suppress(ImportError):  # no uvloop: asyncio's own loop, nothing to set
        from cloudgate.util.eventloop import set_accepts_per_turn

        set_accepts_per_turn(1)  # the workers share one socket: take turns (util/eventloop.py)
    app = create_gateway_app(worker_settings(settings, index))
    app.freeze_gc = True  # each worker freezes its own start-up objects once it has started
    config = uvicorn_config(
        app,
        settings.gateway.host,
        settings.gateway.port,
        log_level=settings.log_level.lower(),
        log_config=None,
    )
    server = _WorkerServer(config, ready_fd)
    server.run(sockets=[sock])
    return 0 if server.started else STARTUP_FAILED


@dataclass
class _Worker:
    index: int
    pid: int
    ready_fd: int  # the parent's end of the pipe the worker says "ready" on
    started_at: float
    ready: bool = False


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(sig).name}"
        return f"was killed by signal {sig}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


class Supervisor:
    """Runs `settings.gateway.workers` workers on one socket until told to stop."""

    def __init__(self, settings: Settings, sock: socket.socket, metrics_dir: str | None) -> None:
        self.settings = settings
        self.count = settings.gateway.workers
        self.sock = sock
        self.metrics_dir = metrics_dir
        self.workers: dict[int, _Worker] = {}  # pid -> worker
        self.failures = [0] * self.count  # consecutive early deaths per worker index
        self.startup_failures = [0] * self.count
        self.restart_at: dict[int, float] = {}  # index -> when to start it again
        self.stopping: str | bool = False  # the name of the signal that stops the server
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # -- lifecycle ------------------------------------------------------------------------------

    def run(self) -> int:
        """Start the workers (worker 0 first), watch them, stop them; the process's exit code."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda *_: None)
        old_wakeup = signal.set_wakeup_fd(self._wake_w)
        try:
            return self._run()
        finally:
            if isinstance(self.stopping, str):
                log.info("%s: stopping the workers", self.stopping)
            self._stop_all()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _run(self) -> int:
        first = self._spawn(0)
        while not first.ready:
            if self.stopping:
                return 0
            status = self._wait_ready_or_exit(first)
            if status is not None:
                raise StartupError(f"worker 0 {_describe(status)} before it could serve; see the error above")
        for index in range(1, self.count):
            self._spawn(index)
        log.info(
            "serving on http://%s:%d with %d workers (pids %s)",
            self.settings.gateway.host,
            self.settings.gateway.port,
            self.count,
            ", ".join(str(pid) for pid in self.workers),
        )
        while not self.stopping:
            self._tick()
            for index, when in list(self.restart_at.items()):
                if time.monotonic() >= when and not self.stopping:
                    del self.restart_at[index]
                    self._spawn(index)
        return 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only a flag: the loop logs and acts, outside the handler.
        self.stopping = self.stopping or signal.Signals(signum).name

    # -- workers --------------------------------------------------------------------------------

    def _spawn(self, index: int) -> _Worker:
        read_fd, write_fd = os.pipe()
        # A stop signal arriving mid-fork waits until each side has its own handlers.
        stops = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(read_fd)
                self._forget_parent_state()
                signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
                code = _worker_main(index, self.settings, self.sock, write_fd, self.metrics_dir)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = STARTUP_FAILED
            finally:
                logging.shutdown()
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        os.close(write_fd)
        worker = _Worker(index, pid, read_fd, time.monotonic())
        self.workers[pid] = worker
        log.debug("worker %d started (pid %d)", index, pid)
        return worker

    def _forget_parent_state(self) -> None:
        """In a new worker: the parent's signal handling and pipes are not its own."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        os.close(self._wake_r)
        os.close(self._wake_w)
        for other in self.workers.values():
            os.close(other.ready_fd)

    def _wait_ready_or_exit(self, worker: _Worker) -> int | None:
        """Wait a little for `worker` to be ready; its wait status if it exited instead."""
        self._select([worker.ready_fd], 0.5)
        self._read_ready(worker)
        for gone, status in self._reap():
            if gone is worker:
                return status
        return None

    def _tick(self) -> None:
        waiting = [w.ready_fd for w in self.workers.values() if not w.ready]
        timeout = 1.0
        if self.restart_at:
            timeout = max(0.0, min(timeout, min(self.restart_at.values()) - time.monotonic()))
        self._select(waiting, timeout)
        for worker in list(self.workers.values()):
            if not worker.ready:
                self._read_ready(worker)
        for gone, status in self._reap():
            self._replace(gone, status)

    def _select(self, fds: list[int], timeout: float) -> None:
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select([self._wake_r, *fds], [], [], timeout)
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 512)

    def _read_ready(self, worker: _Worker) -> None:
        readable, _, _ = select.select([worker.ready_fd], [], [], 0)
        if readable and os.read(worker.ready_fd, 1) == READY:
            worker.ready = True
            self.startup_failures[worker.index] = 0

    def _reap(self) -> list[tuple[_Worker, int]]:
        """Every worker that exited, with its wait status; they are no longer watched."""
        done = []
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            os.close(worker.ready_fd)
            if self.metrics_dir is not None:
                mark_process_dead(pid, self.metrics_dir)  # type: ignore[no-untyped-call]
            done.append((worker, status))
        return done

    def _replace(self, worker: _Worker, status: int) -> None:
        """Schedule a new worker in place of one that died while the server runs."""
        index = worker.index
        lived = time.monotonic() - worker.started_at
        if not worker.ready:
            self.startup_failures[index] += 1
            if self.startup_failures[index] >= MAX_STARTUP_FAILURES:
                raise StartupError(
                    f"worker {index} {_describe(status)} before it could serve, "
                    f"{MAX_STARTUP_FAILURES} times in a row; see the error above"
                )
        self.failures[index] = 0 if worker.ready and lived >= LIVED_LONG_S else self.failures[index] + 1
        delay = (
            0.0
            if not self.failures[index]
            else min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (self.failures[index] - 1))
        )
        log.warning(
            "worker %d (pid %d) %s after %.1f s; starting a new one%s",
            index,
            worker.pid,
            _describe(status),
            lived,
            f" in {delay:g} s" if delay else "",
        )
        self.restart_at[index] = time.monotonic() + delay

    def _stop_all(self) -> None:
        """SIGTERM every worker, wait for them to drain, SIGKILL what is left."""
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while self.workers and time.monotonic() < deadline:
            self._reap()
            if self.workers:
                self._select([], 0.1)
        for pid in list(self.workers):
            log.warning("worker pid %d did not stop in %g s: killing it", pid, STOP_GRACE_S)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        while self.workers:
            self._reap()
            if self.workers:
                time.sleep(0.05)


def metrics_directory() -> str:
    """A fresh directory for this run's metric files, named after this process; those of runs
    whose parent is gone (killed before it could remove them) are removed first."""
    for old in Path(tempfile.gettempdir()).glob("cloudgate-metrics-*-*"):
        owner = old.name.split("-")[2]
        if owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"cloudgate-metrics-{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def serve_workers(settings: Settings) -> int:
    """Serve with `settings.gateway.workers` processes until SIGTERM/SIGINT; the exit code.

    Raises StartupError (one line for the user) when the server cannot start.
    """
    try:
        probe = create_gateway_app(settings)  # settings the app refuses are refused here, once
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    del probe
    gc.collect()  # what it opened (a request log file) is not for the workers to inherit
    sock = bind_socket(settings.gateway.host, settings.gateway.port)
    metrics_dir = metrics_directory() if settings.telemetry.metrics else None
    try:
        try:
            asyncio.run(prepare_shared_state(settings))
        except Exception as exc:
            log.debug("preparing the store failed", exc_info=True)
            raise StartupError(f"could not prepare the store: {exc}") from None
        return Supervisor(settings, sock, metrics_dir).run()
    finally:
        sock.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
