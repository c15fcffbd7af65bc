"""Redaction: keys, tokens and credentials become `[REDACTED]` before anything is kept.

Applied off the request path, by the activity log's writer, to the headers it keeps, to bodies
and to error messages. What is always caught: credential headers (by name), the literal values of
the credentials this request presented and of the gateway's configured secrets, and these shapes
wherever they appear: Anthropic keys, gateway keys, Google OAuth access and refresh tokens, AWS
access key ids and secret keys (next to a name that says so), JWTs, PEM private keys, GitHub and
Slack tokens, `Bearer` tokens and values written after a credential header's name. Configured
`redact_patterns` are added to these, compiled once.

Shapes with a distinctive prefix (sk-ant-, ghp_, xoxb-, ya29.) are caught even when cut short,
say by an echo or the body limit; a secret split across two stream events (the model writing it
out in pieces) is not caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

REDACTED = "[REDACTED]"

# Headers whose values are credentials: kept by name only, so a reader sees how a caller
# authenticated without seeing with what.
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-goog-api-key",
        "x-amz-security-token",
        "cookie",
        "set-cookie",
    }
)
# The caller headers worth keeping (besides credential headers): what client, which API
# version and betas, which Claude Code session and agent. Everything else is dropped.
KEPT_HEADERS = frozenset(
    {"user-agent", "content-type", "content-length", "accept", "x-app", "x-forwarded-for"}
)
KEPT_PREFIXES = ("anthropic-", "x-claude-code-", "x-stainless-", "x-amzn-bedrock-")

# The shortest literal secret replaced verbatim: shorter ones would blank ordinary words.
MIN_LITERAL = 8

_CREDENTIAL_NAMES = r"authorization|proxy-authorization|x-api-key|x-goog-api-key|x-amz-security-token"
# A separator between a name and its value, in plain text or inside a JSON string (escaped quotes).
_SEP = r"""\\?["']?\s*[:=]\s*\\?["']?"""

# (pattern, replacement): the first keep a name or scheme and blank what follows it; PEM
# blocks go first because their base64 could otherwise be half-matched by the shapes below.
_CONTEXTUAL: tuple[tuple[str, str], ...] = (
    (r"(?s)-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----(?:.*?-----END[A-Z0-9 ]*PRIVATE KEY-----|[^\"]*)", REDACTED),
    (
        r"(?i)(aws_?secret_?(?:access_?)?key|secret_?access_?key)(" + _SEP + r")"
        r"[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])",
        r"\1\2" + REDACTED,
    ),
    (
        r"(?i)\b(" + _CREDENTIAL_NAMES + r")(" + _SEP + r")((?:bearer|basic|token)\s+)?[^\s\"'\\,;]+",
        r"\1\2\3" + REDACTED,
    ),
    (r"(?i)\b((?:set-)?cookie)(" + _SEP + r")[^\"'\r\n\\]+", r"\1\2" + REDACTED),
    (r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{16,}", r"\1" + REDACTED),
)
# Shapes replaced whole, as one alternation so a body is scanned once for all of them.
_SHAPES = (
    r"\bsk-ant-[A-Za-z0-9_-]{8,}",  # Anthropic API keys (sk-ant-api03-..., sk-ant-oat01-...)
    r"\bcg-[A-Za-z0-9_-]{30,}",  # gateway keys: cg- and 40 base62 characters
    r"\bya29\.[A-Za-z0-9_.-]{10,}",  # Google OAuth access tokens
    r"(?<![\w/])1//[A-Za-z0-9_-]{20,}",  # Google OAuth refresh tokens
    r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",  # AWS access key ids (long-term and temporary)
    r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWTs
    r"\b(?:gh[pousr]_[A-Za-z0-9]{8,}|github_pat_[A-Za-z0-9_]{8,})",  # GitHub tokens
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}",  # Slack tokens
)


_MEMO_MAX_CHARS = 512
_MEMO_ENTRIES = 4096


class Redactor:
    """Replaces secrets in text and keeps a redacted subset of headers; thread-safe, build once."""

    def __init__(self, patterns: Iterable[str] = (), secrets: Iterable[str | None] = ()) -> None:
        self._contextual = [(re.compile(p), r) for p, r in _CONTEXTUAL]
        self._shapes = re.compile("|".join(_SHAPES))
        # Each configured pattern on its own: one may carry flags, such as (?i), of its own.
        self._extra = [re.compile(p) for p in patterns]
        self._secrets = literal_secrets(secrets)
        self._memo: dict[str, str] = {}  # short_text's results (dict operations are thread-safe)

    def text(self, value: str, secrets: Iterable[str] = ()) -> str:
        """`value` with every secret it holds replaced by `[REDACTED]`."""
        for secret in (*secrets, *self._secrets):
            if secret in value:
                value = value.replace(secret, REDACTED)
        for pattern, replacement in self._contextual:
            value = pattern.sub(replacement, value)
        for pattern in self._extra:
            value = pattern.sub(REDACTED, value)
        return self._shapes.sub(REDACTED, value)

    def headers(
        self,
        headers: Mapping[str, str],
        secrets: Iterable[str] = (),
        credential_headers: frozenset[str] = CREDENTIAL_HEADERS,
    ) -> dict[str, str]:
        """The headers worth keeping: credential headers by name only, the rest redacted."""
        kept: dict[str, str] = {}
        for name, value in headers.items():
            if name in credential_headers:
                kept[name] = REDACTED
            elif name in KEPT_HEADERS or name.startswith(KEPT_PREFIXES):
                kept[name] = self.short_text(value, secrets)
        return kept

    def short_text(self, value: str, secrets: Iterable[str] = ()) -> str:
        """`text(value, secrets)`, remembered for short values without the request's own secrets.

        Header values repeat from request to request (user agents, versions, betas), and
        running every pattern over each costs more than the rest of an activity entry.
        """
        if len(value) > _MEMO_MAX_CHARS or any(secret in value for secret in secrets):
            return self.text(value, secrets)
        done = self._memo.get(value)
        if done is None:
            done = self.text(value)
            if len(self._memo) >= _MEMO_ENTRIES:
                self._memo.clear()
            self._memo[value] = done
        return done


def literal_secrets(values: Iterable[str | None]) -> tuple[str, ...]:
    """The values long enough to replace verbatim, longest first (so no secret is half-replaced)."""
    found = {v.strip() for v in values if v and len(v.strip()) >= MIN_LITERAL}
    return tuple(sorted(found, key=len, reverse=True))


def presented_secrets(headers: Mapping[str, str], credential_headers: frozenset[str]) -> tuple[str, ...]:
    """The credentials a request carried in its headers (with and without a `Bearer ` scheme)."""
    values: list[str] = []
    for name in credential_headers:
        value = headers.get(name)
        if value:
            values.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.lower() in ("bearer", "basic", "token"):
                values.append(token)
    return literal_secrets(values)
