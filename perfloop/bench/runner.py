"""Run one benchmark: `run_benchmark(BenchSpec) -> BenchResult`.

Public API (the loop calls it directly):

    from perfloop.bench.runner import BenchSpec, run_benchmark
    from perfloop.bench.workloads import WorkloadSpec
    spec = BenchSpec(launch="engine:--model preset:tiny-qwen3",
                     workload=WorkloadSpec(kind="random", num_prompts=32, input_len=64, output_len=32))
    result = run_benchmark(spec)          # BenchResult; result.output_throughput, result.perfloop...

`launch` is a launch spec (see `perfloop.bench.targets`). With `output` set, the result
JSON and its per-request sidecar are written there. Ctrl-C during the measured run keeps
what finished: the result is marked `perfloop.interrupted` and still written.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from perfloop.bench.arrivals import arrival_times
from perfloop.bench.backends.base import Backend
from perfloop.bench.fingerprint import Environment, collect_environment
from perfloop.bench.metrics import RequestRecord, compute_metrics, sglang_metrics
from perfloop.bench.result import (
    BenchResult,
    PerfloopBlock,
    SGLangCompat,
    failure_summary,
    output_lengths,
    write_result,
)
from perfloop.bench.targets import (
    Target,
    model_vocab_size,
    open_backend,
    parse_target,
    target_model,
    target_weights,
)
from perfloop.bench.workloads import BenchRequest, WorkloadSpec, build_requests


class BenchSpec(BaseModel):
    """Everything one benchmark run needs."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")

    launch: str = Field(description="URL, shell command with {port}, engine:FLAGS, hf:MODEL or docker:IMAGE.")
    workload: WorkloadSpec
    request_rate: float = Field(math.inf, gt=0, description="Requests/s; inf sends all at t=0.")
    burstiness: float = Field(1.0, gt=0, description="Gamma shape of the gaps; 1.0 = Poisson.")
    max_concurrency: int | None = Field(None, ge=1)
    seed: int = Field(0, description="Seed of the arrival schedule.")
    num_warmups: int = Field(1, ge=0, description="Unmeasured requests sent first.")
    goodput_slos_ms: dict[str, float] | None = Field(None, description="ttft/tpot/e2el SLOs in ms.")
    label: str | None = None
    model_id: str | None = Field(None, description="Model name sent to an HTTP server.")
    health_timeout: float = Field(600.0, gt=0)
    torch_threads: int | None = Field(None, ge=1, description="torch threads for in-process backends.")
    target_repo: str | None = Field(None, description="Git work tree of the target, for its commit.")
    output: str | None = Field(None, description="Result JSON path; the sidecar goes next to it.")
    max_failed: int = Field(0, ge=0, description="Failed requests tolerated; more marks the result invalid.")
    server_log: str | None = None
    progress: bool = True


def resolve_workload(workload: WorkloadSpec, target: Target, model_id: str | None = None) -> WorkloadSpec:
    """Fill the vocabulary size from the target's model when the workload draws token ids.

    For a URL the model name sent (`model_id`) is used when it is a preset or a local model folder.
    """
    if workload.kind not in ("random", "shared-prefix") or workload.vocab_size is not None:
        return workload
    model = target_model(target)
    if model is None and model_id and (model_id.startswith("preset:") or Path(model_id).is_dir()):
        model = model_id
    if model is None:
        raise ValueError(
            f"--vocab-size: cannot tell the vocabulary of model {model_id!r} at {target.value}; "
            "pass --vocab-size (or --model preset:NAME / a local model folder)"
        )
    return workload.model_copy(update={"vocab_size": model_vocab_size(model)})


def _warmups(requests: list[BenchRequest], count: int) -> list[BenchRequest]:
    # Reversed ids: same lengths, different prefix, so warm-up does not seed the prefix cache.
    picked = requests[:count]
    return [
        BenchRequest(
            -1 - i,
            r.prompt[::-1] if isinstance(r.prompt, list) else r.prompt,
            r.prompt_len,
            min(r.output_len, 16),
        )
        for i, r in enumerate(picked)
    ]


