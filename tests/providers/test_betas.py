"""Beta filtering per platform: drops, replacements, body fields, logging once."""

from __future__ import annotations

import logging

import pytest

from cloudgate.catalog.betas import BetaTable
from cloudgate.providers import betas as betas_module
from cloudgate.providers.betas import filter_betas


@pytest.fixture(autouse=True)
def _fresh_log_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(betas_module, "_logged", set())


def test_accepted_betas_pass_in_order_without_duplicates() -> None:
    body = {"max_tokens": 10}
    res = filter_betas(
        ["interleaved-thinking-2025-05-14", " context-1m-2025-08-07", "interleaved-thinking-2025-05-14", ""],
        body,
        "vertex",
    )
    assert res.betas == ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]
    assert res.body is body
    assert not res.body_changed
    assert res.dropped == ()


def test_unknown_betas_pass_through() -> None:
    # Only the table's rejected betas go: a beta newer than the table is the upstream's to judge.
    res = filter_betas(["brand-new-2027-01-01"], {}, "vertex")
    assert res.betas == ["brand-new-2027-01-01"]


def test_context_management_is_dropped_with_its_field_on_a_copy() -> None:
    body = {"max_tokens": 10, "context_management": {"edits": []}, "messages": []}
    res = filter_betas(["claude-code-20250219", "context-management-2025-06-27"], body, "vertex")
    assert res.betas == ["claude-code-20250219"]
    assert res.body_changed
    assert "context_management" not in res.body
    assert res.body == {"max_tokens": 10, "messages": []}
    assert "context_management" in body  # the caller's body is untouched
    assert res.dropped == ("context-management-2025-06-27",)


def test_dropped_beta_without_its_field_leaves_the_body_alone() -> None:
    body = {"max_tokens": 10}
    res = filter_betas(["context-management-2025-06-27"], body, "vertex")
    assert res.betas == []
    assert res.body is body
    assert not res.body_changed


def test_replaced_beta_takes_the_platform_name_and_dedupes() -> None:
    res = filter_betas(
        ["advanced-tool-use-2025-11-20", "tool-search-tool-2025-10-19", "effort-2025-11-24"], {}, "vertex"
    )
    assert res.betas == ["tool-search-tool-2025-10-19", "effort-2025-11-24"]
    assert res.dropped == ()


def test_extra_drop_and_other_platforms() -> None:
    res = filter_betas(["a", "b", "context-management-2025-06-27"], {}, "vertex", extra_drop=("b",))
    assert res.betas == ["a"]
    assert res.dropped == ("b", "context-management-2025-06-27")
    # A platform the table does not name rejects nothing.
    assert filter_betas(["context-management-2025-06-27"], {}, "anthropic").betas == [
        "context-management-2025-06-27"
    ]


def test_custom_table() -> None:
    table = BetaTable.from_data({"vertex": {"rejected": [{"beta": "x", "fields": ["f", "g"]}]}})
    res = filter_betas(["x", "y"], {"f": 1, "h": 2}, "vertex", table)
    assert res.betas == ["y"]
    assert res.body == {"h": 2}


def test_each_drop_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cloudgate.providers"):
        for _ in range(3):
            filter_betas(["files-api-2025-04-14", "oauth-2025-04-20"], {}, "vertex")
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("dropping beta files-api-2025-04-14: vertex rejects it") == 1
    assert messages.count("dropping beta oauth-2025-04-20: vertex rejects it") == 1
