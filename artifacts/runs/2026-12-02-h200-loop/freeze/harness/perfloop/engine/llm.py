"""Offline API: `LLM(model, **config).generate(prompts, sampling)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.progress import Progress

from perfloop.engine.config import EngineConfig
from perfloop.engine.llm_engine import LLMEngine
from perfloop.engine.sampling_params import SamplingParams


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    output_token_ids: list[int]
    text: str
    finish_reason: str | None


class LLM:
    """Runs batches of prompts to completion with continuous batching."""

    def __init__(self, model: str, **config: Any) -> None:
        self.engine = LLMEngine(EngineConfig(model=model, **config))

    def generate(
        self,
        prompts: list[str | list[int]] | str,
        sampling: SamplingParams | list[SamplingParams] | None = None,
        progress: bool = False,
    ) -> list[RequestOutput]:
        """Generate for every prompt; outputs come back in prompt order."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(sampling, list):
            sampling = [sampling or SamplingParams()] * len(prompts)
        if len(sampling) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(sampling)} sampling params")
        engine = self.engine
        base = engine.stats().num_steps
        ids = [f"offline-{base}-{i}" for i in range(len(prompts))]
        prompt_ids = {
            rid: engine.add_request(rid, p, s) for rid, p, s in zip(ids, prompts, sampling, strict=True)
        }
        tokens: dict[str, list[int]] = {rid: [] for rid in ids}
        reasons: dict[str, str | None] = {}
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task("generating", total=len(ids))
            while engine.has_unfinished():
                for out in engine.step():
                    tokens[out.request_id].extend(out.new_token_ids)
                    if out.finished:
                        reasons[out.request_id] = out.finish_reason
                        bar.advance(task)
        tok = engine.tokenizer
        return [
            RequestOutput(r, prompt_ids[r], tokens[r], tok.decode(tokens[r]), reasons.get(r)) for r in ids
        ]
