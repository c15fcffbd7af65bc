"""Pricing against hand-computed figures: catalog prices are USD per million tokens, so
tokens x price is micro-dollars."""

from __future__ import annotations

import dataclasses
import json
import random
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

import pytest

from cloudgate.catalog.catalog import ModelEntry, Prices, default_catalog
from cloudgate.governance import pricing
from cloudgate.governance.pricing import (
    UNPRICED,
    cost_micro,
    estimate_input_tokens,
    is_priced,
    max_cost_micro,
    price_usage,
)
from cloudgate.protocol.messages import Usage

LC_BETA = "context-1m-2025-08-07"


def model(name: str) -> ModelEntry:
    entry = default_catalog().lookup(name)
    assert entry is not None, name
    return entry


SONNET_45 = model("claude-sonnet-4-5-20250929")  # 3 / 3.75 / 6 / 0.30 / 15; LC 6 / 22.50; premium 10%
SONNET_46 = model("claude-sonnet-4-6")  # 3 / 3.75 / 6 / 0.30 / 15; no LC tier; premium 10%
SONNET_4 = model("claude-sonnet-4-20250514")  # as 4.5, LC tier, no premium
SONNET_37 = model("claude-3-7-sonnet-20250219")  # 3 / - / - / - / 15
HAIKU_45 = model("claude-haiku-4-5-20251001")  # 1 / 1.25 / 2 / 0.10 / 5; premium 10%
HAIKU_3 = model("claude-3-haiku-20240307")  # 0.25 / 0.30 / 0.50 / 0.03 / 1.25
OPUS_41 = model("claude-opus-4-1-20250805")  # 15 / 18.75 / 30 / 1.50 / 75; no premium


def cost(
    usage: Usage,
    entry: ModelEntry | None,
    provider: str = "anthropic",
    region: str | None = None,
    betas: tuple[str, ...] = (),
) -> int:
    return cost_micro(usage, entry, provider=provider, region=region, betas=betas)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # input: 1,000,000 x 3 = 3,000,000 (= $3)
        (Usage(input_tokens=1_000_000), 3_000_000),
        # output: 1,000 x 15 = 15,000
        (Usage(output_tokens=1_000), 15_000),
        # cache write without a 5m/1h split counts as 5 minutes: 2,000 x 3.75 = 7,500
        (Usage(cache_creation_input_tokens=2_000), 7_500),
        # split: 400 x 3.75 = 1,500 + 600 x 6 = 3,600 -> 5,100
        (
            Usage(
                cache_creation_input_tokens=1_000,
                cache_creation_5m_input_tokens=400,
                cache_creation_1h_input_tokens=600,
            ),
            5_100,
        ),
        # 1h only: 1,000 x 6 = 6,000
        (Usage(cache_creation_input_tokens=1_000, cache_creation_1h_input_tokens=1_000), 6_000),
        # reads: 1,234 x 0.30 = 370.2 -> 370
        (Usage(cache_read_input_tokens=1_234), 370),
        # everything: 1,000x3 + 500x15 + 2,000x3.75 + 3,000x6 + 10,000x0.3
        #   = 3,000 + 7,500 + 7,500 + 18,000 + 3,000 = 39,000
        (
            Usage(
                input_tokens=1_000,
                output_tokens=500,
                cache_creation_input_tokens=5_000,
                cache_creation_5m_input_tokens=2_000,
                cache_creation_1h_input_tokens=3_000,
                cache_read_input_tokens=10_000,
            ),
            39_000,
        ),
        (Usage(), 0),
    ],
)
def test_each_component(usage: Usage, expected: int) -> None:
    assert cost(usage, SONNET_45) == expected


def test_split_covering_only_part_of_the_writes_bills_the_rest_as_5_minutes() -> None:
    # 1h 1,000 x 6 = 6,000; the 1,000 not covered by the split: 1,000 x 3.75 = 3,750 -> 9,750
    usage = Usage(cache_creation_input_tokens=2_000, cache_creation_1h_input_tokens=1_000)
    assert cost(usage, SONNET_45) == 9_750


