"""Model runner: turns a scheduled batch into step tensors, runs the model and samples.

It owns the weights, the KV cache tensor [2, layers, blocks, block_size, kv_heads, head_dim]
and the attention backend. On CUDA it sizes the KV pool from free memory after a warm-up
that measures peak activation memory, and replays decode steps from CUDA graphs.

Pipelining, one step deep (the protocol, in one place)
------------------------------------------------------
The host never waits for the device between steps: `LLMEngine.step()` launches step N, then
turns step N-1's tokens into outputs while the device computes step N.

1. Launch (`ModelRunner.launch`): `step_inputs.build_step_inputs` flattens the batch; the
   arrays go up in one copy and the step (model, logits, sampling) is enqueued. The sampled
   tokens stay on the device (`StepHandle.tokens_dev`); a copy into one of two pinned host
   buffers is enqueued behind them, with an event.
2. Advance (`LLMEngine._advance`, right after the launch): each sequence that sampled gets a
   PLACEHOLDER (-1, `sequence.py`) appended to its tokens, `pending_index` = its row in the
   step's sampled tokens, and the position to fill in later (`StepHandle.positions`). Finishes
   by length are known now, so such a sequence is never scheduled again.
3. Next launch: a sequence whose last token is a placeholder decodes it as its input. Its input
   row holds -1 on the host; `pending_dest`/`pending_src` (`StepIndices`) make the device copy
   the token from the previous step's `tokens_dev` (a gather, no host sync).
4. Resolve (`LLMEngine._resolve` of step N-1, after launching N): `StepHandle.tokens()` waits
   for that step's copy event only; each token replaces its placeholder, `pending_index` is
   cleared unless a newer step sampled again, stop tokens retire the request (a token computed
   meanwhile for it is discarded), and full KV blocks enter the prefix cache only now, when no
   placeholder is left in them.

Invariants: a placeholder is always its sequence's newest token, so only the last input row of
a sequence can be pending; at most one step is in flight. On the CPU nothing is asynchronous
(tokens are read right away), but the same protocol runs, so CPU tests cover it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from perfloop.engine.attention import get_backend
from perfloop.engine.attention.metadata import AttentionMetadata
from perfloop.engine.config import EngineConfig
from perfloop.engine.cuda_graphs import DecodeGraphs
from perfloop.engine.errors import EngineConfigError
from perfloop.engine.models.config import ModelConfig
from perfloop.engine.models.decoder import DecoderLM
from perfloop.engine.models.loader import load_weights
from perfloop.engine.request_logits import prompt_logprobs, row_contexts
from perfloop.engine.sampler import LogprobTensors, sample, token_logprobs
from perfloop.engine.scheduler import ScheduledBatch
from perfloop.engine.step_inputs import build_step_inputs, pack, unpack

log = logging.getLogger("perfloop.engine")
CPU_KV_BUDGET_BYTES = 256 << 20


def pick_device(name: str) -> torch.device:
    """The torch device of `--device` (auto, cpu, cuda or cuda:N); a device this host lacks is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise EngineConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N", "--device")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a CPU-only build")
        found = f"only {count} CUDA device(s)" if count else "no CUDA device"
        raise EngineConfigError(f"{name!r}: this host has {found} ({build}); use cpu or auto", "--device")
    return device


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


@dataclass
class StepIndices:
    """Device index tensors of a step, uploaded with its inputs (no extra host-to-device syncs)."""

    rows: torch.Tensor  # rows of the hidden states whose logits are sampled
    all_rows: bool  # every row samples (decode): no gather needed
    pending_dest: torch.Tensor  # input rows that are still placeholders ...
    pending_src: torch.Tensor  # ... and where the previous step's device tokens hold them


