"""Host time of one mixed step's inputs (build + pack): 256 sequences, 200 decoding, 56 whole prompts.

Run from a checkout (the engine it imports is the current folder's): `python step_inputs_bench.py`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from perfloop.engine.step_inputs import build_step_inputs, pack


@dataclass
class Seq:
    token_ids: list[int]
    block_table: list[int]
    num_computed: int
    pending_index: int | None = None


def batch() -> tuple[list[Seq], list[int]]:
    """200 sequences decoding one token and 56 prefilling their whole 400-700-token prompts."""
    rng = random.Random(0)
    seqs, num_new = [], []
    for i in range(256):
        length = rng.randint(400, 700)
        computed = length + rng.randint(0, 50) if i < 200 else 0
        tokens = list(range(computed + 1 if i < 200 else length))
        blocks = list(range(i * 50, i * 50 + (len(tokens) + 15) // 16 + 1))
        seqs.append(Seq(tokens, blocks, computed))
        num_new.append(1 if i < 200 else length)
    return seqs, num_new


def ms_per_step(seqs: list[Seq], num_new: list[int], reps: int = 50) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        pack(build_step_inputs(seqs, num_new, 16))
    return (time.perf_counter() - start) / reps * 1e3


if __name__ == "__main__":
    seqs, num_new = batch()
    best = min(ms_per_step(seqs, num_new) for _ in range(5))
    print(f"tokens {sum(num_new)} seqs {len(seqs)}: {best:.2f} ms per build+pack")
