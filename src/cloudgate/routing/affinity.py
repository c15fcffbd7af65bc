"""Cache affinity: the requests of one session go where the session's prompt cache is.

Prompt caches live per project and region (Vertex) or account and region (Bedrock), so a
session that moves loses its cache reads, most of Claude Code's savings. A session is
`x-claude-code-session-id` when the caller sends it, else a hash of the prompt prefix (tools,
system prompt, first message), which is what the cache keys on anyway. The map remembers the
deployment that last served each session and for how long; it moves only when that deployment
fails or becomes unusable.

Thinking blocks carry signatures only the platform that made them accepts, so a conversation
that contains them stays with its provider even when failing over.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

_LIMIT = 100_000


@dataclass(slots=True)
class Stick:
    """Where one session was last served."""

    deployment: str
    provider: str
    expires: float


class AffinityMap:
    """Session -> deployment, bounded (least recently used go first) and expiring."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic, limit: int = _LIMIT) -> None:
        self._ttl = ttl
        self._clock = clock
        self._limit = limit
        self._map: OrderedDict[str, Stick] = OrderedDict()

    def get(self, key: str) -> Stick | None:
        """The session's deployment, if remembered and not expired."""
        stick = self._map.get(key)
        if stick is None:
            return None
        if stick.expires <= self._clock():
            del self._map[key]
            return None
        return stick

    def remember(self, key: str, deployment: str, provider: str) -> None:
        """The session was served by `deployment`; keep it there for the next `ttl` seconds."""
        self._map[key] = Stick(deployment, provider, self._clock() + self._ttl)
        self._map.move_to_end(key)
        while len(self._map) > self._limit:
            self._map.popitem(last=False)

    def __len__(self) -> int:
        return len(self._map)


def session_key(session_id: str | None, body: dict[str, Any]) -> str | None:
    """The affinity key of a request: its session id, else a hash of its prompt prefix."""
    if session_id:
        return "s:" + session_id
    messages = body.get("messages")
    first = messages[0] if isinstance(messages, list) and messages else None
    if first is None:
        return None
    prefix = orjson.dumps([body.get("tools"), body.get("system"), first])
    return "p:" + hashlib.blake2b(prefix, digest_size=16).hexdigest()


def carries_thinking(body: dict[str, Any]) -> bool:
    """Whether an assistant turn in the conversation holds a (signed) thinking block."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return False
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for block in content:
            if isinstance(block, dict) and block.get("type") in ("thinking", "redacted_thinking"):
                return True
    return False
