import random

import pytest

from cloudgate.config.settings import RoutingSettings
from cloudgate.protocol.errors import GatewayError
from cloudgate.routing.health import Outcome
from cloudgate.routing.retry import Backoff, classify, more_telling


@pytest.mark.parametrize(
    ("status", "etype", "outcome", "retry"),
    [
        (429, "rate_limit_error", Outcome.THROTTLED, True),
        (529, "overloaded_error", Outcome.THROTTLED, True),
        (503, "overloaded_error", Outcome.THROTTLED, True),
        (500, "api_error", Outcome.FAILED, True),
        (502, "api_error", Outcome.FAILED, True),
        (504, "timeout_error", Outcome.FAILED, True),
        (404, "not_found_error", Outcome.NOT_FOUND, True),
        (400, "invalid_request_error", Outcome.NEUTRAL, False),
        (413, "request_too_large", Outcome.NEUTRAL, False),
    ],
)
def test_classification(status: int, etype: str, outcome: Outcome, retry: bool) -> None:
    verdict = classify(GatewayError(status, "x", error_type=etype))
    assert (verdict.outcome, verdict.retry) == (outcome, retry)


def test_upstream_credential_failures_only_move_to_other_credentials():
    verdict = classify(GatewayError(403, "denied", error_type="permission_error"))
    assert verdict.retry and verdict.other_account


def test_retry_after_is_read():
    err = GatewayError(429, "slow down", error_type="rate_limit_error", headers={"retry-after": "3"})
    assert classify(err).retry_after == 3.0
    err.headers["retry-after"] = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert classify(err).retry_after is None


def test_the_caller_hears_of_throttling_before_a_missing_model():
    throttled = GatewayError(429, "x", error_type="rate_limit_error")
    missing = GatewayError(404, "x", error_type="not_found_error")
    first = (missing, classify(missing))
    assert more_telling((throttled, classify(throttled)), first)
    assert not more_telling(first, (throttled, classify(throttled)))


def test_backoff_is_capped_jittered_and_bounded_in_total():
    settings = RoutingSettings(backoff_initial=1, backoff_max=4, max_retry_wait=10)
    backoff = Backoff(settings, random.Random(7))
    waits = []
    while (wait := backoff.next_wait(None)) is not None:
        waits.append(wait)
    assert waits and all(0 <= w <= 4 for w in waits)
    assert sum(waits) <= 10


def test_backoff_honours_retry_after_unless_it_is_beyond_the_budget():
    settings = RoutingSettings(backoff_initial=0.1, backoff_max=1, max_retry_wait=5)
    backoff = Backoff(settings, random.Random(1))
    assert backoff.next_wait(3) == 3
    assert backoff.next_wait(30) is None
