"""Block-manager properties under arbitrary allocate / append / free sequences."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from perfloop.engine.block_manager import BlockManager
from perfloop.engine.sampling_params import SamplingParams
from perfloop.engine.sequence import Sequence

ops = st.lists(
    st.tuples(st.sampled_from(["new", "append", "free"]), st.integers(0, 7), st.integers(1, 40)),
    max_size=60,
)


def _check(bm: BlockManager, live: dict[int, Sequence]) -> None:
    refs = [b.ref_count for b in bm.blocks]
    assert min(refs) >= 0
    used = sum(1 for r in refs if r > 0)
    assert used + bm.num_free == bm.num_blocks
    held: dict[int, int] = {}
    for seq in live.values():
        for b in seq.block_table:
            held[b] = held.get(b, 0) + 1
    assert all(bm.blocks[b].ref_count == n for b, n in held.items())
    assert used == len(held)  # no leaks: every used block is held by a live sequence


@settings(max_examples=200, deadline=None)
@given(ops=ops, caching=st.booleans())
def test_no_leaks_and_consistent_refcounts(ops, caching: bool) -> None:
    bm = BlockManager(num_blocks=24, block_size=4, enable_prefix_caching=caching)
    live: dict[int, Sequence] = {}
    for op, key, n in ops:
        if op == "new" and key not in live:
            # Few distinct token patterns, so prefixes are shared and cache hits happen.
            seq = Sequence(str(key), [key % 2] * n, SamplingParams())
            bm.match_prefix(seq)
            if bm.allocate(seq, seq.num_uncomputed):
                seq.num_computed = seq.num_tokens
                bm.commit_full_blocks(seq)
                live[key] = seq
            else:
                bm.free_seq(seq)
        elif op == "append" and key in live:
            seq = live[key]
            seq.token_ids.extend([7] * n)
            if bm.allocate(seq, seq.num_uncomputed):
                seq.num_computed = seq.num_tokens
                bm.commit_full_blocks(seq)
            else:
                del seq.token_ids[seq.num_computed :]
        elif op == "free" and key in live:
            bm.free_seq(live.pop(key))
        _check(bm, live)
    for seq in live.values():
        bm.free_seq(seq)
    assert bm.num_free == bm.num_blocks


def test_prefix_hit_requires_matching_tokens_and_reuses_lru() -> None:
    bm = BlockManager(num_blocks=4, block_size=2, enable_prefix_caching=True)
    a = Sequence("a", [1, 2, 3, 4, 5], SamplingParams())
    assert bm.allocate(a, 5)
    a.num_computed = 5
    bm.commit_full_blocks(a)
    bm.free_seq(a)
    b = Sequence("b", [1, 2, 3, 4, 9], SamplingParams())
    assert bm.match_prefix(b) == 4  # two full blocks shared; the last token is recomputed
    c = Sequence("c", [1, 2, 8, 4, 9], SamplingParams())
    assert bm.match_prefix(c) == 2  # diverges in block 2, so only block 1 matches
