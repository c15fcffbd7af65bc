"""Counters shared by budgets and rate limits: one protocol, kept in memory or in Redis.

Both backends have the same semantics, tested by the same tests:

- Budgets. A budget counter holds `spent`, `reserved` and one hold per in-flight request.
  `reserve` checks several budgets and takes a hold on all of them or on none; `settle` turns a
  hold into spending at the actual cost; `release` drops it. Settling or releasing a hold that is
  gone is a no-op, so both are idempotent. A hold not settled within its TTL (its process died)
  is turned into spending at the reserved amount: a budget is a cap, so a lost request counts at
  its worst case rather than for nothing. A counter that does not exist is "unseeded": `reserve`
  reports it and changes nothing, the caller loads the period's spending from the database and
  `seed`s it (only if still absent, so racing seeders agree).
- Rate windows. A sliding window of `window_s` seconds kept as `bucket_s`-second buckets: a
  check sums the buckets still inside the window, and a refusal says when enough old buckets
  will have left for the request to fit. `admit` checks every window and concurrency slot
  given and, only if all pass, adds to all of them.
- Concurrency slots. A set of tokens with an expiry each (the safety net for a process that
  died holding slots); `admit` takes one per slot key, `record` gives it back.

Time comes from the counters' `clock` (wall-clock seconds) and is passed into the Redis scripts,
so the memory and Redis backends behave alike under a test clock. Gateway hosts share Redis and
must keep NTP time: skew shifts which bucket a request lands in, by the skew.

Redis layout (every key under the prefix, `cloudgate:` by default):
  {prefix}{key}            hash    budget: spent, reserved, h:<hold id> -> amount
  {prefix}{key}:holds      zset    budget: hold id -> expiry (epoch seconds)
  {prefix}{key}            hash    window: bucket index (epoch // bucket_s) -> amount
  {prefix}{key}            zset    slots: token -> expiry (epoch seconds)
Every operation that touches several keys is one Lua script (`SCRIPT LOAD` once, `EVALSHA`
after), so it is atomic across gateway processes and costs one round trip; the calls made while
another is on the wire go together in the next pipeline, so under load one round trip serves
many requests. The keys of one call are not hash-tagged: this is for a single Redis (or a
primary with replicas), not Cluster.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cloudgate.util.batching import Batcher, Outcome

DEFAULT_WINDOW_S = 60
DEFAULT_BUCKET_S = 1
DEFAULT_SLOT_TTL_S = 900
# What to tell a caller refused for concurrency: slots free when requests finish, not on a clock.
SLOT_RETRY_S = 1.0


@dataclass(slots=True, frozen=True)
class BudgetHold:
    """A budget counter to reserve against: its key, its limit, and how long the key lives."""

    key: str
    limit: int
    ttl_s: int = 0  # 0: the counter never expires


@dataclass(slots=True, frozen=True)
class ReserveResult:
    """The answer of `reserve`: ok, or which counter refused (or which are unseeded)."""

    ok: bool
    refused: int | None = None  # index into the holds given
    current: int = 0  # the refusing counter's spent + reserved
    unseeded: tuple[int, ...] = ()  # indexes of counters that need `seed` first


@dataclass(slots=True, frozen=True)
class WindowCheck:
    """Would adding `add` to window `key` pass `limit`? (add 0: is the window already full?)"""

    key: str
    limit: int
    add: int


@dataclass(slots=True, frozen=True)
class WindowAdd:
    """Add `amount` (possibly negative, a correction) to the bucket of time `at` in `key`."""

    key: str
    amount: int
    at: float


@dataclass(slots=True, frozen=True)
class SlotCheck:
    """Take one of at most `limit` concurrency slots in `key`."""

    key: str
    limit: int


@dataclass(slots=True, frozen=True)
class AdmitResult:
    """The answer of `admit`; `used` is each window's total then each slot count, before adding."""

    ok: bool
    used: tuple[int, ...] = ()
    refused: int | None = None  # index into windows + slots
    retry_after_s: float = 0.0


