"""One activity-log entry per request, and the filter the log is read with."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import orjson


@dataclass(slots=True)
class ActivityEntry:
    """What one request did, as the activity log keeps it (bodies only when asked for).

    Timestamps are timezone-aware UTC. `request_headers` is a redacted subset of the caller's
    headers; `request_body` and `response_body` are redacted text, cut at the configured size
    (then `bodies_truncated`). `cost_micro` is None when governance did not price the request.
    """

    request_id: str
    started_at: datetime
    finished_at: datetime | None = None
    key_id: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    session_id: str | None = None
    frontdoor: str = ""
    operation: str = ""
    model: str = ""  # as the caller named it
    provider: str = ""
    deployment: str = ""
    region: str = ""
    project: str = ""
    upstream_model: str = ""
    stream: bool = False
    status: int = 0
    error_type: str | None = None
    error_message: str | None = None
    stop_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    cost_micro: int | None = None
    latency_ms: float = 0.0
    first_token_ms: float | None = None
    # Every upstream attempt, failovers included: {"deployment", "status", "error"}.
    attempts: list[dict[str, Any]] = field(default_factory=list)
    betas: list[str] = field(default_factory=list)
    client_ip: str | None = None
    user_agent: str | None = None
    request_headers: dict[str, str] = field(default_factory=dict)
    request_body: str | None = None
    response_body: str | None = None
    bodies_truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (timestamps as RFC 3339 strings), as the JSON-lines files hold it."""
        return orjson.loads(self.to_json())  # type: ignore[no-any-return]

    def to_json(self) -> bytes:
        """The entry as one line of JSON (no newline)."""
        return orjson.dumps(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ActivityEntry:
        """An entry from `as_dict()`'s form (a JSON-lines file's line); unknown keys are ignored."""
        values = {name: doc[name] for name in ENTRY_FIELDS if name in doc}
        for name in ("started_at", "finished_at"):
            if isinstance(values.get(name), str):
                values[name] = datetime.fromisoformat(values[name])
        return cls(**values)


ENTRY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ActivityEntry))


@dataclass(slots=True)
class ActivityFilter:
    """Which entries to read: every field set must match; `since` is inclusive, `until` exclusive.

    `errors_only` keeps entries with a status of 400 or more, or an error type (a stream that
    failed after a 200 had started).
    """

    since: datetime | None = None
    until: datetime | None = None
    key_id: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    model: str | None = None
    status: int | None = None
    session_id: str | None = None
    provider: str | None = None
    deployment: str | None = None
    errors_only: bool = False
