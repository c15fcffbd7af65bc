"""One record per request: who, what, where, how it went, and the tokens it used.

Records go to sinks. For now the sink is a structured log line; the governance layer adds a
database writer behind the same interface.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

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
        }


class RecordSink(Protocol):
    """Receives finished request records. Must not block or raise."""

    def emit(self, record: RequestRecord) -> None:
        """Take one record."""


class LogSink:
    """Writes each record as one JSON log line on the `cloudgate.requests` logger."""

    def __init__(self) -> None:
        self._log = logging.getLogger("cloudgate.requests")

    def emit(self, record: RequestRecord) -> None:
        """Log the record at INFO."""
        if self._log.isEnabledFor(logging.INFO):
            self._log.info("%s", orjson.dumps(record.as_dict()).decode())


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
