"""The price table: what a model's tokens are estimated to cost, and refusing models it lacks."""

from __future__ import annotations

import pytest

from perfloop.loop.patchers.anthropic import AnthropicPatcher, ApiSettings
from perfloop.loop.pricing import TokenUsage, UnknownModelError, calls_usd, cost_usd, prices_for


def test_each_token_kind_has_its_own_rate() -> None:
    usage = TokenUsage(
        input_tokens=1_000_000,
        output_tokens=1_000_000,
        cache_creation_input_tokens=1_000_000,
        cache_read_input_tokens=1_000_000,
    )
    assert cost_usd("claude-opus-4-5", usage) == pytest.approx(5 + 25 + 6.25 + 0.50)
    assert cost_usd("claude-sonnet-5-5", usage) == pytest.approx(2 + 10 + 2.50 + 0.10)


def test_dated_ids_take_their_family_and_the_longest_prefix_wins() -> None:
    assert prices_for("claude-opus-4-5-20251101") == prices_for("claude-opus-4-5")
    assert prices_for("claude-opus-5-5")["input"] == 4.0  # not claude-opus-5's $5
    assert prices_for("claude-fable-5-1")["cache_read"] == 0.25


def test_haiku_5_5_long_prompts_pay_the_higher_tier_per_call() -> None:
    short = TokenUsage(input_tokens=50_000, output_tokens=1_000)
    long = TokenUsage(input_tokens=20_000, cache_read_input_tokens=90_000, output_tokens=1_000)
    assert cost_usd("claude-haiku-5-5", short) == pytest.approx((50_000 * 0.10 + 1_000 * 0.50) / 1e6)
    assert cost_usd("claude-haiku-5-5", long) == pytest.approx(
        (20_000 * 0.50 + 90_000 * 0.05 + 1_000 * 2.50) / 1e6
    )
    assert calls_usd("claude-haiku-5-5", [short, long]) == pytest.approx(
        cost_usd("claude-haiku-5-5", short) + cost_usd("claude-haiku-5-5", long)
    )


def test_a_model_without_a_price_is_refused_before_any_spend() -> None:
    with pytest.raises(UnknownModelError, match="--model: no price for 'gpt-x'"):
        AnthropicPatcher(ApiSettings(model="gpt-x"))
