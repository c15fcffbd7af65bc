"""The shared vocabulary: region and provider lists as keys and teams may carry them, new defaults."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cloudgate.governance.types import Principal, SpendEntry, provider_list, region_list


def test_region_list_accepts_regions_and_geographies_and_drops_repeats() -> None:
    assert region_list(["eu", "europe-west1", "eu-west-1", "us", "global", "eu"]) == [
        "eu",
        "europe-west1",
        "eu-west-1",
        "us",
        "global",
    ]
    assert region_list(["a" * 64]) == ["a" * 64]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "at least one region"),
        ([""], "cannot be empty"),
        (["EU"], "'EU' is not a region"),
        (["europe west1"], "'europe west1' is not a region"),
        (["eu_west_1"], "is not a region"),
        (["eu/west"], "is not a region"),
        (["a" * 65], "at most 64"),
        (["eu", "Us"], "'Us'"),
    ],
)
def test_region_list_refuses(values: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        region_list(values)


def test_provider_list_keeps_the_order_of_preference() -> None:
    assert provider_list(["bedrock", "vertex", "bedrock"]) == ["bedrock", "vertex"]
    assert provider_list(["anthropic"]) == ["anthropic"]


@pytest.mark.parametrize(
    ("values", "message"),
    [([], "at least one provider"), (["azure"], "'azure' is not a provider"), (["Vertex"], "Vertex")],
)
def test_provider_list_refuses(values: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        provider_list(values)


def test_new_fields_default_so_existing_constructors_still_work() -> None:
    principal = Principal("key_1", "cg-abc")
    assert (principal.allowed_regions, principal.preferred_providers) == ((), ())
    entry = SpendEntry("r1", datetime(2025, 1, 1, tzinfo=UTC), "key_1")
    assert (entry.deployment, entry.attempts) == ("", 1)
