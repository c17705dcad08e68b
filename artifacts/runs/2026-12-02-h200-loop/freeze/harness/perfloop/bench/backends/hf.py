"""HF transformers peer on the same weights: continuous batching or plain static batching.

- `generate_batch` mode (default) uses transformers' continuous-batching manager (the
  machinery behind `generate_batch`), adding each request at its arrival time with
  per-token timestamps recorded by transformers itself.
- `generate` mode is plain `model.generate` over static batches (left padding), up to
  `max_concurrency` requests per batch (all waiting requests when unbounded); a stopping
  criterion timestamps every decoding step, and a request's tokens are timed by the
  steps that produced them.
Greedy decoding, EOS ignored, same prompts as token ids.
"""

from __future__ import annotations

import inspect
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Literal

import torch

from perfloop.bench.backends.base import OnDone, admit, failed_record, sleep_until, stream_record
from perfloop.bench.workloads import BenchRequest

HFMode = Literal["generate_batch", "generate"]


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class HFBackend:
    """A transformers model loaded from the same directory the engine uses."""

    name = "hf"

    def __init__(self, model: str, mode: HFMode = "generate_batch", ignore_eos: bool = True) -> None:
        from transformers import AutoModelForCausalLM

        from perfloop.engine.models.presets import resolve_model

        if mode not in ("generate_batch", "generate"):
            raise ValueError(f"hf_mode: expected generate_batch or generate, got {mode!r}")
        self.model_id = model
        self.mode = mode
        self.endpoint_type = f"hf-{mode}"
        self.ignore_eos = ignore_eos
        dtype = torch.float32 if _device() == "cpu" else torch.bfloat16
        self.model = AutoModelForCausalLM.from_pretrained(str(resolve_model(model)), dtype=dtype).to(
            _device()
        )
        self.model.eval()

    def engine_flags(self) -> dict[str, object] | None:
        """The peer's settings for the fingerprint."""
        return {"hf_mode": self.mode, "dtype": str(self.model.dtype), "device": _device()}

    def run(
        self,
        requests: Sequence[BenchRequest],
        arrivals: Sequence[float],
        max_concurrency: int | None,
        on_done: OnDone,
        t0: float,
    ) -> None:
        """Run every request through the chosen transformers path."""
        for req in requests:
            if not isinstance(req.prompt, list):
                raise ValueError("workload: the hf backend takes token-id prompts (random, shared-prefix)")
        if self.mode == "generate_batch":
            self._continuous(requests, arrivals, max_concurrency, on_done, t0)
        else:
            self._static(requests, arrivals, max_concurrency, on_done, t0)

    def _generation_config(self, max_new_tokens: int) -> Any:
        from transformers import GenerationConfig

        eos = -1 if self.ignore_eos else self.model.config.eos_token_id
        return GenerationConfig(
            do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=0
        )

    def _cb_config(self, requests: Sequence[BenchRequest]) -> Any:
        from transformers import ContinuousBatchingConfig

        # Size the paged cache for this workload; transformers' memory probe over-allocates on CPU.
        longest = max(len(r.prompt) + r.output_len for r in requests)
        page = 16
        blocks = sum(-(-(len(r.prompt) + r.output_len) // page) for r in requests) + longest // page + 8
        # transformers renamed block_size to page_size (5.2x); pass whichever this version takes.
        params = inspect.signature(ContinuousBatchingConfig.__init__).parameters
        size_key = "page_size" if "page_size" in params else "block_size"
        return ContinuousBatchingConfig(num_blocks=blocks, max_batch_tokens=2048, **{size_key: page})

    def _continuous(
        self,
        requests: Sequence[BenchRequest],
        arrivals: Sequence[float],
        max_concurrency: int | None,
        on_done: OnDone,
        t0: float,
    ) -> None:
        pending = deque(zip(requests, arrivals, strict=True))
        sent: dict[str, tuple[BenchRequest, float]] = {}
        gen = self._generation_config(max(r.output_len for r in requests))
        with self.model.continuous_batching_context_manager(
            generation_config=gen, continuous_batching_config=self._cb_config(requests), warmup=False
        ) as manager:
            while pending or sent:
                now = time.perf_counter()
                for req in admit(pending, t0, now, sent, max_concurrency):
                    st = time.perf_counter()
                    rid = str(req.index)
                    manager.add_request(
                        list(req.prompt),
                        request_id=rid,
                        max_new_tokens=req.output_len,
                        record_timestamps=True,
                        eos_token_id=gen.eos_token_id,
                    )
                    sent[rid] = (req, st)
                wait = 0.05 if not pending else max(min(t0 + pending[0][1] - time.perf_counter(), 0.05), 0.0)
                result = manager.get_result(timeout=wait) if sent else None
                if not sent and pending:
                    sleep_until(t0 + pending[0][1])
                if result is None or not result.is_finished() or result.request_id not in sent:
                    continue
                req, st = sent.pop(result.request_id)
                if result.error:
                    on_done(failed_record(req, st - t0, str(result.error)))
                    continue
                times = list(result.timestamps or [])
                on_done(stream_record(req, st, t0, times, len(req.prompt), len(result.generated_tokens)))

    def _static(
        self,
        requests: Sequence[BenchRequest],
        arrivals: Sequence[float],
        max_concurrency: int | None,
        on_done: OnDone,
        t0: float,
    ) -> None:
        pending = deque(zip(requests, arrivals, strict=True))
        while pending:
            sleep_until(t0 + pending[0][1])
            now = time.perf_counter()
            batch: list[tuple[BenchRequest, float]] = []
            for req in admit(pending, t0, now, batch, max_concurrency):
                batch.append((req, now))
            for rec in self._generate(batch, t0):
                on_done(rec)

    def _generate(self, batch: list[tuple[BenchRequest, float]], t0: float) -> list:
        from transformers import StoppingCriteria, StoppingCriteriaList

        stamps: list[float] = []

        class _Stamp(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
                stamps.append(time.perf_counter())
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        width = max(len(r.prompt) for r, _ in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, (req, _) in enumerate(batch):
            ids[row, width - len(req.prompt) :] = torch.tensor(req.prompt)
            mask[row, width - len(req.prompt) :] = 1
        most = max(r.output_len for r, _ in batch)
        gen = self._generation_config(most)
        if self.ignore_eos:
            gen.eos_token_id = None  # generate() has no "ignore EOS": no EOS id means it never stops early
        with torch.no_grad():
            self.model.generate(
                input_ids=ids.to(self.model.device),
                attention_mask=mask.to(self.model.device),
                generation_config=gen,
                stopping_criteria=StoppingCriteriaList([_Stamp()]),
            )
        return [
            stream_record(r, st, t0, stamps[: r.output_len], len(r.prompt), min(r.output_len, len(stamps)))
            for r, st in batch
        ]