def test_model_without_cache_prices_derives_them_from_input() -> None:
    # Sonnet 3.7 input 3: 5m 3.75, 1h 6, read 0.30.
    # 5m (2,000 - 1,000 unsplit) 1,000 x 3.75 = 3,750; 1h 1,000 x 6 = 6,000; reads 1,000 x 0.3 = 300
    usage = Usage(
        cache_creation_input_tokens=2_000, cache_creation_1h_input_tokens=1_000, cache_read_input_tokens=1_000
    )
    assert cost(usage, SONNET_37) == 10_050


class TestLongContext:
    def test_exactly_at_threshold_is_standard(self) -> None:
        # total input 150,000 + 50,000 = 200,000 (not above): 150,000x3 + 50,000x0.3 + 1,000x15
        #   = 450,000 + 15,000 + 15,000 = 480,000
        usage = Usage(input_tokens=150_000, cache_read_input_tokens=50_000, output_tokens=1_000)
        result = price_usage(usage, SONNET_45, provider="anthropic", region=None, betas=[LC_BETA])
        assert result.micro == 480_000
        assert not result.long_context

    def test_one_above_threshold_bills_everything_long(self) -> None:
        # total 200,001: 150,001x6 + 50,000x0.6 + 1,000x22.5 = 900,006 + 30,000 + 22,500 = 952,506
        usage = Usage(input_tokens=150_001, cache_read_input_tokens=50_000, output_tokens=1_000)
        result = price_usage(usage, SONNET_45, provider="anthropic", region=None, betas=["other", LC_BETA])
        assert result.micro == 952_506
        assert result.long_context

    def test_without_the_beta_stays_standard(self) -> None:
        # 150,001x3 + 50,000x0.3 + 1,000x15 = 450,003 + 15,000 + 15,000 = 480,003
        usage = Usage(input_tokens=150_001, cache_read_input_tokens=50_000, output_tokens=1_000)
        assert cost(usage, SONNET_45, betas=("interleaved-thinking-2025-05-14",)) == 480_003

    def test_cache_writes_count_towards_the_threshold_and_use_long_multiples(self) -> None:
        # total 100,000 + 100,000 + 1,000 = 201,000 > 200,000. LC input 6: 5m 7.5, 1h 12.
        # 100,000x6 + 100,000x7.5 + 1,000x12 = 600,000 + 750,000 + 12,000 = 1,362,000
        usage = Usage(
            input_tokens=100_000, cache_creation_input_tokens=101_000, cache_creation_1h_input_tokens=1_000
        )
        assert cost(usage, SONNET_45, betas=(LC_BETA,)) == 1_362_000
        # same tokens on Sonnet 4 (same tier)
        assert cost(usage, SONNET_4, betas=(LC_BETA,)) == 1_362_000

    def test_newer_model_keeps_normal_rates(self) -> None:
        # Sonnet 4.6 has no long-context tier: 300,000 x 3 = 900,000
        assert cost(Usage(input_tokens=300_000), SONNET_46, betas=(LC_BETA,)) == 900_000

    def test_long_context_with_regional_premium(self) -> None:
        # 952,506 x 1.1 = 1,047,756.6 -> 1,047,757
        usage = Usage(input_tokens=150_001, cache_read_input_tokens=50_000, output_tokens=1_000)
        assert cost(usage, SONNET_45, provider="vertex", region="us-east5", betas=(LC_BETA,)) == 1_047_757