class Counters(Protocol):
    """What budgets and rate limits need from a counter store."""

    clock: Callable[[], float]
    window_s: int
    bucket_s: int

    async def reserve(
        self, holds: Sequence[BudgetHold], hold_id: str, amount: int, hold_ttl_s: float
    ) -> ReserveResult:
        """Hold `amount` on every counter, or on none if one would pass its limit."""
        ...

    async def settle(self, keys: Sequence[str], hold_id: str, actual: int) -> None:
        """Replace the hold `hold_id` by `actual` spending (no-op if the hold is gone)."""
        ...

    async def release(self, keys: Sequence[str], hold_id: str) -> None:
        """Drop the hold `hold_id` without spending (no-op if the hold is gone)."""
        ...

    async def seed(self, key: str, spent: int, ttl_s: int) -> bool:
        """Create a budget counter with `spent` unless it exists; True if created."""
        ...

    async def budget(self, key: str) -> tuple[int, int] | None:
        """(spent, reserved) of a budget counter, None if unseeded."""
        ...

    async def admit(
        self, windows: Sequence[WindowCheck], slots: Sequence[SlotCheck], token: str
    ) -> AdmitResult:
        """Check every window and slot; if all pass, add to the windows and take the slots."""
        ...

    async def record(self, adds: Sequence[WindowAdd], release_slots: Sequence[str], token: str) -> None:
        """Add to windows (late counts, corrections) and give back `token`'s slots."""
        ...

    async def window_total(self, key: str) -> int:
        """The sum of a window over the last `window_s` seconds."""
        ...

    async def slots_in_use(self, key: str) -> int:
        """Unexpired concurrency slots held in `key`."""
        ...

    async def clear(self) -> None:
        """Delete every counter under this store's prefix (tests and administration)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def _need(add: int, limit: int) -> int:
    # A request larger than the whole limit would never pass: it gets in when the window is
    # empty (as much as any request can be admitted), and at least 1 so that a check of an
    # already-full window (add 0, or a zero-cost reservation) refuses.
    return max(min(add, limit), 1)


def _retry_after(
    buckets: dict[int, int], total: int, need: int, limit: int, wb: int, bs: int, now: float
) -> float:
    drop = 0
    for b in sorted(buckets):
        drop += buckets[b]
        if total - drop + need <= limit:
            return (b + wb) * bs - now
    return float(wb * bs)


def judge_admission(
    windows: Sequence[WindowCheck],
    buckets: Sequence[dict[int, int]],
    slots: Sequence[SlotCheck],
    slot_counts: Sequence[int],
    window_s: int,
    bucket_s: int,
    now: float,
    totals: Sequence[int] | None = None,
) -> AdmitResult:
    """`admit`'s verdict on what each window's buckets and each slot key hold now (a backend
    adds to them when it is ok); a refusal names the check that frees last. `totals`: each
    window's sum, when the backend keeps it."""
    wb = window_s // bucket_s
    used: list[int] = []
    refused: int | None = None
    worst = -1.0
    for i, (check, window) in enumerate(zip(windows, buckets, strict=True)):
        total = sum(window.values()) if totals is None else totals[i]
        used.append(total)
        need = _need(check.add, check.limit)
        if total + need > check.limit:
            retry = _retry_after(window, total, need, check.limit, wb, bucket_s, now)
            if retry > worst:
                refused, worst = i, retry
    for j, (check_slot, count) in enumerate(zip(slots, slot_counts, strict=True)):
        used.append(count)
        if count >= check_slot.limit and worst < SLOT_RETRY_S:
            refused, worst = len(windows) + j, SLOT_RETRY_S
    if refused is not None:
        return AdmitResult(ok=False, used=tuple(used), refused=refused, retry_after_s=worst)
    return AdmitResult(ok=True, used=tuple(used))


