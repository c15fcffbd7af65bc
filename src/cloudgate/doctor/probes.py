"""The cheap calls doctor makes: is the base URL there, and does each model answer.

A model is probed by counting the tokens of a one-word message, which costs nothing. Where
token counting is refused for reasons that say nothing about the model (the Vertex global
endpoint, reportedly; Bedrock for some ids), a message of at most one output token is sent
instead, the same call Claude Code makes, so the answer is the one Claude Code would get.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from cloudgate.catalog import Catalog
from cloudgate.doctor.credentials import Credentials
from cloudgate.doctor.explain import (
    Answer,
    Target,
    explain_anthropic,
    explain_bedrock,
    explain_connection,
    explain_vertex,
    parse_answer,
)
from cloudgate.doctor.model import Finding, Verdict
from cloudgate.providers.bedrock import model_path

TIMEOUT = (5.0, 30.0)  # connect, read
VERTEX_VERSION = "vertex-2023-10-16"
BEDROCK_VERSION = "bedrock-2023-05-31"
ANTHROPIC_VERSION = "2023-06-01"
_PROBE_MESSAGES = [{"role": "user", "content": "ping"}]
# Bedrock answers to count-tokens that are about the model or the caller, not about counting.
_BEDROCK_DEFINITE = ("AccessDeniedException", "ThrottlingException", "UnrecognizedClientException",
                     "InvalidSignatureException", "ExpiredTokenException",
                     "MissingAuthenticationTokenException")  # fmt: skip


@dataclass(slots=True)
class HttpAnswer:
    """A raw HTTP answer."""

    status: int
    headers: dict[str, str]
    body: bytes

    def answer(self) -> Answer:
        """The answer's error type and message, whatever the platform's shape."""
        return parse_answer(self.status, self.body, self.headers)

    def json(self) -> Any:
        """The body as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def post(url: str, body: dict[str, Any], creds: Credentials, region: str | None, **extra: str) -> HttpAnswer:
    """POST JSON with the credentials' headers (signed when they are AWS keys); raises on no answer."""
    data = json.dumps(body).encode()
    headers = {"content-type": "application/json", **extra}
    headers.update(creds.for_request("POST", url, data, region))
    resp = requests.post(url, data=data, headers=headers, timeout=TIMEOUT, allow_redirects=False)
    return HttpAnswer(resp.status_code, dict(resp.headers), resp.content)