class TestRegionalPremium:
    # Haiku 4.5: 1,000 x 1 + 1,000 x 5 = 6,000; with 10%: 6,600
    USAGE = Usage(input_tokens=1_000, output_tokens=1_000)

    @pytest.mark.parametrize(
        ("provider", "region", "expected"),
        [
            ("vertex", "global", 6_000),
            ("vertex", "us-east5", 6_600),
            ("vertex", "us", 6_600),  # multi-region counts as regional
            ("vertex", "eu", 6_600),
            ("vertex", None, 6_000),
            ("anthropic", "us-east5", 6_000),
            ("bedrock", "us-east-1", 6_000),
        ],
    )
    def test_premium(self, provider: str, region: str | None, expected: int) -> None:
        result = price_usage(self.USAGE, HAIKU_45, provider=provider, region=region, betas=())
        assert result.micro == expected
        assert result.premium == (expected != 6_000)

    def test_older_model_has_no_premium(self) -> None:
        # Opus 4.1: 1,000 x 15 + 100 x 75 = 15,000 + 7,500 = 22,500 on any region
        usage = Usage(input_tokens=1_000, output_tokens=100)
        assert cost(usage, OPUS_41, provider="vertex", region="us-east5") == 22_500


def test_unknown_model_is_zero_and_flagged() -> None:
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    assert price_usage(usage, None, provider="anthropic", region=None, betas=()) == UNPRICED
    assert not UNPRICED.priced
    assert cost(usage, None) == 0
    assert not is_priced(None)
    assert is_priced(HAIKU_3)
    assert price_usage(usage, HAIKU_3, provider="anthropic", region=None, betas=()).priced


class TestRounding:
    @pytest.mark.parametrize(
        ("usage", "expected"),
        [
            (Usage(input_tokens=1), 0),  # 0.25 -> 0
            (Usage(input_tokens=2), 1),  # 0.5 -> 1 (half up)
            (Usage(input_tokens=10), 3),  # 2.5 -> 3 (half up, not half even)
            (Usage(cache_read_input_tokens=50), 2),  # 50 x 0.03 = 1.5 -> 2
            # rounded once at the end: 0.25 + 9 x 0.03 = 0.52 -> 1 (per component it would be 0 + 0)
            (Usage(input_tokens=1, cache_read_input_tokens=9), 1),
        ],
    )
    def test_half_up_once(self, usage: Usage, expected: int) -> None:
        assert cost(usage, HAIKU_3) == expected

    def test_decimal_prices_are_exact(self) -> None:
        # 0.30 as a float is 0.2999...; 1,000,000,001 x 0.30 must be 300,000,000.3 -> 300,000,000
        assert cost(Usage(cache_read_input_tokens=1_000_000_001), SONNET_45) == 300_000_000
        # premium on a half: Haiku 3 has none; Haiku 4.5: 5 x 1 = 5 x 1.1 = 5.5 -> 6
        assert cost(Usage(input_tokens=5), HAIKU_45, provider="vertex", region="europe-west1") == 6


