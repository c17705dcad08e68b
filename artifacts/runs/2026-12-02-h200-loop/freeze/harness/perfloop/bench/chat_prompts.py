"""Deterministic real-text chat prompts, written as a ShareGPT-format file for text workloads.

Peers such as llama.cpp's server take text prompts only (token-id lists get a 422), so a
benchmark across engines needs text. `write_chat_dataset` composes English requests from
a fixed bank of sentences (seeded), sized in tokens with the model's own tokenizer, and
renders each through the model's chat template: the `sharegpt` workload then sends the
very same chat-formatted text to every side (`--dataset-name sharegpt --dataset-path F`).
Nothing is downloaded.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

_TASKS = (
    "Summarise the notes below in three short bullet points.",
    "Read the passage and explain its main idea to a curious student.",
    "Write a short friendly email that shares the key facts from these notes.",
    "List the questions a careful reader might still have after reading this.",
    "Rewrite the following notes as a clear paragraph for a newsletter.",
    "Which claim in the text below is the most surprising, and why?",
)
_FACTS = (
    "The river that runs through the old town floods almost every spring.",
    "Volunteers planted four hundred oak trees along the northern road last year.",
    "The library now opens at eight in the morning and closes at nine in the evening.",
    "Bees visit lavender and thyme more often than most other garden plants.",
    "A small bakery on the main square sells bread made from local wheat.",
    "The museum's new exhibition follows the history of clocks from sundials to atomic time.",
    "Cycling to work has become more popular since the city built protected bike lanes.",
    "The school choir practises twice a week and performs at the winter festival.",
    "Heavy rain delayed the harvest, but the apples were sweeter than usual.",
    "The observatory on the hill offers free telescope nights on clear Fridays.",
    "Engineers replaced the old bridge with a lighter steel structure in six months.",
    "Most visitors arrive by train, since parking near the harbour is limited.",
    "The community garden shares its tools, seeds and compost with every member.",
    "A local study found that children read more when the library added comic books.",
    "The town council plans to cover the market hall roof with solar panels.",
    "Fishermen report that the cod return to the bay later each year.",
    "The hiking trail to the lake takes about three hours at an easy pace.",
    "Two new electric buses now connect the station with the hospital.",
    "The annual book fair raised enough money to repair the theatre's piano.",
    "Night temperatures in the valley can drop below freezing even in May.",
    "The cheese made in the mountain villages is aged in cool stone cellars.",
    "A retired teacher runs free chess lessons in the park on Sunday mornings.",
    "The recycling centre now accepts old phones, batteries and light bulbs.",
    "Scientists measured the glacier and found it had retreated by forty metres.",
)


class ChatDatasetError(ValueError):
    """Bad generator input; the message names the bad value."""


def compose_request(rng: random.Random, target_tokens: int, count_tokens: Callable[[str], int]) -> str:
    """One user request: a task line and facts appended until the text has ~target_tokens tokens."""
    text = rng.choice(_TASKS) + "\n\n"
    while count_tokens(text) < target_tokens:
        text += rng.choice(_FACTS) + " "
    return text.rstrip()


def write_chat_dataset(
    model: str, out: Path, num_prompts: int = 16, min_tokens: int = 128, max_tokens: int = 512, seed: int = 0
) -> Path:
    """Write `num_prompts` chat-formatted prompts of min..max tokens (model's tokenizer) to `out`."""
    from perfloop.engine.models.config import ModelConfig
    from perfloop.engine.models.presets import resolve_model
    from perfloop.engine.tokenizer import load_tokenizer

    if num_prompts < 1:
        raise ChatDatasetError(f"num_prompts: must be >= 1, got {num_prompts}")
    if not 1 <= min_tokens <= max_tokens:
        raise ChatDatasetError(f"tokens: need 1 <= min ({min_tokens}) <= max ({max_tokens})")
    path = resolve_model(model)
    cfg = ModelConfig.from_dir(path)
    tok = load_tokenizer(path, cfg.vocab_size, None)
    rng = random.Random(seed)
    # Size the whole rendered prompt: the template adds a system turn and role markers.
    overhead = len(tok.encode(tok.apply_chat_template([{"role": "user", "content": ""}])))
    conversations = []
    for i in range(num_prompts):
        target = rng.randint(min_tokens, max_tokens)
        request = compose_request(rng, max(target - overhead, 1), lambda t: len(tok.encode(t)))
        prompt = tok.apply_chat_template([{"role": "user", "content": request}])
        turns = [{"from": "human", "value": prompt}, {"from": "gpt", "value": ""}]
        conversations.append({"id": f"chat-{seed}-{i}", "conversations": turns})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(conversations, indent=1))
    return out
