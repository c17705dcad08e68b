"""The host-side inputs of one engine step, built from the scheduled sequences (pure numpy, no device).

`build_step_inputs` flattens a batch into the nine int64 arrays a step needs; `pack` lays them
out as one array so the runner uploads them with a single copy, and `unpack` splits the uploaded
tensor back into the nine parts. Tokens still in flight (placeholders, see `runner.py`) appear
as -1 in `input_ids`; `pending_dest`/`pending_src` say where the device finds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np
import torch


class StepSequence(Protocol):
    """What the builder reads of a sequence (`engine.sequence.Sequence` has it)."""

    token_ids: list[int]
    block_table: list[int]
    num_computed: int
    pending_index: int | None


@dataclass
class StepInputs:
    """One step's host arrays, in upload order; T = new tokens, B = sequences."""

    input_ids: np.ndarray  # [T] token ids, -1 where the previous step's token is still in flight
    positions: np.ndarray  # [T] position of each token in its sequence
    slot_mapping: np.ndarray  # [T] KV-cache slot (block * block_size + offset) each token writes
    seq_lens: np.ndarray  # [B] tokens in the cache after this step
    query_start_loc: np.ndarray  # [B + 1] first row of each sequence in the flattened tokens
    block_tables: np.ndarray  # [B, widest table] padded with block 0
    sample_rows: np.ndarray  # rows whose logits are sampled: the last row of every finished prompt
    pending_dest: np.ndarray  # rows of input_ids that are placeholders ...
    pending_src: np.ndarray  # ... and their rows in the previous step's sampled tokens

    @property
    def samples_every_row(self) -> bool:
        """Every row is sampled (pure decode): the logits need no gather."""
        return self.sample_rows.size == self.input_ids.size


def build_step_inputs(seqs: Sequence[StepSequence], num_new: Sequence[int], block_size: int) -> StepInputs:
    """The step inputs of `seqs`, each computing its next `num_new[i]` tokens."""
    if max(num_new) == 1:
        ids, positions, slots = _decode_tokens(seqs, block_size)
    else:
        ids, positions, slots = _prefill_tokens(seqs, num_new, block_size)
    seq_lens = np.asarray([s.num_computed + n for s, n in zip(seqs, num_new, strict=True)], dtype=np.int64)
    starts = np.cumsum([0, *num_new], dtype=np.int64)
    last_rows = starts[1:] - 1
    sampled = seq_lens == np.asarray([len(s.token_ids) for s in seqs])
    pending = [
        (int(row), s.pending_index)
        for row, s in zip(last_rows, seqs, strict=True)
        if s.pending_index is not None
    ]
    return StepInputs(
        input_ids=ids,
        positions=positions,
        slot_mapping=slots,
        seq_lens=seq_lens,
        query_start_loc=starts,
        block_tables=_block_tables(seqs),
        sample_rows=last_rows[sampled],
        pending_dest=_int64([row for row, _ in pending]),
        pending_src=_int64([src for _, src in pending]),
    )


def _decode_tokens(seqs: Sequence[StepSequence], bs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One token per sequence: plain lists, no per-token numpy work (the hot path)."""
    pos = [s.num_computed for s in seqs]
    ids = [s.token_ids[p] for s, p in zip(seqs, pos, strict=True)]
    slots = [s.block_table[p // bs] * bs + p % bs for s, p in zip(seqs, pos, strict=True)]
    return _int64(ids), _int64(pos), _int64(slots)


def _prefill_tokens(
    seqs: Sequence[StepSequence], num_new: Sequence[int], bs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each sequence's next num_new tokens, flattened."""
    spans = [np.arange(s.num_computed, s.num_computed + n) for s, n in zip(seqs, num_new, strict=True)]
    ids = [t for s, n in zip(seqs, num_new, strict=True) for t in s.token_ids[s.num_computed :][:n]]
    slots = [np.asarray(s.block_table)[p // bs] * bs + p % bs for s, p in zip(seqs, spans, strict=True)]
    return _int64(ids), np.concatenate(spans).astype(np.int64), np.concatenate(slots).astype(np.int64)


def _block_tables(seqs: Sequence[StepSequence]) -> np.ndarray:
    width = max(len(s.block_table) for s in seqs)
    return _int64([s.block_table + [0] * (width - len(s.block_table)) for s in seqs])


def _int64(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def pack(inputs: StepInputs) -> tuple[np.ndarray, list[int]]:
    """One int64 array holding every part, and the parts' sizes.

    Every part starts on a 16-byte boundary (padded to an even length): Triton compiles one
    kernel variant per pointer alignment.
    """
    parts = [getattr(inputs, f.name).ravel() for f in fields(inputs)]
    return np.concatenate([np.pad(a, (0, a.size % 2)) for a in parts]), [a.size for a in parts]


def unpack(packed: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """The parts of a packed (uploaded) tensor, as flat views in StepInputs' field order."""
    views = packed.split([n + n % 2 for n in sizes])
    return [v[:n] for v, n in zip(views, sizes, strict=True)]
