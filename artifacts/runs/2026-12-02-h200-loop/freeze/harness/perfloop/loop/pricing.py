"""API prices per model and the cost of a call's token usage.

US dollars per million tokens, from Anthropic's pricing page
(https://platform.claude.com/docs/en/about-claude/pricing) as read on PRICES_AS_OF; check
them there before trusting an estimate, and add a row for a new model (an unknown model is
refused, since its spend could not be capped). Cache writes are the 5-minute kind. Haiku 5.5
bills a whole request at its long-prompt rates once the prompt (input plus cache reads and
writes) passes 100k tokens; each call is priced on its own for that reason.
"""

from __future__ import annotations

from perfloop.ledger.records import TokenUsage

PRICES_AS_OF = "2026-11-22"

Rates = dict[str, float]


def _rates(inp: float, out: float, write: float, read: float) -> Rates:
    return {"input": inp, "output": out, "cache_write": write, "cache_read": read}


# model id prefix -> rates; the longest matching prefix wins, so dated ids match their family.
PRICES: dict[str, Rates] = {
    "claude-fable-5-1": _rates(10.0, 50.0, 12.50, 0.25),
    "claude-fable-5": _rates(10.0, 50.0, 12.50, 1.00),
    "claude-opus-5-5": _rates(4.0, 20.0, 5.00, 0.20),
    "claude-opus-5": _rates(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-8": _rates(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-7": _rates(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-6": _rates(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-5": _rates(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-1": _rates(15.0, 75.0, 18.75, 1.50),
    "claude-sonnet-5-5": _rates(2.0, 10.0, 2.50, 0.10),  # cache reads cut from $0.20 on 2026-10-07
    "claude-sonnet-5": _rates(2.0, 10.0, 2.50, 0.20),
    "claude-sonnet-4-6": _rates(3.0, 15.0, 3.75, 0.30),
    "claude-sonnet-4-5": _rates(3.0, 15.0, 3.75, 0.30),
    "claude-haiku-5-5": _rates(0.10, 0.50, 0.125, 0.01),
    "claude-haiku-4-5": _rates(1.0, 5.0, 1.25, 0.10),
}
# model id prefix -> (prompt tokens above which the whole request pays the second row's rates).
LONG_PROMPT: dict[str, tuple[int, Rates]] = {
    "claude-haiku-5-5": (100_000, _rates(0.50, 2.50, 0.625, 0.05)),
}


class UnknownModelError(ValueError):
    """A model with no entry in the price table: its spend could not be capped."""


def prices_for(model: str) -> Rates:
    """The base rates of a model id (longest matching prefix)."""
    return PRICES[_family(model)]


def worst_rates(model: str) -> Rates:
    """The highest rate of each kind a call on `model` may pay (for capping before the call)."""
    family = _family(model)
    rows = [PRICES[family]] + ([LONG_PROMPT[family][1]] if family in LONG_PROMPT else [])
    return {kind: max(row[kind] for row in rows) for kind in PRICES[family]}


def _family(model: str) -> str:
    matches = [prefix for prefix in PRICES if model.startswith(prefix)]
    if not matches:
        known = ", ".join(sorted(PRICES))
        raise UnknownModelError(
            f"--model: no price for {model!r} in perfloop/loop/pricing.py (known: {known}); "
            "spend caps need one, so add its row"
        )
    return max(matches, key=len)


def cost_usd(model: str, usage: TokenUsage) -> float:
    """Estimated US dollars of ONE call's `usage` on `model` (long-prompt tiers apply per call)."""
    family = _family(model)
    p = PRICES[family]
    prompt = usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
    if family in LONG_PROMPT and prompt > LONG_PROMPT[family][0]:
        p = LONG_PROMPT[family][1]
    total = (
        usage.input_tokens * p["input"]
        + usage.output_tokens * p["output"]
        + usage.cache_creation_input_tokens * p["cache_write"]
        + usage.cache_read_input_tokens * p["cache_read"]
    )
    return total / 1_000_000


def calls_usd(model: str, calls: list[TokenUsage]) -> float:
    """Estimated US dollars of a list of calls, each priced on its own."""
    return sum(cost_usd(model, u) for u in calls)
