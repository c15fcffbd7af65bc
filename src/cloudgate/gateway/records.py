"""One record per request: who, what, where, how it went, and the tokens it used.

Records go to sinks. For now the sink writes JSON lines (standard error, or a file); the
governance layer adds a database writer behind the same interface.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

import orjson

from cloudgate.protocol.messages import Usage


@dataclass(slots=True)
class RequestRecord:
    """What happened to one request."""

    request_id: str
    started_at: float  # unix time
    caller: str = "anonymous"
    frontdoor: str = ""
    operation: str = ""
    model: str = ""  # as the caller named it
    provider: str = ""
    upstream_model: str = ""
    region: str = ""
    project: str = ""
    deployment: str = ""  # the deployment that answered (or was tried last)
    stream: bool = False
    status: int = 0
    error_type: str | None = None
    error_message: str | None = None
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    first_byte_ms: float | None = None
    duration_ms: float = 0.0
    session_id: str | None = None
    betas: list[str] = field(default_factory=list)
    cost_micro: int | None = None  # priced by governance; None when it is off
    # Every upstream attempt, failovers included: deployment, status, error type.
    attempts: list[dict[str, Any]] = field(default_factory=list)
    # For the activity log; filled by the gateway when one is configured, else left alone.
    user_id: str | None = None
    team_id: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    # The caller's headers as received (credentials included): the activity log keeps a subset
    # and redacts it off the request path.
    request_headers: dict[str, str] | None = None
    # Bodies are kept only when `capture_bodies`: the request's raw bytes, and the answer's
    # bytes as relayed to the caller, cut at `body_limit` (then `bodies_truncated`).
    capture_bodies: bool = False
    body_limit: int = 0
    bodies_truncated: bool = False
    request_body: bytes | None = None
    response_body: bytearray | None = None

    def keep_response(self, data: bytes) -> None:
        """Append relayed answer bytes to `response_body`, up to `body_limit`."""
        kept = self.response_body
        if kept is None:
            kept = self.response_body = bytearray()
        room = self.body_limit - len(kept)
        if len(data) > room:
            if room > 0:
                kept += data[:room]
            self.bodies_truncated = True
        else:
            kept += data

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "request_id": self.request_id,
            "started_at": self.started_at,
            "caller": self.caller,
            "frontdoor": self.frontdoor,
            "operation": self.operation,
            "model": self.model,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "region": self.region,
            "project": self.project,
            "deployment": self.deployment,
            "stream": self.stream,
            "status": self.status,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "stop_reason": self.stop_reason,
            "usage": self.usage.as_dict(),
            "first_byte_ms": self.first_byte_ms,
            "duration_ms": round(self.duration_ms, 3),
            "session_id": self.session_id,
            "betas": self.betas,
            "cost_usd": None if self.cost_micro is None else self.cost_micro / 1_000_000,
            "attempts": self.attempts,
        }


class RecordSink(Protocol):
    """Receives finished request records. Must not block or raise."""

    def emit(self, record: RequestRecord) -> None:
        """Take one record."""

    def close(self) -> None:
        """Write out anything held back; called once at shutdown."""


class JsonLinesSink:
    """Writes each record as one JSON line to a file (standard error by default).

    Off the hot path: a record is queued in memory, and the queue is serialised and written in
    one go a moment later (or at once past `max_pending` records, and always at `close()`), so no
    request waits on the log's I/O and none is lost at a clean shutdown. Records are finished
    when they are emitted: nothing changes them while they wait.
    """

    def __init__(self, path: str | None = None, *, interval: float = 0.2, max_pending: int = 512) -> None:
        self._file: BinaryIO = open(path, "ab") if path else sys.stderr.buffer  # noqa: SIM115
        self._owns_file = bool(path)
        self._pending: list[RequestRecord] = []
        self._interval = interval
        self._max_pending = max_pending
        self._timer: asyncio.TimerHandle | None = None

    def emit(self, record: RequestRecord) -> None:
        """Queue the record for its line."""
        self._pending.append(record)
        if len(self._pending) >= self._max_pending:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self._interval, self.flush)
            except RuntimeError:  # no event loop: write now
                self.flush()

    def flush(self) -> None:
        """Write every queued line."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        records, self._pending = self._pending, []
        # Serialised here, many at once, rather than one per request as each finishes.
        data = b"".join(_lines(records))
        try:
            self._file.write(data)
            self._file.flush()
        except OSError:
            logging.getLogger("cloudgate.requests").exception(
                "could not write %d request records", len(records)
            )

    def close(self) -> None:
        """Write what is queued and release the file."""
        self.flush()
        if self._owns_file:
            self._file.close()


def _lines(records: list[RequestRecord]) -> list[bytes]:
    """Each record's line; a record that cannot be serialised is logged and left out (one odd
    record must not cost the others their lines)."""
    lines = []
    for record in records:
        try:
            lines.append(orjson.dumps(record.as_dict(), option=orjson.OPT_APPEND_NEWLINE))
        except Exception:
            logging.getLogger("cloudgate.requests").exception(
                "could not serialise the record of request %s", record.request_id
            )
    return lines


class MemorySink:
    """Keeps records in a bounded list (tests, the demo's summary)."""

    def __init__(self, limit: int = 10_000) -> None:
        self.records: list[RequestRecord] = []
        self._limit = limit

    def emit(self, record: RequestRecord) -> None:
        """Append, dropping the oldest past the limit."""
        self.records.append(record)
        if len(self.records) > self._limit:
            del self.records[: len(self.records) - self._limit]

    def close(self) -> None:
        """Nothing to write out."""