@dataclass(slots=True)
class _MemWindow:
    """One sliding window's buckets, with their sum kept as they change: a request reads the
    total without summing the window's (up to 60) buckets, and old buckets are only looked for
    when the oldest one held has left the window."""

    buckets: dict[int, int] = field(default_factory=dict)
    total: int = 0
    oldest: int | None = None  # the smallest bucket held

    def expire(self, first: int) -> None:
        """Drop the buckets before `first`."""
        if self.oldest is None or self.oldest >= first:
            return
        for bucket in [b for b in self.buckets if b < first]:
            self.total -= self.buckets.pop(bucket)
        self.oldest = min(self.buckets, default=None)

    def add(self, bucket: int, amount: int) -> None:
        """Add `amount` to `bucket`; a bucket that comes to nothing (or less) is dropped."""
        held = self.buckets.get(bucket, 0)
        value = held + amount
        if value > 0:
            self.buckets[bucket] = value
            self.total += amount
            if self.oldest is None or bucket < self.oldest:
                self.oldest = bucket
        elif held:
            del self.buckets[bucket]
            self.total -= held
            if bucket == self.oldest:
                self.oldest = min(self.buckets, default=None)


@dataclass(slots=True)
class _MemBudget:
    spent: int
    expires_at: float | None
    reserved: int = 0
    holds: dict[str, tuple[int, float]] = field(default_factory=dict)  # id -> (amount, expiry)
    # No hold expires before this (a lower bound: settled holds are not taken out of it), so a
    # reservation only looks for expired holds when one may be.
    next_expiry: float = math.inf


