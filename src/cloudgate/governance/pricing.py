"""What a request cost, and the most it could cost, in integer micro-dollars.

Catalog prices are USD per million tokens, so `tokens * price` is already micro-dollars: the
sums below are exact arithmetic on the prices as written in the catalog, rounded half up once,
at the end. Every request is priced twice (its worst case before, its cost after), so the rates
are turned once per catalog entry into integers (the `Decimal` rate times 10^9, exact for any
rate of up to nine decimals, derived cache rates included) and a request costs a few integer
multiplications; a tier whose rates do not scale exactly is priced in `Decimal` as written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from cloudgate.catalog.catalog import ModelEntry
from cloudgate.protocol.messages import Usage

# The standard prompt-caching multipliers of the input price (Anthropic's price list).
CACHE_WRITE_5M_MULTIPLIER = Decimal("1.25")
CACHE_WRITE_1H_MULTIPLIER = Decimal(2)
CACHE_READ_MULTIPLIER = Decimal("0.1")

# Vertex locations that are not regional: only the global endpoint escapes the premium
# (the multi-regions `us` and `eu` are billed as regional endpoints).
_VERTEX_PREMIUM_FREE = frozenset({"global"})

# See `estimate_input_tokens`.
BYTES_PER_TOKEN_LOWER_BOUND = 2
ESTIMATE_OVERHEAD_TOKENS = 512


@dataclass(slots=True, frozen=True)
class Rates:
    """Per-million-token rates (USD) that apply to one request."""

    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal


@dataclass(slots=True, frozen=True)
class Cost:
    """A priced request: `priced` is False when the model is unknown (then `micro` is 0)."""

    micro: int
    priced: bool = True
    long_context: bool = False
    premium: bool = False


UNPRICED = Cost(micro=0, priced=False)


def _dec(value: float) -> Decimal:
    # Through str so 0.30 is 0.30 and not 0.299999999999999988897769753748...
    return Decimal(str(value))


def premium_factor(entry: ModelEntry, *, provider: str, region: str | None) -> Decimal:
    """1 + the Vertex regional premium when it applies, else 1.

    A missing region is not charged: the router always knows the region it sent the request to,
    and guessing a premium would bill callers for something that may not have happened.
    """
    if not _premium_applies(provider, region):
        return _ONE
    return _rates(entry).premium


def _premium_applies(provider: str, region: str | None) -> bool:
    return provider == "vertex" and region is not None and region not in _VERTEX_PREMIUM_FREE


# Rates are computed once per catalog entry (every request is priced twice: its worst case before
# and its cost after). Keyed by id, holding the entry so the id stays its own; bounded, since a
# catalog refresh brings new entries.
_RATE_CACHE: dict[int, _Computed] = {}
_RATE_CACHE_LIMIT = 4096
_ONE = Decimal(1)
_SCALE = 10**9  # integer rates are the Decimal rates times this
_SCALE_SQUARED = _SCALE * _SCALE  # a scaled sum times a scaled premium factor


@dataclass(slots=True, frozen=True)
class _Scaled:
    """One tier's rates times `_SCALE`, as integers; `worst_input` is the dearest input-side one."""

    input: int
    output: int
    cache_write_5m: int
    cache_write_1h: int
    cache_read: int
    worst_input: int


@dataclass(slots=True, frozen=True)
class _Computed:
    entry: ModelEntry  # held so that its id stays its own while cached
    base: Rates
    long: Rates | None
    premium: Decimal  # 1 + the Vertex regional premium
    # The same as integers times `_SCALE`, None when a rate does not scale exactly.
    base_scaled: _Scaled | None
    long_scaled: _Scaled | None
    premium_scaled: int | None


def _scaled_value(value: Decimal) -> int | None:
    scaled = value * _SCALE
    return int(scaled) if scaled == scaled.to_integral_value() else None


