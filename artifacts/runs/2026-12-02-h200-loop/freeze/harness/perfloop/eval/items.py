"""The shipped task set: short multiple-choice items generated deterministically, no download.

Scored by loglikelihood of each choice after the context (what lm-eval calls a loglikelihood
request), so any OpenAI-compatible server with `echo` + `logprobs` can be evaluated, item by item.
The families were kept because SmolLM2-135M-Instruct answers them well above chance (README of
`artifacts/runs/2026-12-02-cpu-accuracy/`); a user's own JSONL in the same format replaces them.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Japan", "Tokyo"), ("Russia", "Moscow"), ("Egypt", "Cairo"), ("China", "Beijing"),
    ("England", "London"), ("Greece", "Athens"), ("Portugal", "Lisbon"), ("Austria", "Vienna"),
    ("Ireland", "Dublin"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Poland", "Warsaw"),
    ("Thailand", "Bangkok"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Cuba", "Havana"),
]  # fmt: skip
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip
OPPOSITES = [
    ("hot", "cold"), ("up", "down"), ("big", "small"), ("day", "night"), ("fast", "slow"),
    ("happy", "sad"), ("open", "closed"), ("light", "dark"), ("old", "young"), ("wet", "dry"),
    ("early", "late"), ("full", "empty"), ("hard", "soft"), ("left", "right"), ("rich", "poor"),
]  # fmt: skip


class Item(BaseModel):
    """One question: the context, its choices (each scored as a continuation) and the right one."""

    model_config = ConfigDict(extra="forbid")
    id: str
    context: str
    choices: list[str] = Field(min_length=2)
    answer: int = Field(ge=0)

    @property
    def prompt_hash(self) -> str:
        """SHA-256 (16 hex) of context and choices: pairs results of the same question across runs."""
        text = json.dumps([self.context, self.choices], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _mc(rng: random.Random, id: str, context: str, right: str, pool: list[str], k: int = 4) -> Item:
    wrong = rng.sample([p for p in pool if p != right], k - 1)
    choices = [right, *wrong]
    rng.shuffle(choices)
    return Item(id=id, context=context, choices=[f" {c}" for c in choices], answer=choices.index(right))


def builtin_items(seed: int = 0) -> list[Item]:
    """The shipped set: capitals, next weekday, next month, opposites, next number (84 items)."""
    rng = random.Random(seed)
    capitals = [c for _, c in CAPITALS]
    items = [_mc(rng, f"capital-{n.lower()}", f"The capital of {n} is", c, capitals) for n, c in CAPITALS]
    items += [
        _mc(rng, f"day-{i}", f"{DAYS[i]}, {DAYS[(i + 1) % 7]}, {DAYS[(i + 2) % 7]},", DAYS[(i + 3) % 7], DAYS)
        for i in range(7)
    ]
    items += [
        _mc(rng, f"month-{i}", f"{MONTHS[i]}, {MONTHS[(i + 1) % 12]},", MONTHS[(i + 2) % 12], MONTHS)
        for i in range(12)
    ]
    words = [w for pair in OPPOSITES for w in pair]
    items += [_mc(rng, f"opposite-{a}", f"The opposite of {a} is", b, words) for a, b in OPPOSITES]
    for i in range(30):
        start, step = rng.randint(1, 40), rng.choice([1, 2, 5, 10])
        seq = [start + step * j for j in range(4)]
        nxt = start + step * 4
        pool = sorted({str(nxt + d) for d in (-step, step, 1, -1, 2 * step, 3) if nxt + d > 0} - {str(nxt)})
        items.append(_mc(rng, f"count-{i}", ", ".join(map(str, seq)) + ",", str(nxt), pool))
    return items


def load_items(path: Path | None) -> list[Item]:
    """Items of a user JSONL (`{"id", "context", "choices", "answer"}` per line), or the shipped set."""
    if path is None:
        return builtin_items()
    items = [Item.model_validate_json(line) for line in Path(path).read_text().splitlines() if line.strip()]
    for item in items:
        if item.answer >= len(item.choices):
            raise ValueError(f"{path}: item {item.id}: answer {item.answer} is not one of its choices")
    return items


def spread(items: list[Item], count: int | None) -> list[Item]:
    """`count` items evenly spaced over the set (every family represented), or all of them."""
    if count is None or count >= len(items):
        return items
    return [items[i * len(items) // count] for i in range(count)]
