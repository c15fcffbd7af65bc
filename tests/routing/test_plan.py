"""Plans: ordering, residency, affinity and the failover walk, without any network."""

import asyncio
import collections
import random

import pytest

from cloudgate.catalog import default_catalog
from cloudgate.config.settings import Settings
from cloudgate.governance.types import Principal
from cloudgate.protocol.errors import GatewayError
from cloudgate.protocol.messages import MessagesCall, Operation
from cloudgate.routing import Router
from cloudgate.routing.health import Outcome

SONNET = "claude-sonnet-4-5-20250929"


def _router(deployments: list[dict], **routing: object) -> Router:
    settings = Settings(routing={"deployments": deployments, **routing}, vertex={"project_id": "p"})
    return Router(settings, default_catalog(), rng=random.Random(3))


def _call(body: dict | None = None, session: str | None = None) -> MessagesCall:
    call = MessagesCall(Operation.MESSAGES, SONNET, body or {"messages": [{"role": "user", "content": "hi"}]})
    if session:
        call.passthrough_headers["x-claude-code-session-id"] = session
    return call


def _names(router: Router, call: MessagesCall | None = None, principal: Principal | None = None) -> list[str]:
    return [d.name for d, _ in router.plan(call or _call(), principal).candidates]


def test_cheapest_first_within_a_priority_and_priority_before_cost():
    router = _router([
        {"provider": "vertex", "region": "us-east5"},
        {"provider": "vertex", "region": "global"},
        {"provider": "bedrock", "region": "us-east-1", "priority": 1},
    ])  # fmt: skip
    assert _names(router) == ["vertex/global", "vertex/us-east5", "bedrock/us-east-1"]
    by_weight = _router(
        [{"provider": "vertex", "region": "us-east5"}, {"provider": "vertex", "region": "global"}],
        order="weight",
    )
    firsts = collections.Counter(_names(by_weight)[0] for _ in range(200))
    assert set(firsts) == {"vertex/us-east5", "vertex/global"}


def test_weights_share_traffic_among_equals():
    router = _router([
        {"provider": "vertex", "region": "us-east5", "weight": 3},
        {"provider": "vertex", "region": "europe-west1", "weight": 1},
    ])  # fmt: skip
    firsts = collections.Counter(_names(router)[0] for _ in range(2000))
    assert 0.68 < firsts["vertex/us-east5"] / 2000 < 0.82


def test_team_provider_preference_comes_before_priority():
    router = _router([{"provider": "vertex", "region": "global"}, {"provider": "bedrock", "priority": 5}])
    principal = Principal(key_id="k", key_prefix="k", preferred_providers=("bedrock",))
    assert _names(router, principal=principal)[0] == "bedrock/us-east-1"


def test_residency_keeps_only_allowed_places_and_refuses_when_none_is_left():
    router = _router([
        {"provider": "vertex", "region": "global"},
        {"provider": "vertex", "region": "us-east5"},
        {"provider": "vertex", "region": "europe-west1"},
        {"provider": "bedrock", "region": "eu-west-1"},
        {"provider": "bedrock", "region": "eu-west-1", "inference_profile": "global"},
    ])  # fmt: skip
    eu = Principal(key_id="k", key_prefix="k", allowed_regions=(frozenset({"eu"}),))
    assert sorted(_names(router, principal=eu)) == ["bedrock/eu-west-1", "vertex/europe-west1"]
    both = Principal(
        key_id="k", key_prefix="k", allowed_regions=(frozenset({"eu"}), frozenset({"europe-west1"}))
    )
    assert _names(router, principal=both) == ["vertex/europe-west1"]
    asia = Principal(key_id="k", key_prefix="k", allowed_regions=(frozenset({"apac"}),))
    with pytest.raises(GatewayError) as err:
        router.plan(_call(), asia)
    assert err.value.status == 403 and "apac" in err.value.message


def test_gateway_wide_residency_applies_to_every_caller():
    router = _router(
        [{"provider": "vertex", "region": "global"}, {"provider": "vertex", "region": "europe-west1"}],
        allowed_regions=["eu"],
    )
    assert _names(router) == ["vertex/europe-west1"]


def test_a_model_nobody_serves_is_a_404():
    router = _router([{"provider": "vertex", "region": "global", "models": ["claude-haiku-4-5"]}])
    with pytest.raises(GatewayError) as err:
        router.plan(_call())
    assert err.value.status == 404 and err.value.error_type == "not_found_error"