def _scaled(rates: Rates) -> _Scaled | None:
    rates_in_order = (rates.input, rates.output, rates.cache_write_5m, rates.cache_write_1h, rates.cache_read)
    scaled = [v for v in map(_scaled_value, rates_in_order) if v is not None]
    if len(scaled) < len(rates_in_order):
        return None
    inp, out, w5, w1, read = scaled
    return _Scaled(inp, out, w5, w1, read, worst_input=max(inp, w5, w1))


def _rates(entry: ModelEntry) -> _Computed:
    cached = _RATE_CACHE.get(id(entry))
    if cached is not None and cached.entry is entry:
        return cached
    p = entry.prices
    inp = _dec(p.input)
    base = Rates(
        input=inp,
        output=_dec(p.output),
        cache_write_5m=_dec(p.cache_write_5m)
        if p.cache_write_5m is not None
        else inp * CACHE_WRITE_5M_MULTIPLIER,
        cache_write_1h=_dec(p.cache_write_1h)
        if p.cache_write_1h is not None
        else inp * CACHE_WRITE_1H_MULTIPLIER,
        cache_read=_dec(p.cache_read) if p.cache_read is not None else inp * CACHE_READ_MULTIPLIER,
    )
    long: Rates | None = None
    lc = entry.long_context
    if lc is not None:
        lc_input = _dec(lc.input)
        long = Rates(
            input=lc_input,
            output=_dec(lc.output),
            cache_write_5m=lc_input * CACHE_WRITE_5M_MULTIPLIER,
            cache_write_1h=lc_input * CACHE_WRITE_1H_MULTIPLIER,
            cache_read=lc_input * CACHE_READ_MULTIPLIER,
        )
    premium = 1 + _dec(entry.vertex_regional_premium)
    computed = _Computed(
        entry,
        base,
        long,
        premium,
        _scaled(base),
        _scaled(long) if long is not None else None,
        _scaled_value(premium),
    )
    if len(_RATE_CACHE) >= _RATE_CACHE_LIMIT:
        _RATE_CACHE.clear()
    _RATE_CACHE[id(entry)] = computed
    return computed


def _long_context_applies(entry: ModelEntry, betas: Iterable[str], total_input: int) -> bool:
    lc = entry.long_context
    return lc is not None and total_input > lc.threshold and lc.beta in set(betas)


def _round(value: Decimal) -> int:
    return int(value.quantize(_ONE, rounding=ROUND_HALF_UP))


def cache_write_split(usage: Usage) -> tuple[int, int]:
    """(5-minute, 1-hour) cache-write tokens; writes reported without a split count as 5-minute."""
    five, hour = usage.cache_creation_5m_input_tokens, usage.cache_creation_1h_input_tokens
    # Older responses report only the total; any part of it the split does not cover was
    # written with the default (5-minute) TTL.
    unsplit = max(0, usage.cache_creation_input_tokens - five - hour)
    return five + unsplit, hour


