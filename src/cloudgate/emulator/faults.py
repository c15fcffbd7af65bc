"""Fault injection: what to break, for which requests, and how many times.

Faults are platform-neutral data. Each platform module decides how a kind looks on its wire
(a Google envelope on Vertex, an `x-amzn-ErrorType` on Bedrock), so this module only matches.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

PLATFORMS = frozenset({"vertex", "bedrock", "anthropic"})

FAULT_KINDS = frozenset(
    {
        "rate_limit",
        "rate_limit_array",
        "not_found",
        "permission_denied",
        "server_error",
        "overloaded",
        "slow_first_byte",
        "cut_stream",
        "unauthenticated",
        "drop_connection",
    }
)


@dataclass(slots=True)
class Fault:
    """One injected fault.

    `kind` is one of FAULT_KINDS. The optional matchers (`model` substring, exact `location`,
    `path_contains` substring, `stream` flag) must all hold for a request to be hit. The
    location is the URL's on Vertex and the request's region on Bedrock; the Anthropic API has
    none, so a fault with a `location` never hits it. `times` limits the fault to the first N
    matching requests (None = forever). `delay` is the wait before the first byte
    (slow_first_byte, or added to any kind); `after_events` is how many SSE events `cut_stream`
    sends before dropping the connection; `status` overrides the HTTP status of error kinds
    (e.g. 503 for server_error). `platform` ("vertex", "bedrock",
    "anthropic"; None = all) limits the fault to one back end, so one emulator can fail one
    platform while the others answer (failover tests). `probability` (0 < p <= 1; None = always)
    hits a matching request only that often, for soak tests; `times` then counts real hits only.
    `drop_connection` closes the connection without any response, as an unreachable upstream looks.
    """

    kind: str
    model: str | None = None
    location: str | None = None
    path_contains: str | None = None
    stream: bool | None = None
    times: int | None = None
    delay: float = 0.0
    after_events: int | None = None
    status: int | None = None
    platform: str | None = None
    probability: float | None = None
    hits: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if self.platform is not None and self.platform not in PLATFORMS:
            raise ValueError(f"unknown fault platform {self.platform!r}; expected one of {sorted(PLATFORMS)}")
        if self.times is not None and self.times < 0:
            raise ValueError("fault 'times' must be >= 0")
        p = self.probability
        if p is not None and (
            isinstance(p, bool) or not isinstance(p, int | float) or math.isnan(p) or not 0 < p <= 1
        ):
            raise ValueError(f"fault 'probability' must be a number with 0 < p <= 1, not {p!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Build a fault from config or admin-API JSON, rejecting unknown fields."""
        if not isinstance(data, Mapping):
            raise ValueError("a fault must be an object")
        known = {f.name for f in fields(cls)} - {"hits"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        if "kind" not in data:
            raise ValueError("a fault needs a 'kind'")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise ValueError(str(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        """The fault as JSON-ready data (with its hit count)."""
        return asdict(self)

    def matches(
        self,
        *,
        path: str,
        model: str | None,
        location: str | None,
        stream: bool,
        platform: str,
    ) -> bool:
        """Whether this fault applies to a request with these properties (ignoring `times`)."""
        if self.platform is not None and self.platform != platform:
            return False
        if self.model is not None and (model is None or self.model not in model):
            return False
        if self.location is not None and self.location != location:
            return False
        if self.path_contains is not None and self.path_contains not in path:
            return False
        return self.stream is None or self.stream == stream

    @property
    def exhausted(self) -> bool:
        """Whether the fault has been used up."""
        return self.times is not None and self.hits >= self.times


async def wait_before_first_byte(faults: Iterable[Fault]) -> float:
    """Sleep the summed `delay` of the faults hitting a request; return it (Bedrock reports it)."""
    delay = sum(f.delay for f in faults)
    if delay > 0:
        await asyncio.sleep(delay)
    return delay


def drops_connection(faults: Iterable[Fault]) -> bool:
    """Whether a fault hitting a request closes its connection without an answer."""
    return any(f.kind == "drop_connection" for f in faults)


def platform_of(path: str) -> str:
    """The platform a request path belongs to, for callers that do not name it."""
    if path.startswith(("/model/", "/inference-profiles")):
        return "bedrock"
    if path.startswith("/v1/") and not path.startswith("/v1/projects/"):
        return "anthropic"
    return "vertex"


class FaultSet:
    """The active faults; safe to change from a test thread while the server runs.

    `seed` makes the draws of probabilistic faults reproducible: one generator serves every
    fault, drawn under the lock, so the same sequence of requests meets the same hits.
    """

    def __init__(self, faults: Iterable[Fault] = (), *, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = list(faults)
        # Not for security: a reproducible stream of draws for soak tests.
        self._random = random.Random(seed)  # noqa: S311

    def add(self, *faults: Fault | Iterable[Fault]) -> None:
        """Activate one or more faults (a Fault, or an iterable of them)."""
        flat: list[Fault] = []
        for item in faults:
            flat.extend([item] if isinstance(item, Fault) else item)
        with self._lock:
            self._faults.extend(flat)

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    def active(self) -> list[Fault]:
        """A snapshot of the active faults."""
        with self._lock:
            return list(self._faults)

    def take(
        self,
        *,
        path: str,
        model: str | None,
        location: str | None,
        stream: bool,
        platform: str,
    ) -> list[Fault]:
        """The faults hitting this request, counting one use of each."""
        hit: list[Fault] = []
        with self._lock:
            for fault in self._faults:
                if fault.exhausted or not fault.matches(
                    path=path, model=model, location=location, stream=stream, platform=platform
                ):
                    continue
                if fault.probability is not None and self._random.random() >= fault.probability:
                    continue
                fault.hits += 1
                hit.append(fault)
        return hit

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)
