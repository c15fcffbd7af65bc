import pytest

from cloudgate.catalog import Catalog, default_catalog
from cloudgate.catalog.catalog import CatalogError


def test_every_spelling_finds_the_entry():
    c = default_catalog()
    for name in (
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5",
        "claude-sonnet-4-5@20250929",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
    ):
        entry = c.lookup(name)
        assert entry is not None and entry.id == "claude-sonnet-4-5-20250929", name


def test_vertex_ids_and_pass_through():
    c = default_catalog()
    assert c.vertex_id("claude-opus-4-1-20250805") == "claude-opus-4-1@20250805"
    assert c.vertex_id("claude-opus-4-6") == "claude-opus-4-6"
    assert c.vertex_id("claude-opus-5-5") == "claude-opus-5-5"  # unknown, undated: unchanged
    assert c.vertex_id("claude-nova-7-20280101") == "claude-nova-7@20280101"  # unknown, dated: Vertex form
    assert c.vertex_id("claude-nova-7@20280101") == "claude-nova-7@20280101"
    assert c.anthropic_id("claude-nova-7@20280101") == "claude-nova-7-20280101"


def test_regions_and_prices_from_the_protocol_notes():
    c = default_catalog()
    haiku35 = c.lookup("claude-3-5-haiku@20241022")
    assert haiku35 is not None and not haiku35.supports_vertex_global
    assert haiku35.offered_on_vertex_in("us-east5")
    sonnet45 = c.lookup("claude-sonnet-4-5")
    assert sonnet45 is not None and sonnet45.supports_vertex_global
    assert sonnet45.vertex_regional_premium == pytest.approx(0.10)
    assert sonnet45.long_context is not None and sonnet45.long_context.threshold == 200_000
    opus41 = c.lookup("claude-opus-4-1")
    assert opus41 is not None and opus41.prices.output == 75 and opus41.vertex_regional_premium == 0
    assert c.family_default("sonnet") == "claude-sonnet-4-6"


def test_a_catalog_file_replaces_the_data(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n  - id: claude-next-1\n    vertex: claude-next-1@20300101\n"
        "    prices: {input: 1, output: 2}\n    vertex_regions: [global]\n"
    )
    c = Catalog.from_file(path)
    assert c.vertex_id("claude-next-1") == "claude-next-1@20300101"


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"models": "x"},
        {"models": [{"name": "no id"}]},
        {"models": [{"id": "m", "prices": {"input": 1}}]},
    ],
)
def test_malformed_catalogs_are_refused(data):
    with pytest.raises(CatalogError):
        Catalog.from_data(data)


def test_bedrock_on_demand_models_are_data():
    c = default_catalog()
    on_demand = {e.id for e in c.entries if e.bedrock_on_demand}
    assert on_demand == {
        "claude-opus-4-20250514",
        "claude-sonnet-4-20250514",
        "claude-3-7-sonnet-20250219",
        "claude-3-5-haiku-20241022",
        "claude-3-haiku-20240307",
    }
