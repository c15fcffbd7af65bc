from cloudgate.catalog import default_catalog
from cloudgate.config import load_settings
from cloudgate.protocol.messages import MessagesCall, Operation, WireFormat
from cloudgate.routing import ONE_M_BETA, Router


def _router(**env: str) -> Router:
    return Router(load_settings(env={"ANTHROPIC_VERTEX_PROJECT_ID": "proj", **env}), default_catalog())


def _call(
    model: str, frontdoor: WireFormat = WireFormat.ANTHROPIC, region: str | None = None
) -> MessagesCall:
    return MessagesCall(Operation.MESSAGES, model, {}, frontdoor=frontdoor, client_region=region)


def test_anthropic_ids_become_vertex_ids_in_the_default_region():
    target = _router(CLOUD_ML_REGION="global").route(_call("claude-sonnet-4-5-20250929"))
    assert (target.provider, target.model, target.region, target.project) == (
        "vertex",
        "claude-sonnet-4-5@20250929",
        "global",
        "proj",
    )


def test_region_override_per_model():
    router = _router(CLOUD_ML_REGION="global", VERTEX_REGION_CLAUDE_3_5_HAIKU="us-east5")
    assert router.route(_call("claude-3-5-haiku-20241022")).region == "us-east5"
    assert router.route(_call("claude-haiku-4-5")).region == "global"


def test_family_aliases_follow_the_default_model_variables():
    router = _router()
    assert router.route(_call("sonnet")).model == "claude-sonnet-4-6"
    router = _router(ANTHROPIC_DEFAULT_HAIKU_MODEL="claude-haiku-4-5@20251001", ANTHROPIC_MODEL="haiku")
    assert router.route(_call("haiku")).model == "claude-haiku-4-5@20251001"
    assert router.route(_call("default")).model == "claude-haiku-4-5@20251001"


def test_one_m_suffix_adds_the_beta_once():
    router = _router(ANTHROPIC_DEFAULT_SONNET_MODEL="claude-sonnet-4-5-20250929[1m]")
    call = _call("sonnet")
    assert router.route(call).model == "claude-sonnet-4-5@20250929"
    assert call.betas == [ONE_M_BETA]
    call = _call("claude-sonnet-4-20250514[1m]")
    call.betas.append(ONE_M_BETA)
    router.route(call)
    assert call.betas == [ONE_M_BETA]


def test_unknown_models_pass_through():
    assert _router().route(_call("claude-opus-5-5")).model == "claude-opus-5-5"


def test_client_region_counts_only_when_configured():
    call = _call("claude-opus-4-6", WireFormat.VERTEX, region="europe-west1")
    assert _router(CLOUD_ML_REGION="global").route(call).region == "global"
    settings = load_settings(
        env={"ANTHROPIC_VERTEX_PROJECT_ID": "p"}, overrides={"vertex": {"honor_client_region": True}}
    )
    assert Router(settings, default_catalog()).route(call).region == "europe-west1"


def test_no_configured_project_leaves_it_to_the_credentials():
    assert Router(load_settings(env={}), default_catalog()).route(_call("claude-opus-4-6")).project is None


def test_alias_cycles_terminate():
    settings = load_settings(
        env={"ANTHROPIC_VERTEX_PROJECT_ID": "p"}, overrides={"models": {"aliases": {"a": "b", "b": "a"}}}
    )
    model, _ = Router(settings, default_catalog()).resolve_model("a")
    assert model in {"a", "b"}


def test_bedrock_targets_use_inference_profiles_from_the_region():
    router = Router(
        load_settings(env={"CLOUDGATE_PROVIDER": "bedrock", "AWS_REGION": "eu-west-1"}), default_catalog()
    )
    target = router.route(_call("claude-sonnet-4-5@20250929", WireFormat.VERTEX))
    assert (target.provider, target.model, target.region) == (
        "bedrock",
        "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "eu-west-1",
    )
    # A Bedrock caller's own profile prefix is re-derived for the gateway's region; ARNs stay.
    assert (
        router.route(_call("us.anthropic.claude-opus-5-5", WireFormat.BEDROCK)).model
        == "eu.anthropic.claude-opus-5-5"
    )
    arn = "arn:aws:bedrock:us-east-2:111122223333:application-inference-profile/abc"
    assert router.route(_call(arn, WireFormat.BEDROCK)).model == arn
    none = Router(
        load_settings(
            env={"CLOUDGATE_PROVIDER": "bedrock"}, overrides={"bedrock": {"inference_profile": "none"}}
        ),
        default_catalog(),
        bedrock_region="us-west-2",
    )
    target = none.route(_call("claude-haiku-4-5"))
    assert (target.model, target.region) == ("anthropic.claude-haiku-4-5-20251001-v1:0", "us-west-2")


def test_anthropic_targets_use_anthropic_ids():
    router = Router(load_settings(env={"CLOUDGATE_PROVIDER": "anthropic"}), default_catalog())
    assert router.route(_call("claude-sonnet-4-5@20250929")).model == "claude-sonnet-4-5-20250929"
    assert router.route(_call("us.anthropic.claude-opus-5-5")).model == "claude-opus-5-5"
    assert router.route(_call("sonnet")).provider == "anthropic"


def test_bedrock_ids_reach_vertex_in_vertex_form():
    router = _router()
    assert router.route(_call("us.anthropic.claude-haiku-4-5-20251001-v1:0", WireFormat.BEDROCK)).model == (
        "claude-haiku-4-5@20251001"
    )
    assert (
        router.route(_call("global.anthropic.claude-opus-5-5", WireFormat.BEDROCK)).model == "claude-opus-5-5"
    )
