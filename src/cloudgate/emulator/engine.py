"""The fake model every platform module shares: replies, token counts, prompt cache, SSE events.

Everything here is deterministic given the request (ids aside), so tests can assert exact text
and token figures. Platform modules only translate URLs, auth and errors around it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from cloudgate.protocol.sse import encode_event

_BASE62 = string.ascii_letters + string.digits
_WORD = re.compile(r"\S+\s*|\s+")
_TEXT_WORDS_PER_DELTA = 3
_JSON_CHARS_PER_DELTA = 16
_TTL_SECONDS = {"5m": 300, "1h": 3600}


def new_id(prefix: str, length: int = 24) -> str:
    """A random id such as `msg_vrtx_` + 24 base62 characters."""
    return prefix + "".join(secrets.choice(_BASE62) for _ in range(length))


@dataclass(slots=True)
class Usage:
    """Token figures of one reply."""

    input_tokens: int
    output_tokens: int
    cache_creation_5m: int = 0
    cache_creation_1h: int = 0
    cache_read: int = 0

    def to_json(self, *, output_tokens: int | None = None) -> dict[str, Any]:
        """The Messages API `usage` object."""
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_5m + self.cache_creation_1h,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_creation_5m,
                "ephemeral_1h_input_tokens": self.cache_creation_1h,
            },
            "output_tokens": self.output_tokens if output_tokens is None else output_tokens,
        }


@dataclass(slots=True)
class Reply:
    """What the fake model answers: content blocks, why it stopped, and usage."""

    content: list[dict[str, Any]]
    stop_reason: str
    usage: Usage
    stop_sequence: str | None = None


# ---------------------------------------------------------------------------------------------
# Reading the conversation


@dataclass(slots=True)
class LastUserTurn:
    """What the script can match on: the last user message's text and tool results."""

    text: str = ""
    tool_results: list[str] = field(default_factory=list)


def _block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            b["text"]
            for b in content
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        )
    return ""


