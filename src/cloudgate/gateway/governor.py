"""Governance around each call: whose key, which models, how fast, how much, and what it cost.

Before the upstream call: the key becomes a `Principal` (store lookup behind a short cache, so
revocation takes effect within seconds and the hot path rarely touches the database), the model
is checked against the key's allow-list, rate limits admit the request, the budgets reserve its
worst-case cost, and the spend journal records that it began. After: the real usage is priced,
the reservation settled, the limits told the output, and the spend entry journalled and queued
for the database. A gateway killed in between leaves the journal to say what was in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from cloudgate.activity.entry import ActivityEntry
from cloudgate.catalog import Catalog, ModelEntry
from cloudgate.config.settings import Settings
from cloudgate.gateway.records import RequestRecord
from cloudgate.governance.budgets import BudgetExceeded, BudgetGuard, Reservation
from cloudgate.governance.counters import Counters, MemoryCounters, RedisCounters
from cloudgate.governance.journal import JournalError, SpendJournal, list_segments
from cloudgate.governance.pricing import estimate_input_tokens, max_cost_micro, premium_factor, price_usage
from cloudgate.governance.ratelimits import Admission, LimitName, RateLimited, RateLimiter
from cloudgate.governance.spend import SpendWriter
from cloudgate.governance.sqlite_counters import SQLiteCounters
from cloudgate.governance.types import BudgetRule, Principal, SpendEntry
from cloudgate.protocol.errors import GatewayError
from cloudgate.protocol.messages import MessagesCall, Operation, Usage
from cloudgate.providers.base import Target
from cloudgate.store.engine import data_dir, database_url
from cloudgate.store.keys import hash_key
from cloudgate.store.migrate import upgrade
from cloudgate.store.repositories import Store
from cloudgate.store.writer_process import WriterProcess
from cloudgate.util.tasks import spawn

log = logging.getLogger("cloudgate.governance")

_CACHE_SECONDS = 5.0  # how long a key lookup is trusted: revocation takes effect within this
_MISS_SECONDS = 1.0  # unknown keys are remembered briefly, so a flood of bad keys stays cheap
_CACHE_LIMIT = 100_000
_DEFAULT_MAX_TOKENS = 4096  # a count-tokens call or a body without max_tokens
COUNTERS_FILE = "counters.db"  # in the data directory: the counters `serve --workers N` shares


def journal_directory(settings: Settings) -> Path:
    """The spend journal's directory: `store.journal_dir`, else `<data_dir>/journal`."""
    if settings.store.journal_dir:
        return Path(settings.store.journal_dir)
    return data_dir(settings) / "journal"


def default_counters(settings: Settings) -> Counters:
    """Redis when `redis_url` is set; else a SQLite file the workers share when there are several
    (each would otherwise spend a whole budget); else this process's memory."""
    if settings.redis_url:
        return RedisCounters.from_url(settings.redis_url)
    if settings.gateway.workers > 1:
        return SQLiteCounters(data_dir(settings) / COUNTERS_FILE)
    return MemoryCounters()


@dataclass(slots=True)
class Ticket:
    """What `admit` reserved for one call, for `finish` to settle."""

    principal: Principal
    entry: SpendEntry
    admission: Admission | None
    reservation: Reservation | None
    started: float
    betas: tuple[str, ...]


def leftover_journals(base: Path) -> list[Path]:
    """Journal directories under `base` that hold segments: `base` itself (a single-process run)
    and `base/worker-<i>` (the workers of `serve --workers N`, any N)."""
    if not base.is_dir():
        return []
    found = [base] if list_segments(base) else []
    for child in sorted(base.glob("worker-*")):
        if child.is_dir() and list_segments(child):
            found.append(child)
    return found


async def replay_journals(directories: Iterable[Path], store: Store) -> int:
    """Write what earlier runs left in these journals to the store; returns the entries written.

    A journal another process holds (a gateway still running on this data directory) is left to it.
    """
    total = 0
    for directory in directories:
        try:
            writer = SpendWriter(SpendJournal(directory), store.spend_sink())
        except JournalError as exc:
            log.warning("not replaying %s: %s", directory, exc)
            continue
        replayed = await writer.start()
        await writer.close()
        if replayed:
            log.warning("recorded %d requests left in the spend journal %s", len(replayed), directory)
        total += len(replayed)
    return total


