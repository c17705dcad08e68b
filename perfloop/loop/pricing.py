"""API prices per model and the cost of a call's token usage.

Prices are US dollars per million tokens, copied from Anthropic's public pricing page on
PRICES_AS_OF; check them there before trusting a cost estimate. Cache writes are the
5-minute kind (1.25x input), cache reads 0.1x input. Long-context surcharges (Sonnet
requests over 200k input tokens) are not modelled, so estimates are a floor there.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

PRICES_AS_OF = "2025-11-24"

# model id prefix -> USD per MTok: input, output, cache write (5 min), cache read.
PRICES: dict[str, dict[str, float]] = {
    "claude-opus-4-5": {"input": 5.0, "output": 25.0, "cache_write": 6.25, "cache_read": 0.50},
    "claude-opus-4-1": {"input": 15.0, "output": 75.0, "cache_write": 18.75, "cache_read": 1.50},
    "claude-opus-4": {"input": 15.0, "output": 75.0, "cache_write": 18.75, "cache_read": 1.50},
    "claude-sonnet-4-5": {"input": 3.0, "output": 15.0, "cache_write": 3.75, "cache_read": 0.30},
    "claude-sonnet-4": {"input": 3.0, "output": 15.0, "cache_write": 3.75, "cache_read": 0.30},
    "claude-haiku-4-5": {"input": 1.0, "output": 5.0, "cache_write": 1.25, "cache_read": 0.10},
    "claude-3-5-haiku": {"input": 0.80, "output": 4.0, "cache_write": 1.0, "cache_read": 0.08},
}


class UnknownModelError(ValueError):
    """A model with no entry in the price table: its spend could not be capped."""


class TokenUsage(BaseModel):
    """Token counts as the Messages API reports them in `usage` (summed over calls)."""

    model_config = ConfigDict(extra="forbid")
    input_tokens: int = Field(0, ge=0, description="Uncached input tokens.")
    output_tokens: int = Field(0, ge=0)
    cache_creation_input_tokens: int = Field(0, ge=0, description="Input tokens written to the cache.")
    cache_read_input_tokens: int = Field(0, ge=0, description="Input tokens read from the cache.")

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens + other.cache_read_input_tokens,
        )


def prices_for(model: str) -> dict[str, float]:
    """The price row of a model id; the longest matching prefix wins (dated ids match their family)."""
    matches = [prefix for prefix in PRICES if model.startswith(prefix)]
    if not matches:
        known = ", ".join(sorted(PRICES))
        raise UnknownModelError(
            f"--model: no price for {model!r} in perfloop/loop/pricing.py (known: {known}); "
            "spend caps need one, so add its row"
        )
    return PRICES[max(matches, key=len)]


def cost_usd(model: str, usage: TokenUsage) -> float:
    """Estimated US dollars of `usage` on `model`."""
    p = prices_for(model)
    total = (
        usage.input_tokens * p["input"]
        + usage.output_tokens * p["output"]
        + usage.cache_creation_input_tokens * p["cache_write"]
        + usage.cache_read_input_tokens * p["cache_read"]
    )
    return total / 1_000_000
