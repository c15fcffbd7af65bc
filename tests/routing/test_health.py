from cloudgate.config.settings import RoutingSettings
from cloudgate.routing.health import HealthBoard, Outcome


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _board(**kw: object) -> tuple[HealthBoard, Clock]:
    clock = Clock()
    return HealthBoard(RoutingSettings(**kw), clock=clock), clock


def _fail(board: HealthBoard, entry, outcome=Outcome.FAILED, retry_after=None) -> None:
    board.acquire(entry, board.now())
    board.release(entry, outcome, "boom", retry_after)


def test_repeated_failures_cool_a_deployment_then_one_probe_reopens_it():
    board, clock = _board(cooldown_failures=3, cooldown_seconds=10)
    entry = board.get("vertex/global", "m")
    for _ in range(2):
        _fail(board, entry)
        assert board.usable(entry, clock.now)
    _fail(board, entry)
    assert entry.state(clock.now) == "cooling" and not board.usable(entry, clock.now)
    clock.now += 10.5
    assert entry.state(clock.now) == "half-open" and board.usable(entry, clock.now)
    board.acquire(entry, clock.now)  # the probe
    assert not board.usable(entry, clock.now), "only one probe at a time"
    board.release(entry, Outcome.SUCCESS)
    assert entry.state(clock.now) == "healthy" and entry.consecutive_failures == 0


def test_a_failed_probe_doubles_the_cooldown_up_to_the_cap():
    board, clock = _board(cooldown_failures=1, cooldown_seconds=10, cooldown_max=25)
    entry = board.get("d", "m")
    _fail(board, entry)
    assert entry.cooldown_until == clock.now + 10
    for expected in (20, 25, 25):
        clock.now = entry.cooldown_until + 0.1
        _fail(board, entry)
        assert entry.cooldown_seconds == expected
        assert entry.cooldown_until == clock.now + expected


def test_retry_after_holds_a_deployment_back_even_below_the_failure_threshold():
    board, clock = _board(cooldown_failures=5)
    entry = board.get("d", "m")
    _fail(board, entry, Outcome.THROTTLED, retry_after=7)
    assert not board.usable(entry, clock.now)
    clock.now += 7.1
    assert entry.state(clock.now) == "healthy"


def test_not_found_skips_only_that_model_for_a_while():
    board, clock = _board(not_found_seconds=60)
    entry = board.get("d", "claude-x")
    _fail(board, entry, Outcome.NOT_FOUND)
    assert entry.state(clock.now) == "not-offered"
    assert board.usable(board.get("d", "claude-y"), clock.now)
    assert entry.failures == 0, "a missing model is not a failing deployment"
    clock.now += 61
    assert board.usable(entry, clock.now)


def test_concurrency_halves_on_throttling_and_grows_back_one_per_success():
    board, clock = _board(max_concurrency=16, cooldown_failures=10)
    entry = board.get("d", "m")
    for _ in range(16):
        board.acquire(entry, clock.now)
    board.release(entry, Outcome.THROTTLED, "429")
    assert entry.limit == 8
    board.release(entry, Outcome.THROTTLED, "429")
    assert entry.limit == 8, "one burst of 429s within a second halves once"
    clock.now += 1.5
    board.release(entry, Outcome.THROTTLED, "429")
    assert entry.limit == 4
    while entry.in_flight:
        board.release(entry, Outcome.NEUTRAL)
    for _ in range(4):
        board.acquire(entry, clock.now)
    assert entry.state(clock.now) == "saturated" and not board.usable(entry, clock.now)
    for _ in range(4):
        board.release(entry, Outcome.SUCCESS)
    assert entry.limit == 8
    for _ in range(20):
        board.acquire(entry, clock.now)
        board.release(entry, Outcome.SUCCESS)
    assert entry.limit == 16, "never above the deployment's cap"


def test_throttling_far_below_the_cap_halves_what_was_in_flight():
    board, clock = _board(cooldown_failures=10)  # the default cap: 10,000
    entry = board.get("d", "m")
    for _ in range(40):
        board.acquire(entry, clock.now)
    board.release(entry, Outcome.THROTTLED, "429")
    assert entry.limit == 20


def test_neutral_outcomes_leave_health_alone():
    board, clock = _board(cooldown_failures=1)
    entry = board.get("d", "m")
    board.acquire(entry, clock.now)
    board.release(entry, Outcome.NEUTRAL)
    assert entry.state(clock.now) == "healthy" and entry.in_flight == 0 and entry.failures == 0


def test_snapshot_reports_every_pair():
    board, _ = _board()
    _fail(board, board.get("a", "m"))
    snap = board.snapshot()
    assert snap[0]["deployment"] == "a" and snap[0]["failures"] == 1 and snap[0]["last_error"] == "boom"


def test_requests_per_minute_slide_over_two_minutes():
    board, clock = _board()
    clock.now = 600.0  # the start of a minute
    for _ in range(10):
        assert board.under_rpm("d", 10, clock.now)
        board.count_request("d", clock.now)
    assert not board.under_rpm("d", 10, clock.now)
    assert board.under_rpm("other", 10, clock.now), "per deployment"
    clock.now += 60 + 30  # half-way through the next minute: half of the last one still counts
    assert board.under_rpm("d", 10, clock.now)
    for _ in range(5):
        board.count_request("d", clock.now)
    assert not board.under_rpm("d", 10, clock.now)
    clock.now += 180
    assert board.under_rpm("d", 1, clock.now)