class TestMaxCost:
    def max_cost(
        self,
        entry: ModelEntry | None,
        inp: int,
        out: int,
        provider: str = "anthropic",
        region: str | None = None,
        betas: tuple[str, ...] = (),
    ) -> int:
        return max_cost_micro(
            entry, input_tokens_upper=inp, max_tokens=out, provider=provider, region=region, betas=betas
        )

    def test_worst_input_rate_is_the_1h_write(self) -> None:
        # 10,000 x 6 + 1,000 x 15 = 60,000 + 15,000 = 75,000
        assert self.max_cost(SONNET_45, 10_000, 1_000) == 75_000
        # Sonnet 3.7: derived 1h write 3 x 2 = 6: same
        assert self.max_cost(SONNET_37, 10_000, 1_000) == 75_000

    def test_long_context_when_it_could_apply(self) -> None:
        # 300,000 x 12 (LC 1h write) + 1,000 x 22.5 = 3,600,000 + 22,500 = 3,622,500
        assert self.max_cost(SONNET_45, 300_000, 1_000, betas=(LC_BETA,)) == 3_622_500
        # at the threshold it cannot apply: 200,000 x 6 + 1,000 x 15 = 1,215,000
        assert self.max_cost(SONNET_45, 200_000, 1_000, betas=(LC_BETA,)) == 1_215_000
        # no beta: 300,000 x 6 + 15,000 = 1,815,000
        assert self.max_cost(SONNET_45, 300_000, 1_000) == 1_815_000

    def test_premium_and_rounding_up(self) -> None:
        # 75,000 x 1.1 = 82,500
        assert self.max_cost(SONNET_45, 10_000, 1_000, provider="vertex", region="us") == 82_500
        assert self.max_cost(SONNET_45, 10_000, 1_000, provider="vertex", region="global") == 75_000
        # Haiku 3: 1 x 0.50 + 1 x 1.25 = 1.75 -> 2 (up: a reservation never falls short)
        assert self.max_cost(HAIKU_3, 1, 1) == 2

    def test_max_cost_bounds_any_actual_cost(self) -> None:
        inp, out = 250_000, 4_000
        worst = self.max_cost(SONNET_45, inp, out, provider="vertex", region="us-east5", betas=(LC_BETA,))
        for usage in (
            Usage(input_tokens=inp, output_tokens=out),
            Usage(cache_creation_input_tokens=inp, cache_creation_1h_input_tokens=inp, output_tokens=out),
            Usage(input_tokens=1, cache_creation_input_tokens=inp - 1, output_tokens=out),
            Usage(cache_read_input_tokens=inp, output_tokens=out),
        ):
            assert cost(usage, SONNET_45, provider="vertex", region="us-east5", betas=(LC_BETA,)) <= worst

    def test_unknown_model(self) -> None:
        assert self.max_cost(None, 10_000, 1_000) == 0


class TestEstimate:
    def test_ratio(self) -> None:
        assert estimate_input_tokens(0) == 512
        assert estimate_input_tokens(1_000) == 500 + 512
        assert estimate_input_tokens(1_001) == 501 + 512

    def test_bounds_a_typical_body(self) -> None:
        # English prose is ~4 bytes a token; the estimate must stay above that.
        text = "The quick brown fox jumps over the lazy dog. " * 2_000
        body = json.dumps(
            {
                "model": "claude-sonnet-4-5",
                "max_tokens": 1024,
                "messages": [{"role": "user", "content": text}],
            }
        )
        assert estimate_input_tokens(len(body.encode())) > len(text) // 4
        # CJK in UTF-8: 3 bytes a character, generously 1.5 tokens a character
        cjk = "这是一个测试句子。" * 1_000
        body = json.dumps({"messages": [{"role": "user", "content": cjk}]}, ensure_ascii=False)
        assert estimate_input_tokens(len(body.encode())) >= int(len(cjk) * 1.5)


def _decimal(value: float) -> Decimal:
    return Decimal(str(value))