class Governor:
    """Keys from the store, budgets, rate limits and the spend log, for one gateway process."""

    def __init__(self, settings: Settings, catalog: Catalog, *, counters: Counters | None = None) -> None:
        self._settings = settings
        self._catalog = catalog
        self._url = database_url(settings)
        self.store = Store.open(self._url)
        if counters is None:
            counters = default_counters(settings)
        self.counters = counters
        self.budgets = BudgetGuard(counters, self._load_spent)
        self.limiter = RateLimiter(counters)
        self._journal_dir = journal_directory(settings)
        self.writer: SpendWriter | None = None
        # Spend rows and activity entries go to the database through a child process, unless
        # `store.writer` is "inline" (decision 0038).
        self.offload: WriterProcess | None = None
        if settings.store.writer == "process":
            self.offload = WriterProcess(self._url, log_level=settings.log_level)
        self._cache: dict[str, tuple[float, Principal | None]] = {}  # key -> (until, principal)
        self._pending: dict[str, asyncio.Task[Principal | None]] = {}  # lookups under way
        self.cache_seconds = _CACHE_SECONDS
        self._price_entries: dict[str, ModelEntry | None] = {}
        self._factors: dict[tuple[str, str, str | None], Decimal] = {}

    async def start(self) -> None:
        """Migrate the database if configured, then replay the journal of a previous run."""
        if self._settings.store.migrate_on_start:
            await upgrade(self._url)
        store = self._settings.store
        self.writer = SpendWriter(
            SpendJournal(self._journal_dir),
            self.offload if self.offload is not None else self.store.spend_sink(),
            interval=store.spend_flush_interval,
            max_batch=store.spend_batch_size,
        )
        replayed = await self.writer.start()
        if replayed:
            log.warning("recorded %d requests left in the spend journal by a previous run", len(replayed))
        if self._journal_dir == journal_directory(self._settings):
            # A single process after a run with several workers: their journals are owed too.
            workers = [d for d in leftover_journals(self._journal_dir) if d != self._journal_dir]
            await replay_journals(workers, self.store)

    async def close(self) -> None:
        """Write out every queued spend entry and release connections."""
        if self.writer is not None:
            await self.writer.close()
            self.writer.journal.close()
        if self.offload is not None:  # after the writers' last batches
            await self.offload.close()
        for lookup in list(self._pending.values()):
            lookup.cancel()
        await self.counters.aclose()
        await self.store.close()

    def write_activity(self, entries: list[ActivityEntry]) -> Awaitable[None]:
        """The activity log's database write (through the writer process unless inline)."""
        if self.offload is not None:
            return self.offload.write_activity(entries)
        return self.store.activity.write(entries)

    async def _load_spent(self, rule: BudgetRule, since: datetime) -> int:
        return await self.store.spend.spent_micro(rule.scope, rule.scope_id, since)

    # -- who is calling -----------------------------------------------------------------------

    async def principal(self, presented: Iterable[str]) -> Principal | None:
        """The principal behind the first presented key the store knows, or None."""
        now = time.monotonic()
        for key in presented:
            if not key:
                continue
            cached = self._cache.get(key)
            if cached is None or cached[0] <= now:
                # Shielded: a caller that goes away must not cancel the others' lookup.
                principal = await asyncio.shield(self._lookup(key))
            else:
                principal = cached[1]
                if principal is not None and cached[0] - now < self._refresh_ahead():
                    self._lookup(key)  # refreshed in the background; this request uses the cache
            if principal is not None:
                expires = principal.expires_at
                if expires is not None and expires <= datetime.now(UTC):
                    continue
                return principal
        return None

    def _refresh_ahead(self) -> float:
        # A key in use is looked up again this long before its cache entry expires, so busy keys
        # never make requests wait for the store; revocation still takes `cache_seconds` at most.
        return min(1.0, self.cache_seconds / 5)

    def _lookup(self, key: str) -> asyncio.Task[Principal | None]:
        """The store's answer for `key`, one query however many requests ask at once (a cache
        entry of a busy key expiring would otherwise send every request in flight to the store)."""
        pending = self._pending.get(key)
        if pending is None:
            # (spawn logs a failure: a background refresh has no caller to tell)
            pending = self._pending[key] = spawn(self._fetch(key), name="key lookup")
            pending.add_done_callback(lambda done: self._looked_up(key, done))
        return pending

    def _looked_up(self, key: str, task: asyncio.Task[Principal | None]) -> None:
        if self._pending.get(key) is task:
            del self._pending[key]

    async def _fetch(self, key: str) -> Principal | None:
        # The cache holds presented keys, not digests: a hit costs no hashing. A key is a
        # secret the process holds anyway while serving the request.
        principal = await self.store.keys.principal_for_hash(hash_key(key))
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        lifetime = self.cache_seconds if principal else _MISS_SECONDS
        self._cache[key] = (time.monotonic() + lifetime, principal)
        return principal

    # -- around one call ----------------------------------------------------------------------

    async def admit(
        self,
        principal: Principal,
        call: MessagesCall,
        targets: list[Target],
        record: RequestRecord,
        body_size: int,
    ) -> Ticket:
        """Check the model, admit against the rate limits, reserve the worst-case cost, and
        journal the start; raises `GatewayError` in caller-neutral terms when refused.

        `targets` are the places failover may take the call (the first is the likeliest); the
        reservation covers the dearest. `body_size` is the caller's body in bytes, which bounds
        the input tokens from above.
        """
        target = targets[0]
        if principal.allowed_models is not None and not self._model_allowed(principal, call, target):
            raise GatewayError(403, f"this key may not use model {call.model}", error_type="permission_error")
        input_upper = estimate_input_tokens(body_size)
        admission: Admission | None = None
        reservation: Reservation | None = None
        # The worst case is computed for every call, budget or not: it is what an interrupted
        # request is charged when the gateway dies before the answer ends.
        worst = 0
        if call.operation is Operation.MESSAGES:
            max_tokens = call.body.get("max_tokens")
            worst = max(
                max_cost_micro(
                    self._price_entry(t.model),
                    input_tokens_upper=input_upper,
                    max_tokens=max_tokens if isinstance(max_tokens, int) else _DEFAULT_MAX_TOKENS,
                    provider=t.provider,
                    region=t.region,
                    betas=call.betas,
                )
                for t in self._dearest(targets)
            )
        try:
            if principal.limits:
                admission = await self.limiter.admit(principal, input_upper)
            if principal.budgets:
                reservation = await self.budgets.reserve(principal, worst)
        except RateLimited as exc:
            raise _rate_limited(exc) from None
        except BudgetExceeded as exc:
            if admission is not None:
                await self.limiter.finish(admission, 0, 0)
            raise GatewayError(402, str(exc), error_type="billing_error") from None
        entry = SpendEntry(
            request_id=record.request_id,
            started_at=datetime.now(UTC),
            key_id=principal.key_id,
            user_id=principal.user_id,
            team_id=principal.team_id,
            frontdoor=record.frontdoor,
            provider=target.provider,
            model=call.model,
            upstream_model=target.model,
            region=target.region or "",
            deployment=target.deployment,
            reserved_micro=worst,
            session_id=record.session_id,
            tags=list(principal.tags),
        )
        if self.writer is not None and call.operation is Operation.MESSAGES:
            try:
                self.writer.journal.begin(entry)
            except JournalError as exc:
                # Unrecorded spend is worse than a refused request: refuse, and give back the holds.
                log.error("spend journal write failed: %s", exc)
                if reservation is not None:
                    await self.budgets.release(reservation)
                if admission is not None:
                    await self.limiter.finish(admission, 0, 0)
                raise GatewayError(
                    503, "the gateway cannot record spend right now", error_type="api_error"
                ) from None
        return Ticket(principal, entry, admission, reservation, time.perf_counter(), tuple(call.betas))

    def _dearest(self, targets: list[Target]) -> list[Target]:
        """Of targets priced alike, the one with the highest premium: enough for the worst case."""
        if len(targets) == 1:
            return targets
        best: dict[int, tuple[Decimal, Target]] = {}
        for t in targets:
            entry = self._price_entry(t.model)
            key = (t.model, t.provider, t.region)
            factor = self._factors.get(key)
            if factor is None:
                factor = premium_factor(entry, provider=t.provider, region=t.region) if entry else Decimal(1)
                if len(self._factors) < 4096:
                    self._factors[key] = factor
            held = best.get(id(entry))
            if held is None or factor > held[0]:
                best[id(entry)] = (factor, t)
        return [t for _, t in best.values()]

    def _price_entry(self, model: str) -> ModelEntry | None:
        """The catalog entry whose prices apply to `model`.

        A model the catalog does not know yet is priced as the newest model of its family
        (`claude-opus-5-5` as the newest Opus), else as the dearest model listed: budgets must
        not let a new model through for free. The spend log shows the upstream id, so such
        estimates can be found and repriced once the catalog learns the model.
        """
        cached = self._price_entries.get(model)
        if cached is not None or model in self._price_entries:
            return cached
        entry = self._catalog.lookup(model)
        if entry is None:
            name = self._catalog.anthropic_id(model)
            for family in ("opus", "sonnet", "haiku"):
                default = self._catalog.family_default(family)
                if family in name and default:
                    entry = self._catalog.lookup(default)
                    break
            else:
                entry = max(self._catalog.entries, key=lambda e: e.prices.output, default=None)
            log.info("no prices for %s in the catalog: priced as %s", model, entry.id if entry else "nothing")
        if len(self._price_entries) < 4096:
            self._price_entries[model] = entry
        return entry

    def price(self, ticket: Ticket, usage: Usage, target: Target | None = None) -> int:
        """The cost of an answer with this usage at `target` (default: where the ticket says)."""
        spent = ticket.entry
        model, provider, region = spent.upstream_model, spent.provider, spent.region or None
        if target is not None:
            model, provider, region = target.model, target.provider, target.region
        cost = price_usage(
            usage, self._price_entry(model), provider=provider, region=region, betas=ticket.betas
        )
        return cost.micro

    async def finish(self, ticket: Ticket, record: RequestRecord, operation: str) -> None:
        """Settle what `admit` reserved with what the answer really cost, and log the spend."""
        entry = ticket.entry
        if record.deployment:  # failover may have taken the call elsewhere than first planned
            entry.provider = record.provider
            entry.upstream_model = record.upstream_model
            entry.region = record.region
            entry.deployment = record.deployment
        entry.attempts = len(record.attempts)
        cost = 0
        if operation == Operation.MESSAGES.value:
            # A whole answer was priced for its cost header (its final usage, where it was served).
            cost = record.cost_micro if record.cost_micro is not None else self.price(ticket, record.usage)
        usage = record.usage
        entry.status = record.status
        entry.input_tokens = usage.input_tokens
        entry.output_tokens = usage.output_tokens
        entry.cache_read_tokens = usage.cache_read_input_tokens
        split_1h = usage.cache_creation_1h_input_tokens
        entry.cache_write_1h_tokens = split_1h
        entry.cache_write_5m_tokens = max(0, usage.cache_creation_input_tokens - split_1h)
        entry.cost_micro = cost
        entry.latency_ms = round((time.perf_counter() - ticket.started) * 1000, 3)
        entry.first_token_ms = record.first_byte_ms
        entry.error_type = record.error_type
        entry.finished_at = datetime.now(UTC)
        record.cost_micro = cost
        if self.writer is not None and operation == Operation.MESSAGES.value:
            self.writer.finish(entry)
        try:
            if ticket.reservation is not None:
                await self.budgets.settle(ticket.reservation, cost)
            if ticket.admission is not None:
                await self.limiter.finish(ticket.admission, usage.total_input_tokens, usage.output_tokens)
        except Exception:  # a counter outage must not turn a served answer into an error
            log.exception("settling request %s failed", record.request_id)

    def _model_allowed(self, principal: Principal, call: MessagesCall, target: Target) -> bool:
        allowed = principal.allowed_models or frozenset()
        entry = self._catalog.lookup(target.model)
        names = {call.model, target.model}
        if entry is not None:
            names.update({entry.id, *entry.aliases})
        return bool(names & allowed)


def _rate_limited(exc: RateLimited) -> GatewayError:
    """A refusal with the headers the Anthropic API sends on a 429."""
    headers = {"retry-after": exc.retry_after_header}
    family = exc.limit_name.value
    if exc.limit_name is not LimitName.CONCURRENT:
        headers[f"anthropic-ratelimit-{family}-limit"] = str(exc.limit)
        headers[f"anthropic-ratelimit-{family}-remaining"] = str(max(0, exc.remaining))
        headers[f"anthropic-ratelimit-{family}-reset"] = exc.reset_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    message = (
        f"rate limit of {exc.limit} {family} per minute reached for this {exc.scope}; "
        f"retry after {exc.retry_after_header}s"
    )
    if exc.limit_name is LimitName.CONCURRENT:
        message = f"{exc.limit} concurrent requests already running for this {exc.scope}"
    return GatewayError(429, message, error_type="rate_limit_error", headers=headers)
