"""The one internal request type every front door produces and every provider consumes."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Operation(enum.Enum):
    """What the caller asked for."""

    MESSAGES = "messages"
    COUNT_TOKENS = "count_tokens"


class WireFormat(enum.Enum):
    """The three ways Claude is spoken to; also how a response stream is framed."""

    ANTHROPIC = "anthropic"  # Anthropic Messages API: JSON, or SSE when streaming
    VERTEX = "vertex"  # same response framing as ANTHROPIC; request differs (model in URL)
    BEDROCK = "bedrock"  # AWS: JSON, or an application/vnd.amazon.eventstream when streaming


@dataclass(slots=True)
class MessagesCall:
    """A caller's request, decoded once by a front door.

    `body` is the Messages API body as the Anthropic API would receive it, minus the transport
    fields (`model`, `stream` and `anthropic_version` are lifted into attributes), so providers
    add exactly what their wire needs. `raw_body` keeps the caller's bytes for the case where
    the upstream wants them unchanged.
    """

    operation: Operation
    model: str
    body: dict[str, Any]
    stream: bool = False
    betas: list[str] = field(default_factory=list)
    anthropic_version: str | None = None  # the caller's `anthropic-version` header
    body_version: str | None = None  # the caller's body `anthropic_version` (Vertex/Bedrock doors)
    frontdoor: WireFormat = WireFormat.ANTHROPIC
    raw_body: bytes = b""
    # Headers worth keeping end to end (session and agent ids of Claude Code, and the like).
    passthrough_headers: dict[str, str] = field(default_factory=dict)
    # Region the caller asked for (Vertex front door); the router decides whether it counts.
    client_region: str | None = None
    request_id: str = ""


@dataclass(slots=True)
class Usage:
    """Token usage as the Messages API reports it, summed over a stream's events."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_5m_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0

    def update(self, usage: Any) -> None:
        """Take the counts present in a `usage` object; absent or null fields keep their value.

        `message_start` carries the input side and a first output count, and `message_delta`
        the cumulative output count (and, on newer servers, the input side again): each field
        present replaces the previous figure, which is what cumulative counters need.
        """
        if not isinstance(usage, dict):
            return
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ):
            value = usage.get(name)
            if isinstance(value, int):
                setattr(self, name, value)
        creation = usage.get("cache_creation")
        if isinstance(creation, dict):
            five = creation.get("ephemeral_5m_input_tokens")
            hour = creation.get("ephemeral_1h_input_tokens")
            if isinstance(five, int):
                self.cache_creation_5m_input_tokens = five
            if isinstance(hour, int):
                self.cache_creation_1h_input_tokens = hour

    @property
    def total_input_tokens(self) -> int:
        """Every input token the request was billed for, cached or not."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def as_dict(self) -> dict[str, int]:
        """A plain mapping for logs and records."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation_5m_input_tokens": self.cache_creation_5m_input_tokens,
            "cache_creation_1h_input_tokens": self.cache_creation_1h_input_tokens,
        }