def price_usage(
    usage: Usage, entry: ModelEntry | None, *, provider: str, region: str | None, betas: Iterable[str]
) -> Cost:
    """Price a request's usage; an unknown model gives `UNPRICED`."""
    if entry is None:
        return UNPRICED
    write_5m, write_1h = cache_write_split(usage)
    reads = usage.cache_read_input_tokens
    total_input = usage.input_tokens + write_5m + write_1h + reads
    computed = _rates(entry)
    use_lc = computed.long is not None and _long_context_applies(entry, betas, total_input)
    premium = _premium_applies(provider, region)
    scaled = computed.long_scaled if use_lc else computed.base_scaled
    factor = computed.premium_scaled if premium else _SCALE
    counts = (usage.input_tokens, usage.output_tokens, write_5m, write_1h, reads)
    if scaled is not None and factor is not None:
        raw: int = _weighted(counts, scaled) * factor
        micro = (
            (2 * raw + _SCALE_SQUARED) // (2 * _SCALE_SQUARED)
            if raw >= 0
            else -((-2 * raw + _SCALE_SQUARED) // (2 * _SCALE_SQUARED))
        )
    else:  # in Decimal: a rate that does not scale to an integer exactly
        rates = computed.long if use_lc and computed.long is not None else computed.base
        micro = _round(_weighted(counts, rates) * (computed.premium if premium else _ONE))
    return Cost(micro=micro, priced=True, long_context=use_lc, premium=premium and computed.premium != 1)


def _weighted(counts: tuple[int, int, int, int, int], rates: Rates | _Scaled) -> Any:
    """Input, output, 5-minute write, 1-hour write and read tokens, each at its rate: a Decimal
    for `Rates`, an integer (times `_SCALE`) for `_Scaled`."""
    inputs, outputs, write_5m, write_1h, reads = counts
    return (
        inputs * rates.input
        + outputs * rates.output
        + write_5m * rates.cache_write_5m
        + write_1h * rates.cache_write_1h
        + reads * rates.cache_read
    )


def cost_micro(
    usage: Usage, entry: ModelEntry | None, *, provider: str, region: str | None, betas: Iterable[str]
) -> int:
    """A request's cost in micro-dollars (0 for an unknown model: see `price_usage`/`is_priced`)."""
    return price_usage(usage, entry, provider=provider, region=region, betas=betas).micro


def is_priced(entry: ModelEntry | None) -> bool:
    """Whether requests to this model get a real price (the catalog knows it)."""
    return entry is not None


def max_cost_micro(
    entry: ModelEntry | None,
    *,
    input_tokens_upper: int,
    max_tokens: int,
    provider: str,
    region: str | None,
    betas: Iterable[str],
) -> int:
    """The most a request could cost: every input token at the dearest input-side rate.

    The long-context tier counts when the beta is present and the input could pass the
    threshold; 0 for an unknown model (nothing to reserve against).
    """
    if entry is None:
        return 0
    computed = _rates(entry)
    use_lc = computed.long is not None and _long_context_applies(entry, betas, input_tokens_upper)
    premium = _premium_applies(provider, region)
    inputs, outputs = max(0, input_tokens_upper), max(0, max_tokens)
    scaled = computed.long_scaled if use_lc else computed.base_scaled
    factor = computed.premium_scaled if premium else _SCALE
    if scaled is not None and factor is not None:
        raw = (inputs * scaled.worst_input + outputs * scaled.output) * factor
        return -(-raw // _SCALE_SQUARED)  # rounded up: a reservation is never a fraction short
    rates = computed.long if use_lc and computed.long is not None else computed.base
    # Any input token may turn out to be a cache write; reads are always the cheapest.
    worst_input = max(rates.input, rates.cache_write_5m, rates.cache_write_1h)
    exact = (inputs * worst_input + outputs * rates.output) * (computed.premium if premium else _ONE)
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


def estimate_input_tokens(body_bytes_len: int) -> int:
    """An upper bound on a Messages body's input tokens from its size in bytes.

    Claude's tokenizer averages 3.5-4 bytes per token on English prose and about 3 on code; JSON
    only adds bytes (quotes, keys, escapes) that carry no tokens. UTF-8 CJK text is 3 bytes a
    character at roughly 1-1.5 tokens a character, i.e. still at least 2 bytes a token (and 6
    bytes a character when the client escapes to ASCII `\\uXXXX`). So 1 token per 2 bytes bounds
    text-only bodies with room to spare. The fixed overhead covers what the server adds (the
    tool-use system prompt). Not a bound for images and PDFs, which are billed by pixels and
    pages rather than bytes; their base64 is usually large enough for the byte bound to cover
    them, and the real count corrects the rate limits and the budget once the answer arrives.
    """
    if body_bytes_len <= 0:
        return ESTIMATE_OVERHEAD_TOKENS
    return -(-body_bytes_len // BYTES_PER_TOKEN_LOWER_BOUND) + ESTIMATE_OVERHEAD_TOKENS