def test_a_session_sticks_to_the_deployment_that_served_it():
    router = _router([
        {"provider": "vertex", "region": "us-east5"},
        {"provider": "vertex", "region": "europe-west1"},
    ])  # fmt: skip
    plan = router.plan(_call(session="s1"))
    second = plan.candidates[1][0]
    attempt = asyncio.run(_take(plan, 2))  # the first failed, the second served
    assert attempt.deployment is second
    for _ in range(20):
        assert _names(router, _call(session="s1"))[0] == second.name


def test_thinking_conversations_stay_with_their_provider():
    router = _router([{"provider": "vertex", "region": "global"}, {"provider": "bedrock", "priority": 1}])
    body = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}]},
            {"role": "user", "content": "more"},
        ]
    }
    plan = router.plan(_call(body, session="t1"))
    asyncio.run(_take(plan, 1))
    assert [d.provider for d, _ in router.plan(_call(body, session="t1")).candidates] == ["vertex"]
    plain = {"messages": [{"role": "user", "content": "q"}]}
    assert len(router.plan(_call(plain, session="t1")).candidates) == 2


async def _take(plan, n: int):
    """Fail the first n-1 attempts with a 529 and let the n-th succeed."""
    for _ in range(n - 1):
        attempt = await plan.next()
        assert plan.failed(attempt, GatewayError(529, "busy", error_type="overloaded_error"))
    attempt = await plan.next()
    plan.finished(attempt, Outcome.SUCCESS, 200)
    return attempt


def test_the_walk_stops_at_errors_no_deployment_can_fix():
    router = _router(
        [{"provider": "vertex", "region": "global"}, {"provider": "vertex", "region": "us-east5"}]
    )
    plan = router.plan(_call())

    async def walk() -> None:
        attempt = await plan.next()
        assert not plan.failed(attempt, GatewayError(400, "bad", error_type="invalid_request_error"))

    asyncio.run(walk())
    assert len(plan.attempts) == 1


def test_when_every_attempt_fails_the_most_telling_error_comes_back():
    router = _router(
        [{"provider": "vertex", "region": "global"}, {"provider": "vertex", "region": "us-east5"}],
        max_attempts=2,
    )
    plan = router.plan(_call())

    async def walk() -> GatewayError:
        first = await plan.next()
        plan.failed(
            first, GatewayError(429, "quota", error_type="rate_limit_error", headers={"retry-after": "9"})
        )
        second = await plan.next()
        assert not plan.failed(second, GatewayError(404, "not here", error_type="not_found_error"))
        with pytest.raises(GatewayError) as err:
            await plan.next()
        return err.value

    err = asyncio.run(walk())
    assert err.status == 429 and "after 2 attempts" in err.message


def test_credential_failures_skip_deployments_sharing_those_credentials():
    router = _router([
        {"provider": "vertex", "region": "global"},
        {"provider": "vertex", "region": "us-east5"},
        {"provider": "vertex", "region": "europe-west1", "credentials_file": "/other.json", "priority": 1},
    ])  # fmt: skip
    plan = router.plan(_call())

    async def walk() -> str:
        attempt = await plan.next()
        assert plan.failed(attempt, GatewayError(403, "denied", error_type="permission_error"))
        return (await plan.next()).deployment.name

    assert asyncio.run(walk()) == "vertex/europe-west1"


def test_going_round_again_waits_the_backoff():
    router = _router(
        [{"provider": "vertex", "region": "global"}],
        max_attempts=3,
        backoff_initial=0.01,
        backoff_max=0.02,
        cooldown_failures=10,
    )
    plan = router.plan(_call())

    async def walk() -> int:
        for _ in range(2):
            attempt = await plan.next()
            plan.failed(attempt, GatewayError(503, "down", error_type="overloaded_error"))
        attempt = await plan.next()
        plan.finished(attempt, Outcome.SUCCESS, 200)
        return len(plan.attempts)

    assert asyncio.run(walk()) == 3
    assert plan.backoff.waited > 0


def test_a_deployment_at_its_requests_per_minute_passes_traffic_on():
    router = _router([
        {"provider": "vertex", "region": "global", "rpm": 3},
        {"provider": "vertex", "region": "us-east5"},
    ])  # fmt: skip

    async def serve() -> str:
        plan = router.plan(_call())
        attempt = await plan.next()
        plan.finished(attempt, Outcome.SUCCESS, 200)
        return attempt.deployment.name

    served = [asyncio.run(serve()) for _ in range(5)]
    assert served == ["vertex/global"] * 3 + ["vertex/us-east5"] * 2