class MemoryCounters:
    """Counters for one process. Each call runs without awaiting, so it is atomic on the loop."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        window_s: int = DEFAULT_WINDOW_S,
        bucket_s: int = DEFAULT_BUCKET_S,
        slot_ttl_s: int = DEFAULT_SLOT_TTL_S,
    ) -> None:
        self.clock = clock
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.slot_ttl_s = slot_ttl_s
        self._budgets: dict[str, _MemBudget] = {}
        self._windows: dict[str, _MemWindow] = {}
        self._slots: dict[str, dict[str, float]] = {}

    def _live_budget(self, key: str, now: float) -> _MemBudget | None:
        budget = self._budgets.get(key)
        if budget is not None and budget.expires_at is not None and budget.expires_at <= now:
            del self._budgets[key]
            return None
        return budget

    async def reserve(
        self, holds: Sequence[BudgetHold], hold_id: str, amount: int, hold_ttl_s: float
    ) -> ReserveResult:
        """Hold `amount` on every counter, or on none if one would pass its limit."""
        now = self.clock()
        budgets = [self._live_budget(h.key, now) for h in holds]
        unseeded = tuple(i for i, b in enumerate(budgets) if b is None)
        if unseeded:
            return ReserveResult(ok=False, unseeded=unseeded)
        live = [b for b in budgets if b is not None]
        for budget in live:
            if budget.next_expiry <= now:
                for expired in [i for i, (_, exp) in budget.holds.items() if exp <= now]:
                    held, _ = budget.holds.pop(expired)
                    budget.reserved -= held
                    budget.spent += held
                budget.next_expiry = min((exp for _, exp in budget.holds.values()), default=math.inf)
        for i, (hold, budget) in enumerate(zip(holds, live, strict=True)):
            current = budget.spent + budget.reserved
            if current + max(amount, 1) > hold.limit:
                return ReserveResult(ok=False, refused=i, current=current)
        for hold, budget in zip(holds, live, strict=True):
            budget.reserved += amount
            budget.holds[hold_id] = (amount, now + hold_ttl_s)
            budget.next_expiry = min(budget.next_expiry, now + hold_ttl_s)
            if hold.ttl_s:
                budget.expires_at = now + hold.ttl_s
        return ReserveResult(ok=True)

    def _finish_hold(self, keys: Sequence[str], hold_id: str, actual: int | None) -> None:
        now = self.clock()
        for key in keys:
            budget = self._live_budget(key, now)
            if budget is None or hold_id not in budget.holds:
                continue
            held, _ = budget.holds.pop(hold_id)
            budget.reserved -= held
            if actual is not None:
                budget.spent += actual

    async def settle(self, keys: Sequence[str], hold_id: str, actual: int) -> None:
        """Replace the hold `hold_id` by `actual` spending (no-op if the hold is gone)."""
        self._finish_hold(keys, hold_id, actual)

    async def release(self, keys: Sequence[str], hold_id: str) -> None:
        """Drop the hold `hold_id` without spending (no-op if the hold is gone)."""
        self._finish_hold(keys, hold_id, None)

    async def seed(self, key: str, spent: int, ttl_s: int) -> bool:
        """Create a budget counter with `spent` unless it exists; True if created."""
        now = self.clock()
        if self._live_budget(key, now) is not None:
            return False
        self._budgets[key] = _MemBudget(spent=spent, expires_at=now + ttl_s if ttl_s else None)
        return True

    async def budget(self, key: str) -> tuple[int, int] | None:
        """(spent, reserved) of a budget counter, None if unseeded."""
        budget = self._live_budget(key, self.clock())
        return None if budget is None else (budget.spent, budget.reserved)

    def _window(self, key: str, now: float) -> _MemWindow:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _MemWindow()
        window.expire(math.floor(now / self.bucket_s) - self.window_s // self.bucket_s + 1)
        return window

    def _slots_of(self, key: str, now: float) -> dict[str, float]:
        slots = self._slots.setdefault(key, {})
        # Slots all live `slot_ttl_s`, so the dict's order (oldest first) is their expiry order:
        # only its head needs looking at, not every request in flight. (A clock set back keeps
        # a slot that was never given back until those before it expire.)
        expired = []
        for token, expiry in slots.items():
            if expiry > now:
                break
            expired.append(token)
        for token in expired:
            del slots[token]
        return slots

    async def admit(
        self, windows: Sequence[WindowCheck], slots: Sequence[SlotCheck], token: str
    ) -> AdmitResult:
        """Check every window and slot; if all pass, add to the windows and take the slots."""
        now = self.clock()
        held_windows = [self._window(w.key, now) for w in windows]
        held = [self._slots_of(s.key, now) for s in slots]
        verdict = judge_admission(
            windows,
            [w.buckets for w in held_windows],
            slots,
            [len(t) for t in held],
            self.window_s,
            self.bucket_s,
            now,
            totals=[w.total for w in held_windows],
        )
        if not verdict.ok:
            return verdict
        bucket = math.floor(now / self.bucket_s)
        for check, window in zip(windows, held_windows, strict=True):
            if check.add:
                window.add(bucket, check.add)
        for tokens in held:
            tokens[token] = now + self.slot_ttl_s
        return verdict

    async def record(self, adds: Sequence[WindowAdd], release_slots: Sequence[str], token: str) -> None:
        """Add to windows (late counts, corrections) and give back `token`'s slots."""
        now = self.clock()
        for add in adds:
            window = self._window(add.key, now)
            first = math.floor(now / self.bucket_s) - self.window_s // self.bucket_s + 1
            bucket = math.floor(add.at / self.bucket_s)
            if bucket < first or not add.amount:
                continue  # the bucket has left the window: nothing left to correct
            window.add(bucket, add.amount)
        for key in release_slots:
            self._slots.get(key, {}).pop(token, None)

    async def window_total(self, key: str) -> int:
        """The sum of a window over the last `window_s` seconds."""
        return self._window(key, self.clock()).total

    async def slots_in_use(self, key: str) -> int:
        """Unexpired concurrency slots held in `key`."""
        return len(self._slots_of(key, self.clock()))

    async def clear(self) -> None:
        """Delete every counter (tests and administration)."""
        self._budgets.clear()
        self._windows.clear()
        self._slots.clear()

    async def aclose(self) -> None:
        """Nothing to release."""


