"""The step-level engine: requests in, one scheduler iteration per `step()`, tokens out."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.profiler import record_function

from perfloop.engine.block_manager import BlockManager
from perfloop.engine.config import EngineConfig
from perfloop.engine.errors import EngineInputError
from perfloop.engine.models.config import ModelConfig
from perfloop.engine.models.presets import resolve_model
from perfloop.engine.runner import ModelRunner, StepHandle, pick_device
from perfloop.engine.sampler import Logprob, to_host
from perfloop.engine.sampling_params import SamplingParams
from perfloop.engine.scheduler import Scheduler
from perfloop.engine.sequence import PLACEHOLDER, Sequence, Status
from perfloop.engine.stats import EngineStats
from perfloop.engine.threads import apply_threads
from perfloop.engine.tokenizer import load_tokenizer


@dataclass
class StepOutput:
    """What one step produced for one request."""

    request_id: str
    new_token_ids: list[int]
    finished: bool
    finish_reason: str | None
    logprobs: list[Logprob] | None = None  # one per new token, when the request asked
    prompt_logprobs: list[Logprob | None] | None = None  # with the first token: None for prompt[0]


class LLMEngine:
    """Owns the model runner, the block manager and the scheduler. Not thread-safe."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.torch_threads = apply_threads(config.torch_threads)
        model_dir = resolve_model(config.model, device=pick_device(config.device).type)
        self.model_dir = model_dir
        self.model_config = ModelConfig.from_dir(model_dir)
        mc = self.model_config
        self.max_model_len = min(
            config.max_model_len or mc.max_position_embeddings, mc.max_position_embeddings
        )
        self.tokenizer = load_tokenizer(model_dir, mc.vocab_size, mc.eos_ids[0] if mc.eos_ids else None)
        self.runner = ModelRunner(config, mc, model_dir, self.max_model_len)
        self.blocks = BlockManager(self.runner.num_blocks, config.block_size, config.enable_prefix_caching)
        self.scheduler = Scheduler(config, self.blocks)
        self.seqs: dict[str, Sequence] = {}
        self._eos = set(mc.eos_ids)
        self._inflight: StepHandle | None = None
        self._prompt_tokens = self._generation_tokens = self._steps = self._peak_running = 0

    def add_request(
        self, request_id: str, prompt: str | list[int], params: SamplingParams, parent: str | None = None
    ) -> list[int]:
        """Queue a request; returns its prompt token ids. Bad input raises EngineInputError.

        `parent` names an earlier request with the same prompt (parallel sampling): this one is
        admitted once the parent's prompt blocks are cached, and shares them.
        """
        params.validate(self.model_config.vocab_size)
        if request_id in self.seqs:
            raise EngineInputError(f"request id {request_id!r} is already in use", "request_id")
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        self._check_prompt(ids, params)
        seq = Sequence(request_id, ids, params, parent=self.seqs.get(parent) if parent else None)
        seq.stop_ids = sorted(set(params.stop_token_ids) | (set() if params.ignore_eos else self._eos))
        if params.seed is not None:
            seq.generator = torch.Generator(device=self.runner.device).manual_seed(params.seed)
        self.seqs[request_id] = seq
        self.scheduler.add(seq)
        self._prompt_tokens += len(ids)
        return ids

    def _check_prompt(self, ids: list[int], params: SamplingParams) -> None:
        vocab = self.model_config.vocab_size
        if not ids:
            raise EngineInputError("prompt is empty", "prompt")
        bad = next((t for t in ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise EngineInputError(f"prompt token id {bad} is outside the vocabulary [0, {vocab})", "prompt")
        if len(ids) >= self.max_model_len:
            raise EngineInputError(
                f"prompt has {len(ids)} tokens; the context limit is {self.max_model_len} "
                "(prompt plus at least one generated token)",
                "prompt",
            )
        if len(ids) > self.config.max_num_batched_tokens and not self.config.enable_chunked_prefill:
            raise EngineInputError(
                f"prompt has {len(ids)} tokens, more than max_num_batched_tokens="
                f"{self.config.max_num_batched_tokens} with chunked prefill off",
                "prompt",
            )
        total = min(len(ids) + params.max_tokens, self.max_model_len)
        if self.blocks.blocks_needed(total) > self.blocks.num_blocks:
            field = (
                "prompt" if self.blocks.blocks_needed(len(ids) + 1) > self.blocks.num_blocks else "max_tokens"
            )
            raise EngineInputError(
                f"request needs {total} tokens of KV cache; the pool holds only "
                f"{self.blocks.num_blocks * self.blocks.block_size}",
                field,
            )

    def step(self) -> list[StepOutput]:
        """Launch one scheduler iteration, then return what the previous one produced.

        Steps are pipelined one deep: the device runs step N while the host turns step N-1's
        tokens into outputs, so host work never leaves the device idle. Outputs therefore
        arrive one call later; a request finished by a stop token may compute one extra
        token, which is discarded.
        """
        batch = self.scheduler.schedule()
        if not batch.seqs:  # drain: nothing new to launch
            outputs = self._resolve(self._inflight) if self._inflight is not None else []
            self._inflight = None
            return outputs
        self._steps += 1
        self._peak_running = max(self._peak_running, len(self.scheduler.running))
        with record_function(f"perfloop.step.{batch.stage} bs={len(batch.seqs)} tokens={batch.num_tokens}"):
            handle = self.runner.launch(batch, self._inflight)
            self._advance(handle)
            outputs = self._resolve(self._inflight) if self._inflight is not None else []
        self._inflight = handle
        return outputs

    def _advance(self, handle: StepHandle) -> None:
        """Host bookkeeping for a launched step: computed counts, placeholders, length finishes."""
        batch = handle.batch
        for seq, n in zip(batch.seqs, batch.num_new_tokens, strict=True):
            seq.num_computed += n
        for k, i in enumerate(handle.sampled):
            seq = batch.seqs[i]
            seq.token_ids.append(PLACEHOLDER)
            seq.pending_index = k
            handle.positions.append(seq.num_tokens - 1)
            if seq.num_output >= seq.params.max_tokens or seq.num_tokens >= self.max_model_len:
                self.scheduler.finish(seq, "length")  # known now: never schedule it again

    def _resolve(self, handle: StepHandle) -> list[StepOutput]:
        """Fill in a finished step's tokens and report them."""
        batch = handle.batch
        tokens = handle.tokens()
        self._attach_prompt_logprobs(handle)
        outputs = []
        for k, (i, token) in enumerate(zip(handle.sampled, tokens, strict=True)):
            seq = batch.seqs[i]
            if self.seqs.get(seq.request_id) is not seq:
                continue  # aborted, or stopped while this step was in flight: the token is void
            output = StepOutput(seq.request_id, [token], False, None)
            self._add_logprobs(output, seq, handle, k, token)
            seq.token_ids[handle.positions[k]] = token
            if seq.num_tokens - 1 == handle.positions[k]:
                seq.pending_index = None  # no newer step has sampled for it yet
            self._generation_tokens += 1
            reason = self._finish_reason(seq, token, handle.positions[k] + 1)
            if reason:
                self._retire(seq, reason)
            output.finished, output.finish_reason = reason is not None, reason
            outputs.append(output)
        for seq in batch.seqs:
            if seq.status is not Status.FINISHED:
                self.blocks.commit_full_blocks(seq)  # every computed token is real by now
        return outputs

    def _attach_prompt_logprobs(self, handle: StepHandle) -> None:
        for i, (first, tensors) in handle.prompt_logprobs.items():
            seq = handle.batch.seqs[i]
            targets = seq.prompt_ids[first : first + len(tensors[0])]
            for offset, record in enumerate(to_host(tensors, targets)):
                seq.prompt_logprobs[first + offset] = record

    def _add_logprobs(
        self, output: StepOutput, seq: Sequence, handle: StepHandle, k: int, token: int
    ) -> None:
        if k in handle.logprobs:
            output.logprobs = to_host(handle.logprobs[k], [token])
        if seq.params.prompt_logprobs is not None and handle.positions[k] == len(seq.prompt_ids):
            # The first output token: every prompt chunk's step was resolved before this one.
            scored = [seq.prompt_logprobs.get(j) for j in range(1, len(seq.prompt_ids))]
            output.prompt_logprobs = [None, *scored]

    def _finish_reason(self, seq: Sequence, token: int, length: int) -> str | None:
        """Why a request ends with `token` at total length `length`, or None if it goes on."""
        p = seq.params
        if token in p.stop_token_ids or (not p.ignore_eos and token in self._eos):
            return "stop"
        if length - len(seq.prompt_ids) >= p.max_tokens or length >= self.max_model_len:
            return "length"
        return None

    def _retire(self, seq: Sequence, reason: str) -> None:
        self.scheduler.finish(seq, reason)
        del self.seqs[seq.request_id]

    def abort(self, request_id: str) -> bool:
        """Stop a request now and free its KV blocks; False if it is unknown or already done."""
        seq = self.seqs.get(request_id)
        if seq is None:
            return False
        self._retire(seq, "abort")
        return True

    def has_unfinished(self) -> bool:
        return bool(self.seqs)  # requests leave `seqs` only once their last token was reported

    def stats(self) -> EngineStats:
        c = self.scheduler.counters
        used = self.blocks.num_blocks - self.blocks.num_free
        return EngineStats(
            num_running=len(self.scheduler.running),
            num_waiting=len(self.scheduler.waiting),
            kv_blocks_total=self.blocks.num_blocks,
            kv_blocks_used=used,
            kv_usage=used / self.blocks.num_blocks,
            prefix_cache_queries=c.prefix_cache_queries,
            prefix_cache_hits=c.prefix_cache_hits,
            prefix_cache_hit_rate=c.prefix_cache_hits / c.prefix_cache_queries
            if c.prefix_cache_queries
            else 0.0,
            num_preemptions=c.num_preemptions,
            num_prefill_chunks=c.num_prefill_chunks,
            prompt_tokens=self._prompt_tokens,
            generation_tokens=self._generation_tokens,
            num_steps=self._steps,
            peak_running=self._peak_running,
        )
