"""One ABI for both sides, and the correctness checks a candidate must pass before it is timed.

Baseline and candidate are Python files loaded by the same loader and called the same way,
`kernel(**inputs)`, writing into the output tensors the task's harness allocated. Outputs are poisoned
before every call, twice with different values, so a kernel that leaves part of its output unwritten
cannot pass by luck; under CUDA graphs the replay must rewrite zeroed outputs and follow new inputs.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from perfloop.kernel.task import Task, TaskError
from perfloop.ledger.kernel_records import CheckResult, CorrectnessRecord

Inputs = dict[str, Any]
SENTINEL = -31337.0  # a finite poison: where it survives a call, the kernel never wrote


def load_module(path: Path, name: str) -> ModuleType:
    """Import a task file by path under a private name (baseline and candidate never share a module)."""
    spec = importlib.util.spec_from_file_location(f"perfloop_kernel_task.{name}", path)
    if spec is None or spec.loader is None:
        raise TaskError(f"task: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kernel_fn(path: Path, name: str) -> Callable[..., None]:
    """The `kernel` function of a baseline or candidate file."""
    fn = getattr(load_module(path, name), "kernel", None)
    if not callable(fn):
        raise TaskError(f"task: {path} defines no kernel(**inputs) function")
    return fn


def src_sha16(path: Path) -> str:
    """First 16 hex digits of the file's SHA-256: the candidate's identity in every record."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class Harness:
    """The task's `harness.py`: inputs for a parameter set, which of them are outputs, optional roofline."""

    def __init__(self, task: Task) -> None:
        self.module = load_module(task.root / "harness.py", "harness")
        self.outputs: list[str] = list(getattr(self.module, "OUTPUTS", []))
        if not self.outputs or not callable(getattr(self.module, "make_inputs", None)):
            raise TaskError("task: harness.py needs make_inputs(params, device, seed) and OUTPUTS")

    def inputs(self, params: dict[str, Any], device: torch.device, seed: int) -> Inputs:
        """Fresh inputs (outputs allocated) for one parameter set."""
        return self.module.make_inputs(params, device, seed)

    def roofline(self, params: dict[str, Any]) -> tuple[float, float] | None:
        """(flops, bytes) of one call, if the harness says."""
        fn = getattr(self.module, "roofline", None)
        return fn(params) if callable(fn) else None


def poison(inputs: Inputs, outputs: list[str], value: float) -> None:
    """Fill every output tensor with `value` before a call."""
    for name in outputs:
        inputs[name].fill_(value)


def call(
    fn: Callable[..., None], inputs: Inputs, outputs: list[str], value: float
) -> dict[str, torch.Tensor]:
    """Poison the outputs, call the kernel, return copies of the outputs."""
    poison(inputs, outputs, value)
    fn(**inputs)
    return {name: inputs[name].detach().clone() for name in outputs}


def compare(
    base: dict[str, torch.Tensor], nan_run: dict[str, torch.Tensor], sentinel_run: dict[str, torch.Tensor],
    atol: float, rtol: float, row: str,
) -> list[CheckResult]:  # fmt: skip
    """poison (every element written), nan_inf (no non-finite where the baseline is finite), match."""
    checks = []
    for name, ref in base.items():
        unwritten = int((sentinel_run[name] == SENTINEL).sum())
        got = nan_run[name]
        bad = (~got.isfinite() & ref.isfinite()).sum().item()
        err = (got.float() - ref.float()).abs()
        limit = atol + rtol * ref.float().abs()
        over = int((err > limit).sum()) if not bad else -1
        finite = err[ref.isfinite() & got.isfinite()]
        worst = float(finite.max()) if finite.numel() else 0.0
        checks += [
            CheckResult(
                check="poison", row=row, passed=unwritten == 0, detail=f"{name}: {unwritten} unwritten"
            ),
            CheckResult(check="nan_inf", row=row, passed=bad == 0, detail=f"{name}: {bad} non-finite"),
            CheckResult(
                check="match", row=row, passed=over == 0 and bad == 0, detail=f"{name}: max |err| {worst:.3g}"
            ),
        ]
    return checks


@dataclass(frozen=True)
class Sides:
    """The two kernels under judgement and what they run on."""

    base_fn: Callable[..., None]
    cand_fn: Callable[..., None]
    harness: Harness
    task: Task
    device: torch.device


def check_point(sides: Sides, params: dict[str, Any], row: str, seed: int) -> list[CheckResult]:
    """Baseline vs candidate on one parameter set, outputs poisoned before every call."""
    base_fn, cand_fn, harness, task, device = (
        sides.base_fn, sides.cand_fn, sides.harness, sides.task, sides.device
    )  # fmt: skip
    inputs = harness.inputs(params, device, seed)
    try:
        base = call(base_fn, inputs, harness.outputs, float("nan"))
        nan_run = call(cand_fn, inputs, harness.outputs, float("nan"))
        sentinel_run = call(cand_fn, inputs, harness.outputs, SENTINEL)
    except Exception as exc:  # a candidate that raises on a row fails that row, not the harness
        return [CheckResult(check="runs", row=row, passed=False, detail=f"{type(exc).__name__}: {exc}")]
    checks = compare(base, nan_run, sentinel_run, task.spec.tolerance.atol, task.spec.tolerance.rtol, row)
    if device.type == "cuda":
        checks += graph_checks(sides, params, row, seed)
    return checks


def graph_checks(sides: Sides, params: dict[str, Any], row: str, seed: int) -> list[CheckResult]:
    """Under a CUDA graph the candidate must rewrite zeroed outputs on replay and follow new inputs."""
    base_fn, cand_fn, harness, task, device = (
        sides.base_fn, sides.cand_fn, sides.harness, sides.task, sides.device
    )  # fmt: skip
    inputs = harness.inputs(params, device, seed)
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        cand_fn(**inputs)  # compile and warm outside capture
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        cand_fn(**inputs)
    results = []
    for check, new_seed in (("graph_replay", seed), ("graph_inputs", seed + 1000)):
        fresh = harness.inputs(params, device, new_seed)
        for name, value in fresh.items():
            if name not in harness.outputs and isinstance(value, torch.Tensor):
                inputs[name].copy_(value)
        poison(inputs, harness.outputs, 0.0)
        graph.replay()
        torch.cuda.synchronize(device)
        got = {name: inputs[name].clone() for name in harness.outputs}
        ref = call(base_fn, fresh, harness.outputs, float("nan"))
        tol = task.spec.tolerance
        ok = all(torch.allclose(got[n].float(), ref[n].float(), tol.rtol, tol.atol) for n in ref)
        results.append(CheckResult(check=check, row=row, passed=ok, detail="replay vs eager baseline"))
    return results


def check_correctness(
    task: Task, base_fn: Callable[..., None], cand_fn: Callable[..., None], device: torch.device
) -> CorrectnessRecord:
    """Every production row and every grid point, baseline vs candidate."""
    sides = Sides(base_fn, cand_fn, Harness(task), task, device)
    points = [(r.id, r.params) for r in task.rows] + [(f"grid{i}", p) for i, p in enumerate(task.grid)]
    checks: list[CheckResult] = []
    for i, (row, params) in enumerate(points):
        checks += check_point(sides, params, row, seed=i)
    failed = [f"{c.check}:{c.row}" for c in checks if not c.passed]
    return CorrectnessRecord(passed=not failed, checks=checks, failed=failed)
