"""Static gates of a kernel task, run before anything is timed: frozen contract, one build, no timing code,
no secrets. Each gate returns the reasons it failed (empty: passed); `GATES` is the registry."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from perfloop.kernel.task import FROZEN_FILES, Task
from perfloop.ledger.store import sha256_file
from perfloop.loop.secrets import PATTERNS as SECRET_PATTERNS

# One-sided build changes: a candidate may not flip global numerics or compiler switches for itself.
BUILD_FLAGS = re.compile(
    r"os\.environ|putenv|allow_tf32|allow_fp16_reduced|allow_bf16_reduced|set_flush_denormal|"
    r"fast_?math|enable_fp_fusion|torch\.backends|set_float32_matmul_precision|TRITON_|knobs\."
)
# The clock, the harness and the task's own files belong to the judge, not the judged.
TIMING_CODE = re.compile(
    r"\bimport time\b|\bfrom time\b|perf_counter|monotonic|cuda\.Event|elapsed_time|cuda\.synchronize|"
    r"perfloop\.kernel|harness|rows\.json|grid\.json|task\.yaml|sys\._getframe|\binspect\b|__import__"
)


def frozen_hashes(task: Task) -> dict[str, str]:
    """SHA-256 of every file of the task's contract, and of the baseline's source file when the task
    lives in the repository that holds it (a baseline that calls into that file is pinned with it)."""
    hashes = {name: sha256_file(task.root / name) for name in FROZEN_FILES}
    repo = next((p for p in task.root.parents if (p / ".git").exists()), None)
    source = repo / task.spec.baseline.source if repo else None
    if source is not None and source.is_file():
        hashes[f"source:{task.spec.baseline.source}"] = sha256_file(source)
    return hashes


def _scan(pattern: re.Pattern[str], text: str, what: str) -> list[str]:
    lines = [f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}" for m in pattern.finditer(text)]
    return [f"{what} ({'; '.join(lines[:3])})"] if lines else []


def frozen_task(task: Task, candidate: Path, frozen: dict[str, str] | None) -> list[str]:
    """The rows, grid, tolerances, harness and baseline are those frozen at the task's first run."""
    if frozen is None:
        return []
    now = frozen_hashes(task)
    return [
        f"{name} changed since the task was frozen; the task is void"
        for name in now
        if now[name] != frozen.get(name)
    ]


def build_flags(task: Task, candidate: Path, frozen: dict[str, str] | None) -> list[str]:
    """Both sides build the same way: no environment, backend or compiler switches in the candidate."""
    return _scan(BUILD_FLAGS, candidate.read_text(errors="replace"), "sets a build or numerics flag")


def timing_code(task: Task, candidate: Path, frozen: dict[str, str] | None) -> list[str]:
    """The candidate touches neither the clock nor the harness nor the task's files."""
    return _scan(TIMING_CODE, candidate.read_text(errors="replace"), "touches timing or harness code")


def secrets(task: Task, candidate: Path, frozen: dict[str, str] | None) -> list[str]:
    """No credential-shaped strings in the candidate (read as bytes, so binary content is covered)."""
    text = candidate.read_bytes().decode("latin-1")
    return [f"holds a {kind}" for kind, pattern in SECRET_PATTERNS.items() if pattern.search(text)]


Gate = Callable[[Task, Path, "dict[str, str] | None"], list[str]]
GATES: dict[str, Gate] = {
    "frozen_task": frozen_task,
    "build_flags": build_flags,
    "timing_code": timing_code,
    "secrets": secrets,
}


def run_gates(task: Task, candidate: Path, frozen: dict[str, str] | None) -> dict[str, list[str]]:
    """Gate name -> reasons, for every gate that failed."""
    failed = {name: gate(task, candidate, frozen) for name, gate in GATES.items()}
    return {name: reasons for name, reasons in failed.items() if reasons}