class TestIntegerRates:
    """Prices are computed with integer rates; the `Decimal` arithmetic on the catalog's prices
    as written is the reference they must match to the micro-dollar."""

    @staticmethod
    def reference(
        usage: Usage, entry: ModelEntry, provider: str, region: str | None, betas: tuple[str, ...]
    ) -> tuple[int, int]:
        """(cost, worst case for the same input and output) by Decimal arithmetic."""
        d = _decimal
        p = entry.prices
        five = usage.cache_creation_5m_input_tokens
        hour = usage.cache_creation_1h_input_tokens
        five += max(0, usage.cache_creation_input_tokens - five - hour)
        total = usage.input_tokens + five + hour + usage.cache_read_input_tokens
        lc = entry.long_context
        if lc is not None and lc.beta in betas and total > lc.threshold:
            inp, out = d(lc.input), d(lc.output)
            w5, w1, read = inp * Decimal("1.25"), inp * 2, inp * Decimal("0.1")
        else:
            inp, out = d(p.input), d(p.output)
            w5 = d(p.cache_write_5m) if p.cache_write_5m is not None else inp * Decimal("1.25")
            w1 = d(p.cache_write_1h) if p.cache_write_1h is not None else inp * 2
            read = d(p.cache_read) if p.cache_read is not None else inp * Decimal("0.1")
        factor = Decimal(1)
        if provider == "vertex" and region not in (None, "global"):
            factor += d(entry.vertex_regional_premium)
        raw = usage.input_tokens * inp + usage.output_tokens * out + five * w5 + hour * w1
        raw += usage.cache_read_input_tokens * read
        priced = int((raw * factor).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        # The worst case of an input bound of `total` and an output bound of the output tokens
        # (the long-context tier is judged on the bound, as it is here).
        worst = (total * max(inp, w5, w1) + usage.output_tokens * out) * factor
        return priced, int(worst.to_integral_value(rounding=ROUND_CEILING))

    def test_every_catalog_model_matches_decimal_arithmetic(self) -> None:
        rng = random.Random(8)
        places = [("anthropic", None), ("bedrock", "us-east-1"), ("vertex", "global"), ("vertex", "us-east5")]
        for entry in default_catalog().entries:
            for _ in range(200):
                five, hour = (
                    rng.choice([0, rng.randrange(0, 50_000)]),
                    rng.choice([0, rng.randrange(0, 9_999)]),
                )
                usage = Usage(
                    input_tokens=rng.choice([0, 1, 2, 3, rng.randrange(0, 400_000)]),
                    output_tokens=rng.choice([0, 1, rng.randrange(0, 64_000)]),
                    cache_creation_input_tokens=five + hour + rng.choice([0, 0, rng.randrange(0, 999)]),
                    cache_creation_5m_input_tokens=five,
                    cache_creation_1h_input_tokens=hour,
                    cache_read_input_tokens=rng.choice([0, 1, 7, rng.randrange(0, 300_000)]),
                )
                provider, region = rng.choice(places)
                betas = rng.choice([(), (LC_BETA,)])
                priced, worst = self.reference(usage, entry, provider, region, betas)
                assert cost(usage, entry, provider, region, betas) == priced, (entry.id, usage, region, betas)
                inputs = (
                    usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
                )
                assert (
                    max_cost_micro(
                        entry,
                        input_tokens_upper=inputs,
                        max_tokens=usage.output_tokens,
                        provider=provider,
                        region=region,
                        betas=betas,
                    )
                    == worst
                ), (entry.id, usage, region, betas)

    def test_rates_finer_than_the_integer_scale_are_priced_exactly(self) -> None:
        # A price of ten decimals does not scale to an integer: the Decimal path prices it.
        fine = dataclasses.replace(
            SONNET_45, id="fine", prices=Prices(input=0.0000000001, output=15.0000000003), long_context=None
        )
        usage = Usage(input_tokens=10**12, output_tokens=10**9)
        # 10^12 x 10^-10 = 100; 10^9 x 15.0000000003 = 15,000,000,000.3 -> 15,000,000,100 in all
        assert cost(usage, fine) == 15_000_000_100
        assert cost(usage, fine, "vertex", "us-east5") == 16_500_000_110  # x 1.1
        worst = max_cost_micro(
            fine, input_tokens_upper=10**12, max_tokens=10**9, provider="anthropic", region=None, betas=()
        )
        # every input token at the derived 1h write rate (2 x 10^-10): 200 + 15,000,000,000.3, up
        assert worst == 15_000_000_201
        assert pricing._rates(fine).base_scaled is None  # (it did take the Decimal path)

    def test_half_a_micro_dollar_rounds_away_from_zero_either_way(self) -> None:
        assert cost(Usage(input_tokens=2), HAIKU_3) == 1  # 0.5
        assert cost(Usage(input_tokens=-2), HAIKU_3) == -1  # -0.5: as Decimal's ROUND_HALF_UP
