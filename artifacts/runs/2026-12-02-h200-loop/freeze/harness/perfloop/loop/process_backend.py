"""The real measurement backend: the benchmark's interleaved A/B and the profiler, each in a fresh process.

`python -m perfloop.loop.process_backend ab|profile|trial JOB.json OUT.json` is the child side: it
runs one job and writes its record. Every child runs the run's frozen harness
(`perfloop.loop.harness`), never a candidate's copy of perfloop; a side whose tree holds a
`perfloop/engine` package gets that engine, and then each of its trials runs in a process
of its own, so the two sides of an A/B never share code.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from perfloop.bench.ab import SequentialRule, Until
from perfloop.bench.fingerprint import collect_environment
from perfloop.bench.result import BenchResult
from perfloop.bench.runner import BenchSpec
from perfloop.bench.targets import parse_target
from perfloop.bench.workloads import WorkloadSpec
from perfloop.ledger.records import BenchRecord, MetricComparison, ProfileRecord
from perfloop.loop import children
from perfloop.loop.harness import child_env, harness_of, has_engine, threads_env
from perfloop.loop.measurement import Side
from perfloop.loop.secrets import redact
from perfloop.loop.spec import GoalSpec
from perfloop.terminal import make_console

PROFILE_STATS_STAGE = "engine"
PROGRESS_EVERY_S = 30.0
_console = make_console(stderr=True)


class MeasureError(RuntimeError):
    """A measurement child failed; the message carries its last output lines."""


class IntegrityError(MeasureError):
    """Candidate code tampered with what the harness measures (its clocks)."""


INTEGRITY = "harness integrity:"  # how a child says it failed an integrity check


@contextmanager
def _heartbeat(label: str, lines: list[str]) -> Iterator[None]:
    """Without a terminal the spinner shows nothing: print a progress line every PROGRESS_EVERY_S."""
    if _console.is_terminal:
        yield
        return
    stop = threading.Event()
    start = time.monotonic()

    def beat() -> None:
        while not stop.wait(PROGRESS_EVERY_S):
            last = next((x.strip() for x in reversed(lines) if x.strip()), "starting")
            _console.print(f"{label}: {time.monotonic() - start:.0f}s, {last[:120]}", soft_wrap=True)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class ProcessBackend:
    """Runs every measurement in a child process (see the module docstring)."""

    def _child(
        self, kind: str, job: dict[str, Any], out_dir: Path, cwd: Path | None, engine_tree: Path | None = None
    ) -> dict[str, Any]:
        out_dir.mkdir(parents=True, exist_ok=True)
        job_path, out_path = out_dir / "job.json", out_dir / "record.json"
        job["run_root"] = str(harness_of(out_dir.resolve()) or "")
        job_path.write_text(json.dumps(job, indent=2))
        out_path.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "perfloop.loop.process_backend", kind, str(job_path), str(out_path)]
        lines: list[str] = []
        start = time.monotonic()
        label = job.get("label", kind)
        popen = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=child_env(_root(job), engine_tree) | threads_env(_threads(job)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **children.popen_kwargs(),
        )
        with (
            popen as proc,
            children.tracked(proc),
            _console.status(f"{label}: starting") as status,
            _heartbeat(label, lines),
        ):
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if line.strip():
                    status.update(f"{label} [{time.monotonic() - start:.0f}s]: {line.strip()[:90]}")
        (out_dir / "child.log").write_text(redact("".join(lines)))
        if proc.returncode != 0 or not out_path.exists():
            tail = redact("".join(lines[-15:]))
            error = IntegrityError if INTEGRITY in tail else MeasureError
            raise error(f"{kind} measurement failed (exit {proc.returncode}):\n{tail}")
        return json.loads(out_path.read_text())

    def ab(
        self, a: Side, b: Side, spec: GoalSpec, trials: int, label: str, out_dir: Path, until: Until = None
    ) -> BenchRecord:
        """Interleaved A/B (`a` == `b` gives the A/A run) in a fresh process."""
        if a is not b and a.tree and b.tree and _tree_hash(a.tree) == _tree_hash(b.tree):
            raise MeasureError(
                f"{label}: both sides resolve to the same code (tree {_tree_hash(a.tree)[:12]}); "
                "a comparison of a tree with itself measures nothing"
            )
        job = {
            "a": a.launch,
            "b": b.launch,
            "a_name": a.name,
            "b_name": b.name,
            "a_tree": str(a.tree) if a.tree else None,
            "b_tree": str(b.tree) if b.tree else None,
            "label": label,
            "trials": trials,
            "until": until.model_dump() if until else None,
            "spec": spec.model_dump(mode="json"),
            "out_dir": str(out_dir / "trials"),
        }
        return BenchRecord.model_validate(self._child("ab", job, out_dir, b.tree or a.tree))

    def profile(self, side: Side, spec: GoalSpec, out_dir: Path) -> ProfileRecord:
        """Capture and analyse a trace of `side` in a fresh process (its tree's engine, frozen harness)."""
        job = {"launch": side.launch, "spec": spec.model_dump(mode="json"), "out_dir": str(out_dir)}
        return ProfileRecord.model_validate(self._child("profile", job, out_dir, side.tree, side.tree))

    def environment(self) -> dict[str, object]:
        """Machine and software facts from the benchmark's environment fingerprint."""
        env = collect_environment().model_dump()
        return {
            k: env[k]
            for k in (
                "cpu_model",
                "cpu_count",
                "gpu_models",
                "python",
                "torch",
                "cuda",
                "transformers",
                "perfloop",
                "perfloop_commit",
            )
        }


def _threads(job: dict[str, Any]) -> int | None:
    if "bench" in job:
        return job["bench"].get("torch_threads")
    return job["spec"]["measure"].get("torch_threads")


def _root(job: dict[str, Any]) -> Path | None:
    return Path(job["run_root"]) if job.get("run_root") else None


def _tree_hash(tree: Path) -> str:
    """The git tree a worktree has checked out (its code, whatever the commit)."""
    out = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "HEAD^{tree}"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def trial_runner(job: dict[str, Any]) -> Callable[[BenchSpec], BenchResult] | None:
    """For sides that bring their own code: run each trial in a process of that side's tree.

    A side brings code when its tree holds a `perfloop/engine` package, or when its launch is a
    shell command and the two trees differ (a server started from its own worktree). None when
    neither does (the engine is the harness's own, configured by flags; trials run in this process).
    """
    trees = {s: Path(job[key]) if job.get(key) else None for s, key in (("A", "a_tree"), ("B", "b_tree"))}
    commands = any(parse_target(job[k]).kind == "command" for k in ("a", "b"))
    if not any(has_engine(t) for t in trees.values()) and not (commands and trees["A"] != trees["B"]):
        return None
    out_dir = Path(job["out_dir"])
    by_launch = {job["a"]: "A", job["b"]: "B"}

    def run(bench: BenchSpec) -> BenchResult:
        # Distinct launches name their side; equal ones (two trees, one config) go by run_ab's label.
        side = by_launch[bench.launch] if len(by_launch) == 2 else (bench.label or "A")[-1]
        work = out_dir / f"job-{len(list(out_dir.glob('job-*'))):03d}-{side}"
        trial = {"bench": bench.model_dump(mode="json"), "run_root": job.get("run_root") or ""}
        out = ProcessBackend()._child("trial", trial, work, trees[side], trees[side])
        return BenchResult.model_validate(out)

    return run


def run_trial_job(job: dict[str, Any]) -> BenchResult:
    """Child side of `trial`: one benchmark run of one side, refusing a run whose clocks were replaced."""
    from perfloop.bench.runner import run_benchmark
    from perfloop.engine_tree import tampered_clocks

    result = run_benchmark(BenchSpec.model_validate(job["bench"]))
    tampered = tampered_clocks()
    if tampered:
        raise RuntimeError(f"{INTEGRITY} the measured code replaced {', '.join(tampered)}")
    return result


def _tokens(paths: list[str], side: str) -> tuple[int, int]:
    requested = achieved = 0
    for p in paths:
        if p.endswith(f"-{side}.json"):
            lengths = BenchResult.load(p).perfloop.output_lengths
            requested += lengths.requested_total
            achieved += lengths.achieved_total
    return requested, achieved


def run_ab_job(job: dict[str, Any]) -> BenchRecord:
    """Child side of `ab`: run the benchmark's interleaved trials and summarise them as a record."""
    from perfloop.bench.ab import run_ab

    spec = GoalSpec.model_validate(job["spec"])
    metrics = [spec.metric, *spec.tolerances.other_metrics]
    aa = job["a"] == job["b"] and job.get("a_tree") == job.get("b_tree")
    runner = trial_runner(job)
    extra = {"runner": runner} if runner else {}
    result = run_ab(
        job["a"],
        job["b"],
        spec.workload,
        trials=max(job["trials"], 2),
        aa=aa,
        metrics=metrics,
        out_dir=job["out_dir"],
        num_warmups=1,
        torch_threads=spec.measure.torch_threads,
        max_concurrency=spec.measure.max_concurrency,
        progress=False,
        until=SequentialRule.model_validate(job["until"]) if job.get("until") else None,
        min_trial_s=spec.measure.trial_seconds,
        **extra,
    )
    req_a, got_a = _tokens(result.result_files, "A")
    req_b, got_b = _tokens(result.result_files, "B")
    comparisons = {
        m: MetricComparison(
            metric=m,
            a_median=_median(c.a_values),
            b_median=_median(c.b_values),
            median_ratio=c.median_ratio,
            ci_low=c.ci_low,
            ci_high=c.ci_high,
            higher_is_better=c.higher_is_better,
        )
        for m, c in result.metrics.items()
    }
    return BenchRecord(
        label=job["label"],
        a_name=job["a_name"],
        b_name=job["b_name"],
        a_launch=job["a"],
        b_launch=job["b"],
        workload_fingerprint=result.workload_fingerprint,
        trials=result.trials,
        stop_reason=result.stop_reason,
        metrics=comparisons,
        requested_output_tokens=max(req_a, req_b) // result.trials,
        achieved_output_tokens_a=got_a // result.trials,
        achieved_output_tokens_b=got_b // result.trials,
        result_files=result.result_files,
    )


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def profile_workload(workload: WorkloadSpec, requests: int) -> WorkloadSpec:
    """The workload at its own shapes (prompt and output lengths) with fewer requests."""
    if workload.kind == "shared-prefix":
        per_group = min(workload.prompts_per_group, max(requests // 2, 1))
        groups = min(workload.num_groups, max(requests // per_group, 1))
        return workload.model_copy(update={"num_groups": groups, "prompts_per_group": per_group})
    return workload.model_copy(update={"num_prompts": min(workload.num_prompts, requests)})


def run_profile_job(job: dict[str, Any]) -> ProfileRecord:
    """Child side of `profile`: capture, analyse, and add the engine's own counters as a table."""
    from perfloop.bench.targets import model_vocab_size, parse_engine_flags
    from perfloop.engine.llm_engine import LLMEngine
    from perfloop.engine.sampling_params import SamplingParams
    from perfloop.profilers.capture import ProfileSchedule, capture_engine
    from perfloop.profilers.rows import ROW_ID, row_id
    from perfloop.profilers.tables import analyze

    launch: str = job["launch"]
    spec = GoalSpec.model_validate(job["spec"])
    if not launch.startswith("engine:"):
        return _profile_server(launch, spec, Path(job["out_dir"]))
    config = parse_engine_flags(launch.removeprefix("engine:"))
    if spec.measure.torch_threads:
        import torch

        torch.set_num_threads(spec.measure.torch_threads)
    out = Path(job["out_dir"])
    workload = profile_workload(spec.workload, spec.measure.profile_requests)
    if workload.vocab_size is None:
        workload = workload.model_copy(update={"vocab_size": model_vocab_size(config.model)})
    # The benchmark's concurrency, so the tables rank ops at the batch sizes the measurement had.
    schedule = ProfileSchedule(wait=0, warmup=1, active=spec.measure.profile_steps)
    trace = capture_engine(config, workload, out, schedule, spec.measure.max_concurrency)
    tables = analyze(trace, out / "tables", formats=("md", "json"))
    from perfloop.bench.workloads import build_requests

    # The counters' engine starts only once the capture's engines are gone: a CUDA engine takes
    # gpu_memory_utilization of the device for its KV pool, so one alive during the capture left the
    # capture's engine no memory ("no GPU memory left for the KV cache", PROFILE on the H200).
    gc.collect()
    engine = LLMEngine(config)
    requests = build_requests(workload)
    for r in requests:
        params = SamplingParams(max_tokens=r.output_len, temperature=0.0, ignore_eos=True)
        engine.add_request(f"stats-{r.index}", r.prompt, params)
    while engine.has_unfinished():
        engine.step()
    stats = engine.stats().model_dump() | {"requests": len(requests)}
    stats_id = row_id(PROFILE_STATS_STAGE, "engine_stats", "counters")
    tables[PROFILE_STATS_STAGE] = {"engine_stats": [{ROW_ID: stats_id, **stats}]}
    return ProfileRecord(trace=str(trace), tables=tables, engine_stats=stats)


def _profile_server(launch: str, spec: GoalSpec, out: Path) -> ProfileRecord:
    """Profile a served target (a URL, a command or a docker image) through /start_profile and
    /stop_profile, the endpoints perfloop, vLLM and SGLang share; the server writes the trace."""
    from perfloop.bench.runner import resolve_workload
    from perfloop.bench.targets import open_backend, parse_target
    from perfloop.bench.workloads import build_requests
    from perfloop.profilers.capture import capture_url
    from perfloop.profilers.tables import analyze

    target = parse_target(launch)
    if target.kind == "hf":
        raise MeasureError(f"launch: an hf: peer has no profiler endpoints to capture from; got {launch!r}")
    workload = resolve_workload(profile_workload(spec.workload, spec.measure.profile_requests), target)
    prompts = [(list(r.prompt), r.output_len) for r in build_requests(workload) if isinstance(r.prompt, list)]
    with open_backend(target, log_path=out / "server.log") as (backend, _command, _container):
        concurrency = spec.measure.max_concurrency or len(prompts)  # the benchmark's: all at once
        trace = capture_url(
            backend.base_url, prompts, out, model=backend.model_id, max_concurrency=concurrency
        )
    tables = analyze(trace, out / "tables", formats=("md", "json"))
    return ProfileRecord(trace=str(trace), tables=tables)


def main(argv: list[str]) -> int:
    """Child entry point: `ab|profile|trial JOB OUT`."""
    kind, job_path, out_path = argv
    # This process already has the cwd off sys.path; a target server it launches keeps its own habits.
    os.environ.pop("PYTHONSAFEPATH", None)
    job = json.loads(Path(job_path).read_text())
    jobs = {"ab": run_ab_job, "profile": run_profile_job, "trial": run_trial_job}
    try:
        record = jobs[kind](job)
    except RuntimeError as exc:
        if INTEGRITY not in str(exc):
            raise
        print(exc, flush=True)
        return 3
    Path(out_path).write_text(record.model_dump_json(indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
