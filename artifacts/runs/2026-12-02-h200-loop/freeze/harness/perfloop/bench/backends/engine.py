"""In-process backend: the bundled LLMEngine, driven on this thread by the arrival schedule.

The loop admits requests whose arrival time has come (up to `max_concurrency` in
flight), runs one `engine.step()`, and timestamps every request that got tokens when
`step()` returns: one chunk per step, the same TTFT/ITL/TPOT/E2E definitions as the
HTTP client, without the network.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from perfloop.bench.backends.base import OnDone, admit, failed_record, sleep_until, stream_record
from perfloop.bench.workloads import BenchRequest
from perfloop.engine.config import EngineConfig


@dataclass
class _Live:
    req: BenchRequest
    st: float
    prompt_len: int
    times: list[float] = field(default_factory=list)
    tokens: int = 0
    ids: list[int] = field(default_factory=list)


class EngineBackend:
    """The bundled engine, loaded once per backend instance."""

    name = "engine"
    endpoint_type = "perfloop-engine"

    def __init__(self, config: EngineConfig, temperature: float = 0.0, ignore_eos: bool = True) -> None:
        from perfloop.engine.llm_engine import LLMEngine

        self.config = config
        self.model_id = config.model
        self.temperature = temperature
        self.ignore_eos = ignore_eos
        self.engine = LLMEngine(config)

    def engine_flags(self) -> dict[str, object] | None:
        """The EngineConfig the engine was built from."""
        return self.config.model_dump()

    def run(
        self,
        requests: Sequence[BenchRequest],
        arrivals: Sequence[float],
        max_concurrency: int | None,
        on_done: OnDone,
        t0: float,
    ) -> None:
        """Drive the engine until every request finished."""
        from perfloop.engine.errors import EngineInputError
        from perfloop.engine.sampling_params import SamplingParams

        pending = deque(zip(requests, arrivals, strict=True))
        live: dict[str, _Live] = {}
        while pending or live:
            now = time.perf_counter()
            for req in admit(pending, t0, now, live, max_concurrency):
                params = SamplingParams(
                    max_tokens=req.output_len, temperature=self.temperature, ignore_eos=self.ignore_eos
                )
                st = time.perf_counter()
                try:
                    ids = self.engine.add_request(str(req.index), req.prompt, params)
                except EngineInputError as exc:
                    on_done(failed_record(req, st - t0, f"{exc.param}: {exc}"))
                    continue
                live[str(req.index)] = _Live(req, st, len(ids))
            if not live:
                if pending:
                    sleep_until(t0 + pending[0][1])
                continue
            outputs = self.engine.step()
            stamp = time.perf_counter()
            for out in outputs:
                entry = live.get(out.request_id)
                if entry is None:
                    continue
                if out.new_token_ids:
                    entry.times.append(stamp)
                    entry.tokens += len(out.new_token_ids)
                    entry.ids += out.new_token_ids
                if out.finished:
                    del live[out.request_id]
                    on_done(
                        stream_record(
                            entry.req, entry.st, t0, entry.times, entry.prompt_len, entry.tokens, entry.ids
                        )
                    )
