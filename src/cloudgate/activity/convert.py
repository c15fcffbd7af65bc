"""Turning a finished `RequestRecord` into an `ActivityEntry`: the writer's work, off the request path.

Headers are cut to a useful subset and redacted; bodies, when the request captured them, are cut
at `max_body_bytes`, decoded as UTF-8 (invalid bytes replaced) and redacted. A Bedrock caller's
streamed answer is an AWS event stream, binary: it is kept as the JSON of its events, one per line.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import orjson

from cloudgate.activity.entry import ActivityEntry
from cloudgate.activity.redact import CREDENTIAL_HEADERS, Redactor, presented_secrets
from cloudgate.protocol.eventstream import EventStreamDecoder, EventStreamError, Frame, chunk_event

if TYPE_CHECKING:
    from cloudgate.gateway.records import RequestRecord


class EntryBuilder:
    """Builds redacted entries from records; one per activity log, shared by its batches."""

    def __init__(self, redactor: Redactor, max_body_bytes: int, auth_header: str | None = None) -> None:
        self.redactor = redactor
        self.max_body_bytes = max_body_bytes
        extra = {auth_header.lower()} if auth_header else set()
        self.credential_headers = CREDENTIAL_HEADERS | extra

    def build(self, record: RequestRecord) -> ActivityEntry:
        """The entry for one finished request."""
        started = datetime.fromtimestamp(record.started_at, UTC)
        headers = record.request_headers or {}
        secrets = presented_secrets(headers, self.credential_headers)
        text = self.redactor.text
        usage = record.usage
        split_1h = usage.cache_creation_1h_input_tokens
        user_agent = record.user_agent or headers.get("user-agent")
        entry = ActivityEntry(
            request_id=record.request_id,
            started_at=started,
            finished_at=started + timedelta(milliseconds=record.duration_ms),
            key_id=record.caller,
            user_id=record.user_id,
            team_id=record.team_id,
            session_id=record.session_id,
            frontdoor=record.frontdoor,
            operation=record.operation,
            model=record.model,
            provider=record.provider,
            deployment=record.deployment,
            region=record.region,
            project=record.project,
            upstream_model=record.upstream_model,
            stream=record.stream,
            status=record.status,
            error_type=record.error_type,
            error_message=None if record.error_message is None else text(record.error_message, secrets),
            stop_reason=record.stop_reason,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            # As the spend log splits them: what is not known to be 1h-cached was cached for 5m.
            cache_write_5m_tokens=max(0, usage.cache_creation_input_tokens - split_1h),
            cache_write_1h_tokens=split_1h,
            cache_read_tokens=usage.cache_read_input_tokens,
            cost_micro=record.cost_micro,
            latency_ms=round(record.duration_ms, 3),
            first_token_ms=record.first_byte_ms,
            attempts=list(record.attempts),
            betas=list(record.betas),
            client_ip=record.client_ip,
            user_agent=None if user_agent is None else self.redactor.short_text(user_agent, secrets),
            request_headers=self.redactor.headers(headers, secrets, self.credential_headers),
            bodies_truncated=record.bodies_truncated,
        )
        if record.capture_bodies:
            self._bodies(record, entry, secrets)
        return entry

    def _bodies(self, record: RequestRecord, entry: ActivityEntry, secrets: tuple[str, ...]) -> None:
        limit = self.max_body_bytes
        raw = record.request_body
        if raw is not None:
            if len(raw) > limit:
                raw = raw[:limit]
                entry.bodies_truncated = True
            entry.request_body = self.redactor.text(raw.decode("utf-8", errors="replace"), secrets)
        answer = record.response_body
        if answer is not None:
            if record.frontdoor == "bedrock" and record.stream and not answer.startswith(b"{"):
                body = event_stream_text(bytes(answer))
            else:
                body = answer.decode("utf-8", errors="replace")
            entry.response_body = self.redactor.text(body, secrets)


def event_stream_text(data: bytes) -> str:
    """An AWS event stream as JSON lines: each chunk's Anthropic event, each exception frame's body.

    A cut stream (the body limit) ends at the last whole frame; bytes that are not an event
    stream at all are described rather than kept.
    """
    try:
        frames = EventStreamDecoder().feed(data)
    except EventStreamError as exc:
        return f"[undecodable event stream, {len(data)} bytes: {exc}]"
    return "\n".join(_frame_text(frame) for frame in frames)


def _frame_text(frame: Frame) -> str:
    if frame.message_type == "event" and frame.event_type == "chunk":
        try:
            return chunk_event(frame).decode("utf-8", errors="replace")
        except (ValueError, KeyError, TypeError):
            pass
    payload = frame.payload.decode("utf-8", errors="replace")
    return orjson.dumps({"frame": frame.message_type, "type": frame.event_type, "payload": payload}).decode()