class _LineProgress:
    """Progress for logs and pipes, where a live bar shows nothing: a line per tenth of the requests."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.t0 = time.perf_counter()

    def advance(self) -> None:
        """Count one finished request; print when it completes a tenth of them."""
        self.done += 1
        if self.done * 10 // self.total > (self.done - 1) * 10 // self.total:
            elapsed = time.perf_counter() - self.t0
            print(f"bench: {self.done}/{self.total} requests done, {elapsed:.1f} s", flush=True)


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[], None]]:
    """A callback counting finished requests: a live bar on a terminal, progress lines otherwise."""
    if enabled and not sys.stdout.isatty():
        yield _LineProgress(total).advance
        return
    columns = (TextColumn("[bold]bench[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not enabled, transient=True) as bar:
        task = bar.add_task("requests", total=total)
        yield lambda: bar.advance(task)


def _measure(
    backend: Backend, spec: BenchSpec, requests: list[BenchRequest], arrivals: list[float]
) -> tuple[list[RequestRecord], float, bool]:
    warm = _warmups(requests, spec.num_warmups)
    if warm:
        backend.run(warm, [0.0] * len(warm), None, lambda rec: None, time.perf_counter())
    records: list[RequestRecord] = []
    interrupted = False
    with _progress(spec.progress, len(requests)) as advance:

        def done(rec: RequestRecord) -> None:
            records.append(rec)
            advance()

        t0 = time.perf_counter()
        try:
            backend.run(requests, arrivals, spec.max_concurrency, done, t0)
        except KeyboardInterrupt:
            interrupted = True
        duration = time.perf_counter() - t0
    return records, duration, interrupted


def _server_log(spec: BenchSpec) -> Path | None:
    """Where a launched server logs: as asked, else beside the result (the run folder)."""
    if spec.server_log:
        return Path(spec.server_log)
    if spec.output:
        out = Path(spec.output)
        return out.with_name(out.stem + ".server.log")
    return None


def run_benchmark(spec: BenchSpec) -> BenchResult:
    """Run the spec's workload against its target and return (and maybe write) the result."""
    target = parse_target(spec.launch)
    workload = resolve_workload(spec.workload, target, spec.model_id)
    requests = build_requests(workload)
    arrivals = arrival_times(len(requests), spec.request_rate, spec.burstiness, spec.seed)
    if spec.torch_threads is not None:
        import torch

        torch.set_num_threads(spec.torch_threads)
    log_path = _server_log(spec)
    with open_backend(
        target, workload.temperature, workload.ignore_eos, spec.model_id, spec.health_timeout, log_path
    ) as (backend, server_command, container):
        # Fingerprint before measuring (it imports torch): a Ctrl-C or SIGTERM then stops the server at once.
        env = collect_environment(
            server_command or (spec.launch if target.kind != "url" else None),
            backend.engine_flags(),
            Path(spec.target_repo) if spec.target_repo else None,
            container,
            target_weights(target),
        )
        records, duration, interrupted = _measure(backend, spec, requests, arrivals)
    result = build_result(spec, workload, backend, records, duration, interrupted, env)
    if spec.output:
        write_result(result, Path(spec.output), records)
    return result


def build_result(
    spec: BenchSpec,
    workload: WorkloadSpec,
    backend: Backend,
    records: list[RequestRecord],
    duration: float,
    interrupted: bool,
    env: Environment,
) -> BenchResult:
    """Assemble the result file from the measured records."""
    errors = sorted({r.error for r in records if r.error})[:5]
    failed = sum(not r.success for r in records)
    block = PerfloopBlock(
        workload=workload,
        workload_fingerprint=workload.fingerprint(),
        environment=env,
        environment_fingerprint=env.fingerprint(),
        launch=spec.launch,
        seed=spec.seed,
        num_warmups=spec.num_warmups,
        goodput_slos_ms=spec.goodput_slos_ms,
        output_lengths=output_lengths(records),
        interrupted=interrupted,
        errors=errors,
        max_failed=spec.max_failed,
        valid=failed <= spec.max_failed and any(r.success for r in records),
        failures=failure_summary(records),
    )
    return BenchResult(
        date=datetime.now().strftime("%Y%m%d-%H%M%S"),
        endpoint_type=backend.endpoint_type,
        backend=backend.name,
        label=spec.label,
        model_id=backend.model_id,
        tokenizer_id=backend.model_id,
        num_prompts=workload.total_requests(),
        request_rate="inf" if math.isinf(spec.request_rate) else spec.request_rate,
        burstiness=spec.burstiness,
        max_concurrency=spec.max_concurrency,
        **compute_metrics(records, duration, spec.goodput_slos_ms),
        sglang_compat=SGLangCompat(**sglang_metrics(records, duration)),
        perfloop=block,
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m perfloop.bench.runner SPEC.json`: one run in a fresh process (used by search)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m perfloop.bench.runner SPEC.json", file=sys.stderr)
        return 2
    spec = BenchSpec.model_validate_json(Path(args[0]).read_text())
    result = run_benchmark(spec)
    if result.perfloop.interrupted:
        return 130
    try:
        result.check_valid()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)  # the search table keeps this as the trial's error
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
