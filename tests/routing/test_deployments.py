import pytest

from cloudgate.catalog import default_catalog
from cloudgate.config.settings import Settings
from cloudgate.routing.deployments import Deployment, DeploymentTable, Place, account_key, geography


def _table(**settings: object) -> DeploymentTable:
    return DeploymentTable(Settings(**settings), default_catalog(), bedrock_region="us-east-1")


@pytest.mark.parametrize(
    ("region", "geo"),
    [
        ("us-east5", "us"),
        ("us-east-1", "us"),
        ("europe-west1", "eu"),
        ("eu-west-1", "eu"),
        ("asia-southeast1", "apac"),
        ("ap-northeast-1", "apac"),
        ("us-gov-west-1", "us-gov"),
        ("global", "global"),
        ("eu", "eu"),
    ],
)
def test_geography(region: str, geo: str) -> None:
    assert geography(region) == geo


def test_places_and_allow_lists():
    def place(**kw: object) -> Place:
        return Deployment(name="x", account="x", **kw).place  # type: ignore[arg-type]

    assert place(provider="vertex", region="europe-west1") == Place("europe-west1", exact=True)
    assert place(provider="vertex", region="eu") == Place("eu", exact=False)
    assert place(provider="vertex", region="global") == Place("global", exact=False)
    assert place(provider="bedrock", region="eu-west-1") == Place("eu", exact=False)  # auto profile
    assert place(provider="bedrock", region="eu-west-1", inference_profile="none") == Place(
        "eu-west-1", exact=True
    )
    assert place(provider="anthropic").name == "global"
    eu = frozenset({"eu"})
    assert Place("europe-west4", exact=True).allowed_by(eu)
    assert Place("eu", exact=False).allowed_by(eu)
    assert not Place("global", exact=False).allowed_by(eu)
    assert not Place("us-east5", exact=True).allowed_by(eu)
    assert not Place("eu", exact=False).allowed_by({"europe-west1"}), "a geography may leave one region"
    assert Place("jp", exact=False).allowed_by({"apac"})


def test_derived_same_geography_keeps_to_the_configured_geography():
    table = _table(vertex={"region": "us-east5", "project_id": "p"})
    names = [(d.name, d.priority) for d in table.candidates("claude-sonnet-4-5-20250929")]
    assert names[0] == ("vertex/p/us-east5", 0)
    assert ("vertex/p/us", 1) in names
    assert all(not n.startswith(("vertex/p/europe", "vertex/p/eu", "vertex/p/global")) for n, _ in names)


def test_derived_from_global_may_use_any_listed_location_and_none_means_none():
    table = _table(vertex={"region": "global"})
    regions = {d.region for d in table.candidates("claude-sonnet-4-5-20250929")}
    assert {"global", "us-east5", "europe-west1"} <= regions
    table = _table(vertex={"region": "global"}, routing={"fallback": "none"})
    assert [d.region for d in table.candidates("claude-sonnet-4-5-20250929")] == ["global"]


def test_derived_region_overrides_decide_the_primary():
    table = _table(vertex={"region": "global", "region_overrides": {"claude-3-5-haiku": "us-east5"}})
    assert table.candidates("claude-3-5-haiku-20241022")[0].region == "us-east5"


def test_fallback_providers_follow_the_main_one():
    table = _table(
        provider="vertex",
        vertex={"region": "us-east5"},
        routing={"fallback": "none", "fallback_providers": ["bedrock", "anthropic"]},
    )
    found = [(d.provider, d.priority) for d in table.candidates("claude-sonnet-4-5-20250929")]
    assert found == [("vertex", 0), ("bedrock", 10), ("anthropic", 20)]


def test_bedrock_derived_any_adds_the_global_profile():
    table = _table(provider="bedrock", routing={"fallback": "any"})
    found = table.candidates("claude-sonnet-4-5-20250929")
    assert [d.place.name for d in found] == ["us", "global"]
    assert (
        found[1]
        .upstream_model("claude-sonnet-4-5-20250929", default_catalog())
        .startswith("global.anthropic.")
    )


def test_explicit_deployments_filter_models_and_override_ids():
    table = _table(
        vertex={"region": "us-east5"},
        routing={
            "deployments": [
                {
                    "provider": "vertex",
                    "region": "global",
                    "models": ["claude-sonnet-4-5", "claude-haiku-4-5@20251001"],
                },
                {"provider": "vertex", "region": "europe-west1"},
                {"name": "aws", "provider": "bedrock", "model_ids": {"claude-opus-4-1": "arn:aws:bedrock:x"}},
            ]
        },
    )
    catalog = default_catalog()
    assert [d.name for d in table.candidates("claude-haiku-4-5-20251001")] == [
        "vertex/global", "vertex/europe-west1", "aws",
    ]  # fmt: skip
    opus = table.candidates("claude-opus-4-1-20250805")
    assert "vertex/global" not in [d.name for d in opus]
    aws = table.get("aws")
    assert aws is not None and aws.region == "us-east-1"
    assert aws.upstream_model("claude-opus-4-1-20250805", catalog) == "arn:aws:bedrock:x"
    assert aws.upstream_model("claude-haiku-4-5-20251001", catalog).startswith(
        "us.anthropic.claude-haiku-4-5"
    )


def test_vertex_deployments_without_a_model_list_follow_the_catalog():
    table = _table(routing={"deployments": [{"provider": "vertex", "region": "asia-east1"}]})
    assert table.candidates("claude-3-5-haiku-20241022") == ()


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError, match="two deployments"):
        _table(
            routing={
                "deployments": [
                    {"provider": "vertex", "region": "global"},
                    {"provider": "vertex", "region": "global"},
                ]
            }
        )


def test_account_keys_share_providers_only_when_credentials_match():
    from cloudgate.config.settings import DeploymentSettings

    a = DeploymentSettings(provider="bedrock", region="us-east-1")
    b = DeploymentSettings(provider="bedrock", region="eu-west-1")
    c = DeploymentSettings(provider="bedrock", region="eu-west-1", profile="eu-account")
    assert account_key(a) == account_key(b) == "bedrock"
    assert account_key(c) != account_key(a)