def reach(url: str, *, platform: str, region: str | None) -> Finding:
    """Whether anything answers HTTP at `url` (any status will do: it proves DNS, TLS and TCP)."""
    try:
        resp = requests.get(url, timeout=TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        return explain_connection(exc, url, platform=platform, region=region)
    resp.close()
    return Finding(Verdict.OK, f"{url} answers (HTTP {resp.status_code}).", details={"url": url})


class _NoAnswer(Exception):
    """The request got no HTTP answer; `finding` says why."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


def _send(url: str, body: dict[str, Any], creds: Credentials, target: Target, **headers: str) -> HttpAnswer:
    try:
        return post(url, body, creds, target.region, **headers)
    except requests.RequestException as exc:
        raise _NoAnswer(explain_connection(exc, url, platform=target.platform, region=target.region)) from exc


def _counted(target: Target, got: HttpAnswer, field: str, what: str, details: dict[str, Any]) -> Finding:
    tokens = (got.json() or {}).get(field)
    where = f" at `{target.region}`" if target.region else ""
    return Finding(
        Verdict.OK, f"`{target.platform_id}`{where}: {what} ({tokens} input tokens).", details=details
    )


def _worked(target: Target, what: str, details: dict[str, Any]) -> Finding:
    where = f" at `{target.region}`" if target.region else ""
    return Finding(Verdict.OK, f"`{target.platform_id}`{where}: {what}.", details=details)


def _explained(finding: Finding, details: dict[str, Any]) -> Finding:
    finding.details = {**details, **finding.details}
    return finding


def probe(target: Target, base_url: str, creds: Credentials, catalog: Catalog) -> Finding:
    """Probe one model on its platform; a request that got no answer is explained as such."""
    try:
        if target.platform == "vertex":
            return _probe_vertex(target, base_url, creds, catalog)
        if target.platform == "bedrock":
            return _probe_bedrock(target, base_url, creds, catalog)
        return _probe_anthropic(target, base_url, creds)
    except _NoAnswer as exc:
        return exc.finding


def _probe_vertex(target: Target, base_url: str, creds: Credentials, catalog: Catalog) -> Finding:
    """count-tokens at the model's location; on `global`, a 1-token message if counting is refused."""
    region = target.region or "global"
    prefix = f"{base_url}/projects/{quote(target.project or '', safe='')}/locations/{quote(region, safe='')}"
    url = f"{prefix}/publishers/anthropic/models/count-tokens:rawPredict"
    body = {"anthropic_version": VERTEX_VERSION, "model": target.platform_id, "messages": _PROBE_MESSAGES}
    got = _send(url, body, creds, target)
    details: dict[str, Any] = {"url": url, "status": got.status, "probe": "count-tokens"}
    if got.status == 200:
        return _counted(target, got, "input_tokens", "count-tokens answered", details)
    if region == "global" and got.status in (400, 404):
        # count-tokens may be refused at global whatever the model (decision 0026): ask for
        # one output token the way Claude Code calls the model, and read that answer instead.
        url = f"{prefix}/publishers/anthropic/models/{quote(target.platform_id, safe='@')}:rawPredict"
        message = {"anthropic_version": VERTEX_VERSION, "max_tokens": 1, "messages": _PROBE_MESSAGES}
        got = _send(url, message, creds, target)
        details.update(url=url, status=got.status, probe="rawPredict max_tokens=1")
        if got.status == 200:
            return _worked(target, "a 1-token message worked (count-tokens is not served at global)", details)
    return _explained(explain_vertex(got.answer(), target, catalog), details)


def _probe_bedrock(target: Target, base_url: str, creds: Credentials, catalog: Catalog) -> Finding:
    """CountTokens for the model id; a 1-token InvokeModel when counting is refused for other reasons."""
    invoke = {"anthropic_version": BEDROCK_VERSION, "max_tokens": 1, "messages": _PROBE_MESSAGES}
    wrapped = {"input": {"invokeModel": {"body": base64.b64encode(json.dumps(invoke).encode()).decode()}}}
    url = base_url + model_path(target.platform_id, "count-tokens")
    got = _send(url, wrapped, creds, target)
    details: dict[str, Any] = {"url": url, "status": got.status, "probe": "count-tokens"}
    if got.status == 200:
        return _counted(target, got, "inputTokens", "CountTokens answered", details)
    answer = got.answer()
    definite = answer.error_type in _BEDROCK_DEFINITE or any(
        text in answer.message for text in ("on-demand throughput", "model identifier is invalid")
    )
    if not definite:
        url = base_url + model_path(target.platform_id, "invoke")
        got = _send(url, invoke, creds, target)
        details.update(url=url, status=got.status, probe="invoke max_tokens=1")
        if got.status == 200:
            return _worked(
                target, "a 1-token InvokeModel worked (CountTokens is not offered for it)", details
            )
        answer = got.answer()
    return _explained(explain_bedrock(answer, target, catalog), details)


def _probe_anthropic(target: Target, base_url: str, creds: Credentials) -> Finding:
    """`/v1/messages/count_tokens` for the model."""
    url = f"{base_url}/v1/messages/count_tokens"
    body = {"model": target.platform_id, "messages": _PROBE_MESSAGES}
    got = _send(url, body, creds, target, **{"anthropic-version": ANTHROPIC_VERSION})
    details: dict[str, Any] = {"url": url, "status": got.status, "probe": "count_tokens"}
    if got.status == 200:
        return _counted(target, got, "input_tokens", "count_tokens answered", details)
    return _explained(explain_anthropic(got.answer(), target), details)
