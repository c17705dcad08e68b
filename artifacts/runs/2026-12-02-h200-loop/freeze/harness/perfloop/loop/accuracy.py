"""The `accuracy` gate's phases: the task eval and logprob consistency through a launched target.

At FREEZE the baseline is served as the loop launches it and evaluated; its figures set the bars
(`AccuracyFreeze`), and a baseline under the floor ends the run BLOCKED. At VALIDATE each candidate
is served from its own worktree and evaluated the same way; `judge` compares it with the frozen
baseline, paired item by item, and names every check that failed.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from perfloop.bench.launcher import Launcher
from perfloop.bench.targets import open_backend, parse_engine_flags, parse_target
from perfloop.eval.client import Completions, served_model
from perfloop.eval.consistency import THRESHOLDS, check_consistency
from perfloop.eval.items import load_items, spread
from perfloop.eval.paired import DRIFT, UnpairedItems, compare
from perfloop.eval.paired import baseline_broken as below_floor
from perfloop.ledger.eval_records import AccuracyFreeze, AccuracyRun, PairedComparison
from perfloop.loop import children
from perfloop.loop.harness import child_env, threads_env
from perfloop.loop.measurement import Side
from perfloop.loop.spec import AccuracySpec

FREEZE_FILE = "freeze/accuracy.json"


@contextmanager
def served(side: Side, run_root: Path | None, log: Path, threads: int | None) -> Iterator[tuple[str, str]]:
    """(base URL, model name) of `side` served over the OpenAI API for as long as the block lasts.

    An `engine:` launch is served by `perfloop serve` with the same flags, in the environment every
    evidence process gets (frozen harness, the tree's own engine package when it has one).
    """
    target = parse_target(side.launch)
    if target.kind == "url":
        yield target.value, served_model(target.value)
        return
    if target.kind in ("docker", "peer"):
        with open_backend(target, log_path=log) as (backend, _command, _container):
            yield backend.base_url, served_model(backend.base_url)
        return
    if target.kind == "hf":
        raise ValueError(f"accuracy: an hf: launch serves no OpenAI API to evaluate: {side.launch!r}")
    model = None
    command = target.value
    if target.kind == "engine":
        config = parse_engine_flags(target.value)
        model = config.model
        argv = [sys.executable, "-m", "perfloop.cli", "serve", *config.to_flags()]
        command = shlex.join(argv) + " --port {port}"
    env = child_env(run_root, side.tree) | threads_env(threads)
    with Launcher(command, 600, log, env=env, cwd=side.tree) as server, children.tracked(server.proc):
        yield server.url, model or served_model(server.url)


def evaluate(
    side: Side, acc: AccuracySpec, run_root: Path | None, out: Path, threads: int | None = None
) -> AccuracyRun:
    """Serve `side`, score the task set and run the consistency checks; every part timed."""
    from perfloop.eval.tasks import score_items, server_scorer, task_record  # torch: only when evaluating

    items = spread(load_items(None if acc.items == "builtin" else Path(acc.items)), acc.max_items)
    start = time.monotonic()
    with served(side, run_root, out / f"{side.name}-server.log", threads) as (url, model):
        ready = time.monotonic()
        client = Completions(url, model)
        try:
            name = f"{side.name}: {side.launch}"
            task = task_record(score_items(items, server_scorer(client)), name)
            scored = time.monotonic()
            consistency = check_consistency(
                client, name, acc.dtype, acc.prompts, acc.prompt_len, acc.tokens, acc.vocab
            )
        finally:
            client.close()
    done = time.monotonic()
    return AccuracyRun(
        side=side.name, launch=side.launch, task=task, consistency=consistency,
        launch_s=round(ready - start, 3), task_s=round(scored - ready, 3),
        consistency_s=round(done - scored, 3),
    )  # fmt: skip


def freeze_bars(acc: AccuracySpec, baseline: AccuracyRun) -> AccuracyFreeze:
    """The bars, from the spec and the baseline's own figures (its noise is not a candidate's fault)."""
    task = baseline.task
    checks = baseline.consistency.checks
    return AccuracyFreeze(
        baseline=baseline,
        floor=acc.floor,
        tolerance=acc.tolerance if acc.tolerance is not None else (task.high - task.low) / 2,
        drift_tolerance=DRIFT[acc.dtype],
        thresholds={
            c.check: max(THRESHOLDS[acc.dtype], acc.threshold_factor * c.max_abs_diff) for c in checks
        },
        max_diverged={c.check: c.diverged for c in checks},
    )


@dataclass
class Judgement:
    """A candidate against the frozen baseline: the checks that failed, and the evidence line."""

    failed: list[str]
    evidence: str
    paired: PairedComparison | None

    @property
    def passed(self) -> bool:
        return not self.failed


def judge(frozen: AccuracyFreeze, cand: AccuracyRun) -> Judgement:
    """Paired task comparison (drop, loglikelihood drift, same items) and every consistency check
    against its frozen threshold; each failure is named (`task_accuracy`, `consistency/...`)."""
    failed: list[str] = []
    parts: list[str] = []
    paired = None
    try:
        paired = compare(frozen.baseline.task, cand.task, frozen.tolerance, frozen.drift_tolerance)
    except UnpairedItems as exc:
        failed.append("task_items")
        parts.append(f"task_items: {exc}")
    if paired is not None:
        if paired.drop > frozen.tolerance + 1e-12:
            failed.append("task_accuracy")
        if paired.max_score_drift > frozen.drift_tolerance:
            failed.append("task_drift")
        parts.append(f"task: {paired.reason}")
    by_name = {c.check: c for c in cand.consistency.checks}
    base = {c.check: c for c in frozen.baseline.consistency.checks}
    for name, threshold in frozen.thresholds.items():
        c = by_name.get(name)
        if c is None:
            failed.append(f"consistency/{name}")
            parts.append(f"consistency/{name}: not run")
            continue
        short = c.diverged == 0 and c.tokens < base[name].tokens  # fewer logprobs than asked for
        if c.max_abs_diff > threshold or c.diverged > frozen.max_diverged[name] or short:
            failed.append(f"consistency/{name}")
        parts.append(
            f"consistency/{name}: max |d logprob| {c.max_abs_diff:.2e} (threshold {threshold:.1e}, "
            f"baseline {base[name].max_abs_diff:.1e}) over {c.tokens} tokens (baseline "
            f"{base[name].tokens}), {c.diverged} diverged (baseline {frozen.max_diverged[name]})"
        )
    head = f"FAILED {', '.join(failed)}; " if failed else ""
    return Judgement(failed=failed, evidence=head + "; ".join(parts), paired=paired)


def baseline_broken(frozen: AccuracyFreeze) -> str | None:
    """The BLOCKED reason when the baseline is under the floor (None when it can serve as a bar)."""
    return below_floor(frozen.baseline.task, frozen.floor)
