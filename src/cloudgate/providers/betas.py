"""Per-upstream beta filtering: drop or rename the betas a platform rejects, with their body fields.

Upstreams answer 400 for any `anthropic-beta` value they do not know, so a beta one platform
accepts must be filtered out before the request goes to another. Runs once per request: no I/O,
and the body is copied only when a field really has to go.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from cloudgate.catalog.betas import BetaTable, default_betas

log = logging.getLogger("cloudgate.providers")

# (platform, beta) pairs already logged: each drop is worth one warning per process, not one per request.
_logged: set[tuple[str, str]] = set()


@dataclass(slots=True, frozen=True)
class BetaFilterResult:
    """What to send: the betas, the body (the caller's own object unless a field was removed)."""

    betas: list[str]
    body: dict[str, Any]
    body_changed: bool
    dropped: tuple[str, ...] = ()
    # Betas the caller sent that went out under the platform's own name.
    replaced: tuple[str, ...] = ()


def filter_betas(
    betas: Sequence[str],
    body: dict[str, Any],
    platform: str,
    table: BetaTable | None = None,
    extra_drop: Collection[str] = (),
) -> BetaFilterResult:
    """Betas `platform` accepts (deduplicated, order kept) and `body` without the dropped betas' fields."""
    rules = (table or default_betas()).for_platform(platform).rejected
    out: list[str] = []
    dropped: list[str] = []
    replaced: list[str] = []
    fields: list[str] = []
    for raw in betas:
        beta = raw.strip()
        if not beta:
            continue
        if beta in extra_drop:
            dropped.append(beta)
            _log_drop(platform, beta, None)
            continue
        rule = rules.get(beta)
        if rule is not None:
            if rule.replace_with:
                # The platform knows the feature under its own name: keep the body fields.
                _log_drop(platform, beta, rule.replace_with)
                replaced.append(beta)
                beta = rule.replace_with
            else:
                dropped.append(beta)
                fields.extend(rule.fields)
                _log_drop(platform, beta, None)
                continue
        if beta not in out:
            out.append(beta)
    if not fields:
        return BetaFilterResult(out, body, False, tuple(dropped), tuple(replaced))
    present = [f for f in fields if f in body]
    if not present:
        return BetaFilterResult(out, body, False, tuple(dropped), tuple(replaced))
    copy = dict(body)
    for name in present:
        copy.pop(name, None)
    return BetaFilterResult(out, copy, True, tuple(dropped), tuple(replaced))


def _log_drop(platform: str, beta: str, replacement: str | None) -> None:
    key = (platform, beta)
    if key in _logged:
        return
    _logged.add(key)
    if replacement:
        log.warning("replacing beta %s with %s: %s rejects it", beta, replacement, platform)
    else:
        log.warning("dropping beta %s: %s rejects it", beta, platform)