@dataclass
class StepHandle:
    """A launched step: which sequences sample, and where their tokens will be."""

    batch: ScheduledBatch
    sampled: list[int]  # indices into batch.seqs
    positions: list[int] = field(default_factory=list)  # where each sampled token goes in token_ids
    tokens_dev: torch.Tensor | None = None
    tokens_host: torch.Tensor | None = None
    tokens_list: list[int] | None = None
    event: torch.cuda.Event | None = None
    logprobs: dict[int, LogprobTensors] = field(default_factory=dict)  # by index into `sampled`
    prompt_logprobs: dict[int, tuple[int, LogprobTensors]] = field(default_factory=dict)  # by batch index

    def tokens(self) -> list[int]:
        """The sampled tokens on the host (waits for the step's copy only)."""
        if self.tokens_dev is None:
            return []
        if self.tokens_list is not None:
            return self.tokens_list
        self.event.synchronize()
        return self.tokens_host.tolist()


class ModelRunner:
    """Executes steps of the scheduler on one device."""

    def __init__(
        self, config: EngineConfig, model_cfg: ModelConfig, model_dir: Path, max_model_len: int
    ) -> None:
        self.config = config
        self.model_cfg = model_cfg
        self.device = pick_device(config.device)
        self.dtype = pick_dtype(config.dtype, self.device)
        self.block_size = config.block_size
        self.max_blocks_per_seq = -(-max_model_len // self.block_size)
        torch.manual_seed(config.seed)
        default_dtype = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)  # build parameters in their final dtype; rope tables stay fp32
        try:
            with torch.device(self.device):
                self.model = DecoderLM(model_cfg, max_model_len).eval()
        finally:
            torch.set_default_dtype(default_dtype)
        load_weights(self.model, model_dir)
        self.backend = get_backend(config.attention_backend, self.device)
        self.default_generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.num_blocks = config.num_kv_blocks or self._auto_num_blocks(max_model_len)
        self.kv_cache = self._alloc_kv(self.num_blocks)
        self._staging = torch.empty(0, dtype=torch.int64)
        pin = self.device.type == "cuda"
        rows = max(config.max_num_seqs, 8)  # the start-up compile steps sample up to 3 rows
        self._host_tokens = [torch.empty(rows, dtype=torch.int64, pin_memory=pin) for _ in range(2)]
        self._flip = 0
        self._copied = torch.cuda.Event() if self.device.type == "cuda" else None
        self.graphs: DecodeGraphs | None = None
        if self.device.type == "cuda":
            self._compile_kernels()
        # Graphs need graph-safe attention: the torch oracle indexes padded rows' slot -1.
        if self.device.type == "cuda" and not config.enforce_eager and self.backend.name == "triton":
            self.graphs = DecodeGraphs(self.model, self.backend, self.kv_cache, config.max_num_seqs,
                                       self.max_blocks_per_seq, self.block_size, max_model_len)  # fmt: skip
        log.info(
            "engine: %s on %s (%s), attention=%s, KV blocks=%d x %d tokens (max %d concurrent tokens)",
            model_cfg.architecture, self.device, self.dtype, self.backend.name,
            self.num_blocks, self.block_size, self.num_blocks * self.block_size,
        )  # fmt: skip

    def block_bytes(self) -> int:
        c = self.model_cfg
        elem = torch.empty((), dtype=self.dtype).element_size()
        return 2 * c.num_hidden_layers * self.block_size * c.num_key_value_heads * c.head_dim * elem

    def _alloc_kv(self, num_blocks: int) -> torch.Tensor:
        c = self.model_cfg
        shape = (2, c.num_hidden_layers, num_blocks, self.block_size, c.num_key_value_heads, c.head_dim)
        # Zeroed: the reference backend reads padded slots under a mask, and 0 * NaN would leak.
        # Written, not calloc'ed: on the CPU, lazily mapped pages would fault inside measured steps.
        return torch.empty(shape, dtype=self.dtype, device=self.device).zero_()

    def _auto_num_blocks(self, max_model_len: int) -> int:
        if self.device.type != "cuda":
            cap = self.config.max_num_seqs * self.max_blocks_per_seq
            return max(1, min(CPU_KV_BUDGET_BYTES // self.block_bytes(), cap))
        return self._cuda_num_blocks()

    def _cuda_num_blocks(self) -> int:
        """KV blocks that fit in gpu_memory_utilization of the device after a peak-measuring warm-up."""
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        tokens = min(self.config.max_num_batched_tokens, self.max_blocks_per_seq * self.block_size)
        self.kv_cache = self._alloc_kv(-(-tokens // self.block_size) + 1)
        self._warmup(tokens)
        del self.kv_cache
        free, total = torch.cuda.mem_get_info()
        used = total - free
        peak, current = torch.cuda.max_memory_allocated(), torch.cuda.memory_allocated()
        budget = total * self.config.gpu_memory_utilization - used - peak + current
        num_blocks = int(budget // self.block_bytes())
        if num_blocks < 1:
            raise RuntimeError(
                "no GPU memory left for the KV cache; lower the token budget or raise utilization"
            )
        log.info(
            "memory: weights %.2f GiB, activation peak %.2f GiB, KV %.2f GiB = %d blocks",
            current / 2**30, (peak - current) / 2**30, num_blocks * self.block_bytes() / 2**30, num_blocks,
        )  # fmt: skip
        return num_blocks

    # (new tokens, cached tokens) per sequence of the steps that compile every Triton specialisation:
    # Triton specialises integer arguments on ==1 and %16, so token counts of both kinds, decodes
    # leading a mixed step, and prefills over a cached prefix all get compiled before serving.
    _COMPILE_STEPS: tuple[tuple[tuple[int, int], ...], ...] = (
        ((1, 0),), ((7, 0),), ((16, 0),), ((33, 0),), ((20, 48),), ((32, 32),), ((1, 5), (1, 9)),
        ((1, 5), (30, 0)), ((1, 5), (1, 9), (47, 0)), ((17, 0), (15, 16)), ((16, 0), (16, 16)),
    )  # fmt: skip

    def _compile_kernels(self) -> None:
        """Run tiny dummy steps so JIT compilation happens at start-up, not inside a measured run."""
        from perfloop.engine.sampling_params import SamplingParams
        from perfloop.engine.scheduler import ScheduledBatch
        from perfloop.engine.sequence import Sequence

        greedy = SamplingParams(temperature=0.0)
        # The prefill kernel's sequence-search width is next_pow2(batch): one wide batch per width.
        widths = [b + 1 for b in (16, 32, 64, 128, 256) if b < self.config.max_num_seqs]
        wide = tuple(((2, 0),) * min(w, self.num_blocks) for w in widths)
        for shape in self._COMPILE_STEPS + wide:
            seqs, next_block = [], 0
            for new, cached in shape:
                seq = Sequence("compile", [0] * (new + cached), greedy)
                seq.num_computed = cached
                need = -(-(new + cached) // self.block_size)
                seq.block_table = list(range(next_block, next_block + need))
                next_block += need
                seqs.append(seq)
            if next_block <= self.num_blocks:
                self.launch(ScheduledBatch(seqs, [n for n, _ in shape]), None).tokens()
        torch.cuda.synchronize()

    @torch.inference_mode()
    def _warmup(self, tokens: int) -> None:
        nblocks = -(-tokens // self.block_size)
        meta = AttentionMetadata(
            slot_mapping=torch.arange(tokens, device=self.device),
            query_start_loc=torch.tensor([0, tokens], dtype=torch.int32, device=self.device),
            seq_lens=torch.tensor([tokens], dtype=torch.int32, device=self.device),
            block_tables=torch.arange(nblocks, dtype=torch.int32, device=self.device)[None],
            query_lens_cpu=[tokens],
            seq_lens_cpu=[tokens],
            max_query_len=tokens,
            max_seq_len=tokens,
            block_size=self.block_size,
        )
        ids = torch.zeros(tokens, dtype=torch.long, device=self.device)
        hidden = self.model(ids, torch.arange(tokens, device=self.device), self.kv_cache, meta, self.backend)
        self.model.compute_logits(hidden[-1:])
        torch.cuda.synchronize()

    def prepare(
        self, batch: ScheduledBatch
    ) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata, StepIndices]:
        """Flattened input ids, positions, attention metadata and the rows whose logits are sampled.

        The host arrays (`step_inputs.py`) go to the device packed in one (pinned, async) copy.
        """
        host = build_step_inputs(batch.seqs, batch.num_new_tokens, self.block_size)
        packed, sizes = pack(host)
        ids, positions, slots, seq_lens, starts, tables, rows, dest, src = unpack(self._upload(packed), sizes)
        meta = AttentionMetadata(
            slot_mapping=slots,
            query_start_loc=starts.int(),
            seq_lens=seq_lens.int(),
            block_tables=tables.view(host.block_tables.shape).int(),
            query_lens_cpu=list(batch.num_new_tokens),
            seq_lens_cpu=host.seq_lens.tolist(),
            max_query_len=max(batch.num_new_tokens),
            max_seq_len=int(host.seq_lens.max()),
            block_size=self.block_size,
        )
        return ids, positions, meta, StepIndices(rows, host.samples_every_row, dest, src)

    def _upload(self, host: np.ndarray) -> torch.Tensor:
        """Copy one host array to the device through a reused pinned buffer."""
        if self.device.type != "cuda":
            return torch.from_numpy(host)
        if self._staging.numel() < host.size:
            self._staging = torch.empty(2 * host.size, dtype=torch.int64, pin_memory=True)
        self._copied.synchronize()  # the previous step's copy must have left the buffer
        staging = self._staging[: host.size]
        staging.numpy()[:] = host
        out = staging.to(self.device, non_blocking=True)
        self._copied.record()
        return out

    @torch.inference_mode()
    def launch(self, batch: ScheduledBatch, prev: StepHandle | None) -> StepHandle:
        """Enqueue one step on the device and return without waiting for its tokens.

        Tokens the previous step sampled are still placeholders on the host; their input ids are
        gathered on the device from `prev`, so the host never waits between steps.
        """
        input_ids, positions, meta, idx = self.prepare(batch)
        if idx.pending_dest.numel():
            input_ids[idx.pending_dest] = prev.tokens_dev[idx.pending_src]
        if self.graphs is not None and meta.is_decode and self.graphs.fits(meta.num_seqs):
            hidden = self.graphs.run(input_ids, positions, meta)
        else:
            hidden = self.model(input_ids, positions, self.kv_cache, meta, self.backend)
        sampled = [i for i, (s, n) in enumerate(zip(batch.seqs, batch.num_new_tokens, strict=True))
                   if s.num_computed + n == s.num_tokens]  # fmt: skip
        handle = StepHandle(batch, sampled)
        if any(s.params.prompt_logprobs is not None for s in batch.seqs):
            handle.prompt_logprobs = prompt_logprobs(batch, hidden, self.model.compute_logits)
        if not sampled:
            return handle
        with torch.profiler.record_function("perfloop.logits"):
            # Greedy rows take argmax of the model-dtype logits (exact); sampled rows upcast per row.
            logits = self.model.compute_logits(hidden if idx.all_rows else hidden[idx.rows])
        with torch.profiler.record_function("perfloop.sample"):
            seqs = [batch.seqs[i] for i in sampled]
            params = [s.params for s in seqs]
            contexts = row_contexts(seqs, prev) if any(p.processes_logits for p in params) else None
            handle.tokens_dev = sample(
                logits, params, [s.generator for s in seqs], self.default_generator, contexts
            )
            if any(p.logprobs is not None for p in params):
                handle.logprobs = token_logprobs(logits, handle.tokens_dev, params)
        if self.device.type != "cuda":
            handle.tokens_list = handle.tokens_dev.tolist()  # nothing is asynchronous on the CPU
        else:
            self._flip = 1 - self._flip  # two pinned buffers: one in flight, one being read
            host = self._host_tokens[self._flip][: len(sampled)]
            host.copy_(handle.tokens_dev, non_blocking=True)
            handle.tokens_host, handle.event = host, torch.cuda.Event()
            handle.event.record()
        return handle

    def logits_for(self, batch: ScheduledBatch) -> torch.Tensor:
        """Logits of the sampled rows without sampling (for correctness checks)."""
        with torch.inference_mode():
            input_ids, positions, meta, idx = self.prepare(batch)
            hidden = self.model(input_ids, positions, self.kv_cache, meta, self.backend)
            return self.model.compute_logits(hidden[idx.rows]).float()
