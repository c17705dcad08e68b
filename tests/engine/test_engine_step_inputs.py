"""The step-input builder: what one step uploads, checked array by array on the CPU."""

from __future__ import annotations

import numpy as np
import torch

from perfloop.engine.sampling_params import SamplingParams
from perfloop.engine.sequence import PLACEHOLDER, Sequence
from perfloop.engine.step_inputs import build_step_inputs, pack, unpack


def _seq(tokens: list[int], computed: int, blocks: list[int], pending: int | None = None) -> Sequence:
    seq = Sequence("r", tokens, SamplingParams())
    seq.num_computed, seq.block_table, seq.pending_index = computed, blocks, pending
    return seq


def test_decode_step_reads_one_token_per_sequence_and_gathers_placeholders() -> None:
    a = _seq([5, 6, 7, PLACEHOLDER], computed=3, blocks=[4], pending=1)  # token in flight, row 1
    b = _seq([9] * 5, computed=4, blocks=[2, 8])  # last token known on the host
    x = build_step_inputs([a, b], [1, 1], block_size=4)
    assert x.input_ids.tolist() == [PLACEHOLDER, 9]
    assert x.positions.tolist() == [3, 4]
    assert x.slot_mapping.tolist() == [4 * 4 + 3, 8 * 4 + 0]  # block_table[pos // 4] * 4 + pos % 4
    assert x.seq_lens.tolist() == [4, 5]
    assert x.query_start_loc.tolist() == [0, 1, 2]
    assert x.block_tables.tolist() == [[4, 0], [2, 8]]  # padded with block 0
    assert x.sample_rows.tolist() == [0, 1] and x.samples_every_row
    assert (x.pending_dest.tolist(), x.pending_src.tolist()) == ([0], [1])


def test_mixed_step_samples_only_finished_prompts() -> None:
    chunk = _seq(list(range(10)), computed=0, blocks=[0, 1, 2])  # first 6 of 10 prompt tokens
    rest = _seq(list(range(20, 27)), computed=4, blocks=[3, 5])  # last 3 of its 7 prompt tokens
    x = build_step_inputs([chunk, rest], [6, 3], block_size=4)
    assert x.input_ids.tolist() == [0, 1, 2, 3, 4, 5, 24, 25, 26]
    assert x.positions.tolist() == [0, 1, 2, 3, 4, 5, 4, 5, 6]
    assert x.slot_mapping.tolist() == [0, 1, 2, 3, 4, 5, 20, 21, 22]
    assert x.seq_lens.tolist() == [6, 7]
    assert x.query_start_loc.tolist() == [0, 6, 9]
    assert x.sample_rows.tolist() == [8] and not x.samples_every_row  # the chunk samples nothing yet
    assert x.pending_dest.size == x.pending_src.size == 0


def test_pack_aligns_every_part_and_unpack_restores_them() -> None:
    x = build_step_inputs([_seq([1, 2, 3], 0, [7])], [3], block_size=4)
    packed, sizes = pack(x)
    assert packed.dtype == np.int64
    assert sizes == [3, 3, 3, 1, 2, 1, 1, 0, 0]
    assert packed.size == sum(n + n % 2 for n in sizes)  # each part padded to 16 bytes
    parts = unpack(torch.from_numpy(packed), sizes)
    expected = [x.input_ids, x.positions, x.slot_mapping, x.seq_lens, x.query_start_loc,
                x.block_tables.ravel(), x.sample_rows, x.pending_dest, x.pending_src]  # fmt: skip
    assert [p.tolist() for p in parts] == [e.tolist() for e in expected]