# --- Redis -------------------------------------------------------------------------------------

# KEYS: n budget hashes then their n hold zsets. ARGV: now, hold id, amount, hold expiry, then
# limit and key TTL per budget. Returns {0} ok, {1, i...} unseeded, {2, i, spent+reserved} refused.
_RESERVE = """
local now = tonumber(ARGV[1])
local id = ARGV[2]
local amount = tonumber(ARGV[3])
local hold_exp = ARGV[4]
local n = #KEYS / 2
local unseeded = {1}
for i = 1, n do
  if redis.call('HEXISTS', KEYS[i], 'spent') == 0 then unseeded[#unseeded + 1] = i - 1 end
end
if #unseeded > 1 then return unseeded end
for i = 1, n do
  local h, z = KEYS[i], KEYS[n + i]
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, hid in ipairs(expired) do
    local held = tonumber(redis.call('HGET', h, 'h:' .. hid) or 0)
    redis.call('HINCRBY', h, 'reserved', -held)
    redis.call('HINCRBY', h, 'spent', held)
    redis.call('HDEL', h, 'h:' .. hid)
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', z, '-inf', now) end
end
local need = math.max(amount, 1)
for i = 1, n do
  local limit = tonumber(ARGV[3 + 2 * i])
  local cur = tonumber(redis.call('HGET', KEYS[i], 'spent') or 0)
    + tonumber(redis.call('HGET', KEYS[i], 'reserved') or 0)
  if cur + need > limit then return {2, i - 1, cur} end
end
for i = 1, n do
  local h, z = KEYS[i], KEYS[n + i]
  redis.call('HINCRBY', h, 'reserved', amount)
  redis.call('HSET', h, 'h:' .. id, amount)
  redis.call('ZADD', z, hold_exp, id)
  local ttl = tonumber(ARGV[4 + 2 * i])
  if ttl > 0 then
    redis.call('EXPIRE', h, ttl)
    redis.call('EXPIRE', z, ttl)
  end
end
return {0}
"""

# KEYS: n budget hashes then their n hold zsets. ARGV: hold id, actual cost (-1: release).
_SETTLE = """
local id = ARGV[1]
local actual = tonumber(ARGV[2])
local n = #KEYS / 2
for i = 1, n do
  local h, z = KEYS[i], KEYS[n + i]
  local held = redis.call('HGET', h, 'h:' .. id)
  if held then
    redis.call('HINCRBY', h, 'reserved', -tonumber(held))
    if actual >= 0 then redis.call('HINCRBY', h, 'spent', actual) end
    redis.call('HDEL', h, 'h:' .. id)
    redis.call('ZREM', z, id)
  end
end
return 0
"""

