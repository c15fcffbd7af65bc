"""Prompt-caching policy applied to request bodies (DISABLE_PROMPT_CACHING*, ENABLE_PROMPT_CACHING_1H).

Clients mark cacheable prefixes with `cache_control` on system blocks, tools and message
content blocks. Disabling caching removes the markers, so no upstream charges a cache write;
the one-hour option gives markers without a `ttl` the `1h` TTL.
"""

from __future__ import annotations

from typing import Any

from cloudgate.config.settings import CachingSettings


def caching_disabled(settings: CachingSettings, family: str) -> bool:
    """Whether caching is off for a model of `family` (opus, sonnet, haiku or '')."""
    if settings.disable:
        return True
    return bool(family) and bool(getattr(settings, f"disable_{family}", False))


def apply_cache_policy(body: dict[str, Any], settings: CachingSettings, family: str) -> bool:
    """Edit `body` in place per the policy; return whether anything changed."""
    disable = caching_disabled(settings, family)
    if not disable and not settings.ttl_1h:
        return False
    changed = False
    for block in _marked_blocks(body):
        if disable:
            del block["cache_control"]
            changed = True
        else:
            control = block["cache_control"]
            if isinstance(control, dict) and "ttl" not in control:
                control["ttl"] = "1h"
                changed = True
    return changed


def _marked_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every dict in system, tools and messages' content that carries `cache_control`."""
    found: list[dict[str, Any]] = []
    if "cache_control" in body:  # top-level automatic caching
        found.append(body)
    for key in ("system", "tools"):
        items = body.get(key)
        if isinstance(items, list):
            found.extend(b for b in items if isinstance(b, dict) and "cache_control" in b)
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):
                for block in content:
                    if isinstance(block, dict):
                        if "cache_control" in block:
                            found.append(block)
                        nested = block.get("content")  # tool_result blocks hold content lists
                        if isinstance(nested, list):
                            found.extend(b for b in nested if isinstance(b, dict) and "cache_control" in b)
    return found
