"""Path templates with `{name}` placeholders, shared by the admin API's and the console's route tables."""

from __future__ import annotations


def match_path(template: str, segments: list[str]) -> dict[str, str] | None:
    """The path parameters if `segments` (a request path split at "/", decoded) fit `template`,
    else None; a placeholder takes one non-empty segment."""
    pattern = [s for s in template.split("/") if s]
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for want, got in zip(pattern, segments, strict=True):
        if want.startswith("{"):
            if not got:
                return None
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params