# KEYS: the budget hash. ARGV: spent, TTL (0: none). Returns 1 if created.
_SEED = """
if redis.call('HSETNX', KEYS[1], 'spent', ARGV[1]) == 0 then return 0 end
redis.call('HSETNX', KEYS[1], 'reserved', 0)
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""

# KEYS: nw window hashes then slot zsets. ARGV: now, token, nw, bucket_s, window buckets,
# slot TTL, then limit and add per window, then limit per slot.
# Returns {0, used...} or {1, refused index, retry_after_ms, used...}.
_ADMIT = """
local now = tonumber(ARGV[1])
local token = ARGV[2]
local nw = tonumber(ARGV[3])
local bs = tonumber(ARGV[4])
local wb = tonumber(ARGV[5])
local slot_ttl = tonumber(ARGV[6])
local slot_retry_ms = tonumber(ARGV[7])
local cur_b = math.floor(now / bs)
local first = cur_b - wb + 1
local used = {}
local refused, worst = -1, -1
for i = 1, nw do
  local key = KEYS[i]
  local limit = tonumber(ARGV[6 + 2 * i])
  local add = tonumber(ARGV[7 + 2 * i])
  local flat = redis.call('HGETALL', key)
  local total, live, stale = 0, {}, {}
  for j = 1, #flat, 2 do
    local b = tonumber(flat[j])
    if b < first then
      stale[#stale + 1] = flat[j]
    else
      local v = tonumber(flat[j + 1])
      total = total + v
      live[#live + 1] = {b, v}
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  used[i] = total
  local need = math.max(math.min(add, limit), 1)
  if total + need > limit then
    table.sort(live, function(x, y) return x[1] < y[1] end)
    local retry_ms = wb * bs * 1000
    local drop = 0
    for _, bv in ipairs(live) do
      drop = drop + bv[2]
      if total - drop + need <= limit then
        retry_ms = math.ceil(((bv[1] + wb) * bs - now) * 1000)
        break
      end
    end
    if retry_ms > worst then refused, worst = i - 1, retry_ms end
  end
end
local ns = #KEYS - nw
for j = 1, ns do
  local key = KEYS[nw + j]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local count = redis.call('ZCARD', key)
  used[nw + j] = count
  if count >= tonumber(ARGV[7 + 2 * nw + j]) and slot_retry_ms > worst then
    refused, worst = nw + j - 1, slot_retry_ms
  end
end
if refused >= 0 then
  local out = {1, refused, worst}
  for k = 1, #used do out[#out + 1] = used[k] end
  return out
end
local field = string.format('%d', cur_b)
for i = 1, nw do
  local add = tonumber(ARGV[7 + 2 * i])
  if add ~= 0 then
    redis.call('HINCRBY', KEYS[i], field, add)
    redis.call('EXPIRE', KEYS[i], wb * bs + bs)
  end
end
for j = 1, ns do
  redis.call('ZADD', KEYS[nw + j], now + slot_ttl, token)
  redis.call('EXPIRE', KEYS[nw + j], slot_ttl)
end
local out = {0}
for k = 1, #used do out[#out + 1] = used[k] end
return out
"""

# KEYS: na window hashes then slot zsets. ARGV: now, token, na, bucket_s, window buckets,
# then amount and time per add.
_RECORD = """
local now = tonumber(ARGV[1])
local token = ARGV[2]
local na = tonumber(ARGV[3])
local bs = tonumber(ARGV[4])
local wb = tonumber(ARGV[5])
local first = math.floor(now / bs) - wb + 1
for i = 1, na do
  local amount = tonumber(ARGV[4 + 2 * i])
  local b = math.floor(tonumber(ARGV[5 + 2 * i]) / bs)
  if b >= first and amount ~= 0 then
    local field = string.format('%d', b)
    local value = redis.call('HINCRBY', KEYS[i], field, amount)
    if value <= 0 then redis.call('HDEL', KEYS[i], field) end
    redis.call('EXPIRE', KEYS[i], wb * bs + bs)
  end
end
for j = na + 1, #KEYS do redis.call('ZREM', KEYS[j], token) end
return 0
"""

# KEYS: one window hash. ARGV: now, bucket_s, window buckets.
_WINDOW_TOTAL = """
local first = math.floor(tonumber(ARGV[1]) / tonumber(ARGV[2])) - tonumber(ARGV[3]) + 1
local flat = redis.call('HGETALL', KEYS[1])
local total = 0
for j = 1, #flat, 2 do
  if tonumber(flat[j]) >= first then total = total + tonumber(flat[j + 1]) end
end
return total
"""

_SCRIPTS = {
    "reserve": _RESERVE,
    "settle": _SETTLE,
    "seed": _SEED,
    "admit": _ADMIT,
    "record": _RECORD,
    "window_total": _WINDOW_TOTAL,
}


_ScriptCall = tuple[str, Sequence[str], Sequence[str | int]]  # script name, keys, arguments


def _num(value: float) -> str:
    # repr keeps every digit of a float time; Lua's tonumber reads it back exactly.
    return repr(value)


class RedisCounters:
    """Counters in Redis, shared by every gateway process; each call is one script, and calls
    made while others are on the wire share the next round trip (a pipeline)."""

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str = "cloudgate:",
        clock: Callable[[], float] = time.time,
        window_s: int = DEFAULT_WINDOW_S,
        bucket_s: int = DEFAULT_BUCKET_S,
        slot_ttl_s: int = DEFAULT_SLOT_TTL_S,
    ) -> None:
        # `redis` is a `redis.asyncio.Redis`; typed loosely because redis-py's async client is
        # generic over its response type in ways mypy cannot follow through `evalsha`.
        self.redis = redis
        self.prefix = prefix
        self.clock = clock
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.slot_ttl_s = slot_ttl_s
        self._shas: dict[str, str] = {}
        self._on_the_wire = 0  # script calls sent alone and not answered yet
        self.round_trips = 0  # script calls and pipelines sent so far
        self._pipelines = Batcher(self._send_pipeline, name="redis counters")

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisCounters:
        """Counters on the Redis server at `url` (`redis://host:port/db`)."""
        import redis.asyncio as aioredis

        return cls(aioredis.Redis.from_url(url), **kwargs)

    async def _load(self) -> None:
        for name, text in _SCRIPTS.items():
            self._shas[name] = await self.redis.script_load(text)

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """Run script `name`: at once when no call is on the wire, else in the next pipeline.

        Under load the calls of many requests then share round trips: the client's work per
        command (a connection from the pool, a write, a read) is paid once per pipeline. Each
        script is still atomic on the server, and one request's calls stay in order (each
        awaits the last).
        """
        if self._on_the_wire or self._pipelines.busy:
            return await self._pipelines.submit((name, keys, args))
        self._on_the_wire += 1
        try:
            return await self._call(name, keys, args)
        finally:
            self._on_the_wire -= 1

    async def _call(self, name: str, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        from redis.exceptions import NoScriptError

        if not self._shas:
            await self._load()
        self.round_trips += 1
        try:
            return await self.redis.evalsha(self._shas[name], len(keys), *keys, *args)
        except NoScriptError:
            # The server restarted or its script cache was flushed: load again, once.
            await self._load()
            return await self.redis.evalsha(self._shas[name], len(keys), *keys, *args)

    async def _send_pipeline(self, batch: list[_ScriptCall]) -> list[Outcome]:
        from redis.exceptions import NoScriptError

        if not self._shas:
            await self._load()
        pipe = self.redis.pipeline(transaction=False)
        for name, keys, args in batch:
            pipe.evalsha(self._shas[name], len(keys), *keys, *args)
        self.round_trips += 1
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        outcomes: list[Outcome] = []
        for (name, keys, args), reply in zip(batch, replies, strict=True):
            if isinstance(reply, NoScriptError):  # the server lost its scripts: this one alone
                try:
                    reply = await self._call(name, keys, args)
                except Exception as exc:
                    reply = exc
            outcomes.append((not isinstance(reply, Exception), reply))
        return outcomes

    def _budget_keys(self, keys: Sequence[str]) -> list[str]:
        full = [self.prefix + k for k in keys]
        return full + [k + ":holds" for k in full]

    async def reserve(
        self, holds: Sequence[BudgetHold], hold_id: str, amount: int, hold_ttl_s: float
    ) -> ReserveResult:
        """Hold `amount` on every counter, or on none if one would pass its limit."""
        now = self.clock()
        args: list[str | int] = [_num(now), hold_id, amount, _num(now + hold_ttl_s)]
        for hold in holds:
            args += [hold.limit, hold.ttl_s]
        reply = await self._run("reserve", self._budget_keys([h.key for h in holds]), args)
        code = int(reply[0])
        if code == 0:
            return ReserveResult(ok=True)
        if code == 1:
            return ReserveResult(ok=False, unseeded=tuple(int(i) for i in reply[1:]))
        return ReserveResult(ok=False, refused=int(reply[1]), current=int(reply[2]))

    async def settle(self, keys: Sequence[str], hold_id: str, actual: int) -> None:
        """Replace the hold `hold_id` by `actual` spending (no-op if the hold is gone)."""
        await self._run("settle", self._budget_keys(keys), [hold_id, max(0, actual)])

    async def release(self, keys: Sequence[str], hold_id: str) -> None:
        """Drop the hold `hold_id` without spending (no-op if the hold is gone)."""
        await self._run("settle", self._budget_keys(keys), [hold_id, -1])

    async def seed(self, key: str, spent: int, ttl_s: int) -> bool:
        """Create a budget counter with `spent` unless it exists; True if created."""
        return bool(await self._run("seed", [self.prefix + key], [spent, ttl_s]))

    async def budget(self, key: str) -> tuple[int, int] | None:
        """(spent, reserved) of a budget counter, None if unseeded."""
        spent, reserved = await self.redis.hmget(self.prefix + key, ["spent", "reserved"])
        if spent is None:
            return None
        return int(spent), int(reserved or 0)

    async def admit(
        self, windows: Sequence[WindowCheck], slots: Sequence[SlotCheck], token: str
    ) -> AdmitResult:
        """Check every window and slot; if all pass, add to the windows and take the slots."""
        now = self.clock()
        keys = [self.prefix + w.key for w in windows] + [self.prefix + s.key for s in slots]
        args: list[str | int] = [
            _num(now),
            token,
            len(windows),
            self.bucket_s,
            self.window_s // self.bucket_s,
            self.slot_ttl_s,
            int(SLOT_RETRY_S * 1000),
        ]
        for w in windows:
            args += [w.limit, w.add]
        args += [s.limit for s in slots]
        reply = await self._run("admit", keys, args)
        if int(reply[0]) == 0:
            return AdmitResult(ok=True, used=tuple(int(u) for u in reply[1:]))
        return AdmitResult(
            ok=False,
            used=tuple(int(u) for u in reply[3:]),
            refused=int(reply[1]),
            retry_after_s=int(reply[2]) / 1000,
        )

    async def record(self, adds: Sequence[WindowAdd], release_slots: Sequence[str], token: str) -> None:
        """Add to windows (late counts, corrections) and give back `token`'s slots."""
        if not adds and not release_slots:
            return
        keys = [self.prefix + a.key for a in adds] + [self.prefix + k for k in release_slots]
        args: list[str | int] = [
            _num(self.clock()),
            token,
            len(adds),
            self.bucket_s,
            self.window_s // self.bucket_s,
        ]
        for a in adds:
            args += [a.amount, _num(a.at)]
        await self._run("record", keys, args)

    async def window_total(self, key: str) -> int:
        """The sum of a window over the last `window_s` seconds."""
        args: list[str | int] = [_num(self.clock()), self.bucket_s, self.window_s // self.bucket_s]
        return int(await self._run("window_total", [self.prefix + key], args))

    async def slots_in_use(self, key: str) -> int:
        """Unexpired concurrency slots held in `key`."""
        return int(await self.redis.zcount(self.prefix + key, f"({_num(self.clock())}", "+inf"))

    async def clear(self) -> None:
        """Delete every key under this store's prefix (tests and administration)."""
        batch: list[Any] = []
        async for key in self.redis.scan_iter(match=self.prefix + "*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                await self.redis.unlink(*batch)
                batch.clear()
        if batch:
            await self.redis.unlink(*batch)

    async def aclose(self) -> None:
        """Finish the calls under way and close the connection pool."""
        await self._pipelines.wait()
        await self.redis.aclose()