def last_user_turn(body: dict[str, Any]) -> LastUserTurn:
    """The last `user` message of the request, reduced to its text and tool-result texts."""
    for message in reversed(body.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        turn = LastUserTurn(text=_block_text(content))
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    turn.tool_results.append(_block_text(block.get("content")))
        return turn
    return LastUserTurn()


# ---------------------------------------------------------------------------------------------
# Token counting and the prompt cache


@dataclass(slots=True)
class _Segment:
    data: bytes  # JSON of the piece, without its cache_control
    cache_ttl: str | None  # "5m"/"1h" when the piece carries a cache_control marker


def _segment(piece: Any) -> _Segment:
    ttl: str | None = None
    if isinstance(piece, dict) and isinstance(piece.get("cache_control"), dict):
        ttl = "1h" if piece["cache_control"].get("ttl") == "1h" else "5m"
        piece = {k: v for k, v in piece.items() if k != "cache_control"}
    return _Segment(orjson.dumps(piece, option=orjson.OPT_SORT_KEYS), ttl)


def _segments(body: dict[str, Any]) -> list[_Segment]:
    """The prompt in cache order (tools, system, messages), one segment per cacheable block."""
    out: list[_Segment] = []
    tools = body.get("tools")
    if isinstance(tools, list):
        out.extend(_segment(t) for t in tools)
    system = body.get("system")
    if isinstance(system, list):
        out.extend(_segment(b) for b in system)
    elif system is not None:
        out.append(_segment(system))
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            out.append(_segment(message))
            continue
        out.append(_Segment(orjson.dumps(message.get("role")), None))
        content = message.get("content")
        if isinstance(content, list):
            out.extend(_segment(b) for b in content)
        else:
            out.append(_segment(content))
    return out


def count_tokens(body: dict[str, Any]) -> int:
    """Input tokens of a request: about one per 4 characters of its JSON, at least 1."""
    return max(1, sum(len(s.data) for s in _segments(body)) // 4)


class PromptCache:
    """Prefixes the fake model has 'cached', per scope (project or account, region, model), with expiry."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, bytes], tuple[float, int]] = {}

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()

    def apply(self, scope: str, segments: list[_Segment], min_tokens: int) -> tuple[int, int, str]:
        """Return (read tokens, creation tokens, creation ttl) for a prompt, and remember its prefixes."""
        markers = [i for i, s in enumerate(segments) if s.cache_ttl]
        if not markers:
            return 0, 0, "5m"
        hashes: list[bytes] = []
        prefix_tokens: list[int] = []
        digest = hashlib.sha256(scope.encode())
        chars = 0
        for seg in segments[: markers[-1] + 1]:
            digest.update(len(seg.data).to_bytes(8, "big") + seg.data)
            chars += len(seg.data)
            hashes.append(digest.digest())
            prefix_tokens.append(chars // 4)
        last = markers[-1]
        ttl = segments[last].cache_ttl or "5m"
        if prefix_tokens[last] < min_tokens:
            return 0, 0, ttl
        now = self._clock()
        with self._lock:
            read = 0
            for i in range(last, -1, -1):
                entry = self._entries.get((scope, hashes[i]))
                if entry is not None and entry[0] > now:
                    read = prefix_tokens[i]
                    # A hit refreshes the entry's lifetime, as the real cache does.
                    self._entries[(scope, hashes[i])] = (now + entry[1], entry[1])
                    break
            for i in markers:
                if prefix_tokens[i] >= min_tokens:
                    life = _TTL_SECONDS[segments[i].cache_ttl or "5m"]
                    old = self._entries.get((scope, hashes[i]))
                    if old is None or old[0] <= now:
                        self._entries[(scope, hashes[i])] = (now + life, life)
        return read, prefix_tokens[last] - read, ttl


# ---------------------------------------------------------------------------------------------
# Scripts


@dataclass(slots=True)
class ScriptTurn:
    """One scripted answer: conditions in `when`, content blocks in `reply`."""

    when: dict[str, Any]
    reply: list[dict[str, Any]]

    def matches(self, turn: LastUserTurn, model: str, tool_names: set[str]) -> bool:
        """Whether every condition holds (and every tool the reply calls was offered)."""
        cond = self.when
        if "last_user_text_contains" in cond and str(cond["last_user_text_contains"]) not in turn.text:
            return False
        if "last_user_has_tool_result" in cond and bool(cond["last_user_has_tool_result"]) != bool(
            turn.tool_results
        ):
            return False
        if "model_contains" in cond and str(cond["model_contains"]) not in model:
            return False
        # A model never calls a tool it was not given; this also keeps side requests (title
        # generation, quota probes) that quote the user's words from getting a tool call.
        return all(b.get("name") in tool_names for b in self.reply if b.get("type") == "tool_use")


_WHEN_KEYS = {"last_user_text_contains", "last_user_has_tool_result", "model_contains"}


def load_script(source: str | Path | list[dict[str, Any]] | None) -> list[ScriptTurn]:
    """Turns from a YAML/JSON file path, an inline list, or nothing."""
    if source is None:
        return []
    data: Any = source
    if isinstance(source, str | Path):
        data = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = data.get("turns")
    if not isinstance(data, list):
        raise ValueError("a script is a list of turns (or a mapping with a 'turns' list)")
    turns: list[ScriptTurn] = []
    for i, raw in enumerate(data):
        if not isinstance(raw, dict) or not isinstance(raw.get("reply"), list):
            raise ValueError(f"script turn {i}: needs a 'reply' list of content blocks")
        when = raw.get("when") or {}
        if not isinstance(when, dict) or set(when) - _WHEN_KEYS:
            raise ValueError(f"script turn {i}: 'when' keys must be among {sorted(_WHEN_KEYS)}")
        for block in raw["reply"]:
            if not isinstance(block, dict) or block.get("type") not in ("text", "tool_use"):
                raise ValueError(f"script turn {i}: reply blocks must be text or tool_use")
        turns.append(ScriptTurn(when=dict(when), reply=[dict(b) for b in raw["reply"]]))
    return turns


# ---------------------------------------------------------------------------------------------
# The engine


def _text_tokens(text: str) -> list[str]:
    return _WORD.findall(text)


def _tool_tokens(block: dict[str, Any]) -> int:
    return max(1, len(orjson.dumps(block.get("input", {}))) // 4)


def _thinking_enabled(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _thinking_block(body: dict[str, Any]) -> dict[str, Any]:
    # With thinking on, the real model always opens with a signed thinking block; clients
    # (Claude Code included) send it back verbatim in the next turn's history.
    said = last_user_turn(body).text
    thought = f"The user wrote {len(said)} characters. I will answer with the emulator's reply."
    signature = base64.b64encode(secrets.token_bytes(48)).decode()
    return {"type": "thinking", "thinking": thought, "signature": signature}


class ModelEngine:
    """The fake model: turns a validated Messages body into a Reply."""

    def __init__(
        self,
        *,
        script: list[ScriptTurn] | None = None,
        min_cacheable_tokens: int = 1024,
        cache: PromptCache | None = None,
    ) -> None:
        self.script = script or []
        self.min_cacheable_tokens = min_cacheable_tokens
        self.cache = cache or PromptCache()

    def count_tokens(self, body: dict[str, Any]) -> int:
        """Input tokens of a request (what count-tokens answers)."""
        return count_tokens(body)

    def reply(
        self, body: dict[str, Any], *, model: str, cache_scope: str, tool_id_prefix: str = "toolu_vrtx_"
    ) -> Reply:
        """Answer a request: scripted or default content, truncated by max_tokens / stop_sequences."""
        segments = _segments(body)
        total = max(1, sum(len(s.data) for s in segments) // 4)
        read, created, ttl = self.cache.apply(cache_scope, segments, self.min_cacheable_tokens)
        usage = Usage(
            input_tokens=max(0, total - read - created),
            output_tokens=0,
            cache_creation_5m=created if ttl == "5m" else 0,
            cache_creation_1h=created if ttl == "1h" else 0,
            cache_read=read,
        )
        blocks = self._planned_blocks(body, model, tool_id_prefix)
        max_tokens = body.get("max_tokens")
        budget = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 4096
        stops = [s for s in body.get("stop_sequences") or [] if isinstance(s, str) and s]
        content: list[dict[str, Any]] = []
        stop_reason = "end_turn"
        stop_sequence: str | None = None
        used = 0
        if _thinking_enabled(body):
            blocks.insert(0, _thinking_block(body))
        for block in blocks:
            if block["type"] in ("text", "thinking"):
                key = block["type"]
                text = block[key]
                hit = min(((text.find(s), s) for s in stops if s in text), default=None)
                if hit is not None and key == "text":
                    text, stop_reason, stop_sequence = text[: hit[0]], "stop_sequence", hit[1]
                words = _text_tokens(text)
                if used + len(words) > budget:
                    words = words[: budget - used]
                    stop_reason, stop_sequence = "max_tokens", None
                    text = "".join(words).rstrip()
                used += len(words)
                if text:
                    content.append({**block, key: text})
                if stop_reason in ("stop_sequence", "max_tokens"):
                    break
            else:
                cost = _tool_tokens(block)
                if used + cost > budget:
                    stop_reason = "max_tokens"
                    break
                used += cost
                content.append(block)
                stop_reason = "tool_use"
        usage.output_tokens = max(1, used)
        return Reply(content=content, stop_reason=stop_reason, usage=usage, stop_sequence=stop_sequence)

    def _planned_blocks(self, body: dict[str, Any], model: str, tool_id_prefix: str) -> list[dict[str, Any]]:
        turn = last_user_turn(body)
        tool_names = {
            t["name"]
            for t in body.get("tools") or []
            if isinstance(t, dict) and isinstance(t.get("name"), str)
        }
        for scripted in self.script:
            if scripted.matches(turn, model, tool_names):
                return [self._instantiate(b, turn, tool_id_prefix) for b in scripted.reply]
        said = turn.text[:200]
        return [{"type": "text", "text": f"Hello from the cloudgate emulator. You said: {said}"}]

    @staticmethod
    def _instantiate(block: dict[str, Any], turn: LastUserTurn, tool_id_prefix: str) -> dict[str, Any]:
        if block["type"] == "text":
            tool_result = turn.tool_results[-1] if turn.tool_results else ""
            text = str(block.get("text", "")).replace("{tool_result}", tool_result.strip())
            return {"type": "text", "text": text}
        return {
            "type": "tool_use",
            "id": new_id(tool_id_prefix),
            "name": str(block.get("name", "")),
            "input": dict(block.get("input") or {}),
        }


# ---------------------------------------------------------------------------------------------
# Wire shapes


def message_json(reply: Reply, *, msg_id: str, model: str) -> dict[str, Any]:
    """The non-streaming Message object."""
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": reply.content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": reply.usage.to_json(),
    }


def stream_events(reply: Reply, *, msg_id: str, model: str) -> list[bytes]:
    """The SSE events of a streamed reply, each already encoded."""
    return [encode_event(e["type"], e) for e in stream_event_data(reply, msg_id=msg_id, model=model)]


def stream_event_data(reply: Reply, *, msg_id: str, model: str) -> list[dict[str, Any]]:
    """The events of a streamed reply as JSON-ready data (every platform frames the same list)."""
    start = message_json(reply, msg_id=msg_id, model=model)
    start.update(content=[], stop_reason=None, stop_sequence=None)
    start["usage"] = reply.usage.to_json(output_tokens=1)
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "ping"},
    ]
    for index, block in enumerate(reply.content):
        if block["type"] in ("text", "thinking"):
            key = block["type"]
            opening: dict[str, Any] = {"type": key, key: ""}
            words = _text_tokens(block[key])
            deltas = [
                {"type": f"{key}_delta", key: "".join(words[i : i + _TEXT_WORDS_PER_DELTA])}
                for i in range(0, len(words), _TEXT_WORDS_PER_DELTA)
            ]
            if key == "thinking":
                opening["signature"] = ""
                deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            raw = orjson.dumps(block["input"]).decode()
            deltas = [{"type": "input_json_delta", "partial_json": ""}] + [
                {"type": "input_json_delta", "partial_json": raw[i : i + _JSON_CHARS_PER_DELTA]}
                for i in range(0, len(raw), _JSON_CHARS_PER_DELTA)
            ]
        events.append({"type": "content_block_start", "index": index, "content_block": opening})
        events.extend({"type": "content_block_delta", "index": index, "delta": d} for d in deltas)
        events.append({"type": "content_block_stop", "index": index})
    delta_usage = reply.usage.to_json()
    delta_usage.pop("cache_creation")
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
            "usage": delta_usage,
        }
    )
    events.append({"type": "message_stop"})
    return events
