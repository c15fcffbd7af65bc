"""Scraping /metrics and reading samples back, for the observability tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Stack
from tests.gateway.test_app import post

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

SONNET = "claude-sonnet-4-5-20250929"
# Vertex first, then Bedrock, then the Anthropic API: a Vertex fault shows a failover.
DEPLOYMENTS = [
    {"provider": "vertex", "region": "us-east5"},
    {"provider": "bedrock", "region": "us-east-1", "priority": 1},
    {"provider": "anthropic", "priority": 2},
]


def routed(**routing: Any) -> dict[str, Any]:
    """Gateway settings routing over DEPLOYMENTS, with these routing options."""
    return {"routing": {"deployments": DEPLOYMENTS, **routing}}


def ask(
    stack: Stack,
    text: str = "Hello",
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> requests.Response:
    """A Messages call to Sonnet in the Anthropic format; `body` adds or replaces fields."""
    doc = {"model": SONNET, "max_tokens": 20, "messages": [{"role": "user", "content": text}], **body}
    return post(stack, "/v1/messages", doc, key=key, **(headers or {}))


def scrape(stack: Stack, key: str | None = None) -> Samples:
    """Every sample of the gateway's /metrics, keyed by (name, labels)."""
    headers = {"x-api-key": key} if key else {}
    resp = requests.get(stack.url + "/metrics", headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    return parse(resp.text)


def parse(text: str) -> Samples:
    """Samples of an exposition text, keyed by (name, labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample `name` with exactly these labels (0 when absent: counters start unexported)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of every `name` sample whose labels include these."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def series(samples: Samples, name: str) -> list[Mapping[str, str]]:
    """The label sets `name` has samples for."""
    return [dict(ls) for (n, ls) in samples if n == name]


def label_values(samples: Samples, label: str, names: Iterable[str] | None = None) -> set[str]:
    """Every value `label` takes across the samples (of `names`, if given)."""
    chosen = set(names) if names is not None else None
    return {v for (n, ls) in samples for k, v in ls if k == label and (chosen is None or n in chosen)}
