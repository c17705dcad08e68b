"""`perfloop kernel run`: gates, correctness, interleaved timing and dispatch for one candidate, every step
appended to the task's hash-chained ledger (the goal loop's `Ledger`), with CSV/JSONL views beside it."""

from __future__ import annotations

import datetime as dt
import json
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from pydantic import BaseModel

from perfloop import __version__
from perfloop.kernel.dispatch import active_bound, decide, dispatch_markdown, geomean
from perfloop.kernel.gates import frozen_hashes, run_gates
from perfloop.kernel.harness import Harness, check_correctness, kernel_fn, src_sha16
from perfloop.kernel.task import Task, TaskError
from perfloop.kernel.timing import input_sets, time_pair
from perfloop.ledger.kernel_records import BenchRow, CorrectnessRecord, DispatchRow, LineageRecord, NcuDigest
from perfloop.ledger.records import Manifest
from perfloop.ledger.store import Ledger


class RunOutcome(BaseModel):
    """What one `kernel run` decided."""

    lineage: LineageRecord
    correctness: CorrectnessRecord | None = None
    bench: list[BenchRow] = []
    dispatch: list[DispatchRow] = []
    geomean: float | None = None


def open_ledger(task: Task) -> tuple[Ledger, dict[str, str]]:
    """The task's ledger, frozen on first use; returns it with the frozen hashes. A void task is refused."""
    ledger = Ledger(task.ledger_root)
    events = ledger.events()
    if not events:
        manifest = Manifest(
            run_id=task.spec.name, created=time.time(), perfloop_version=__version__,
            spec=task.spec.model_dump(mode="json"), environment=environment(),
            target_repo=str(task.root), loop_branch="", base_commit=task.spec.baseline.commit,
        )  # fmt: skip
        path = ledger.write_model("manifest.json", manifest)
        ledger.append("freeze", "FROZEN", data={"frozen": frozen_hashes(task)}, files=[path])
        events = ledger.events()
    if any(e.kind == "void" for e in events):
        raise TaskError(f"task {task.spec.name} is void: {next(e for e in events if e.kind == 'void').data}")
    return ledger, events[0].data["frozen"]


def environment() -> dict[str, str]:
    """Host and device the task is measured on."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {"host": platform.node(), "gpu": gpu, "torch": torch.__version__, "python": sys.version.split()[0]}


def gpu_utilisation() -> float | None:
    """GPU utilisation % from nvidia-smi (None without one): the GPU must be idle around a timing."""
    if not torch.cuda.is_available() or shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:
        return float(out.stdout.strip().splitlines()[0])
    except (ValueError, IndexError):
        return None


def copy_bandwidth_gbps(device: torch.device) -> float | None:
    """Measured device-to-device copy bandwidth (read + write), the practical memory roofline."""
    if device.type != "cuda":
        return None
    src = torch.empty(1 << 30, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        dst.copy_(src)
    end.record()
    end.synchronize()
    return 2 * src.numel() * 10 / (start.elapsed_time(end) / 1e3) / 1e9


def previous(ledger: Ledger) -> list[LineageRecord]:
    """Every lineage record so far, in order."""
    return [LineageRecord.model_validate(e.data) for e in ledger.events() if e.kind == "lineage"]


def _reject(
    ledger: Ledger, lineage: LineageRecord, why: list[str], correctness: CorrectnessRecord | None = None
) -> RunOutcome:
    lineage = lineage.model_copy(update={"status": "REJECT", "gates_failed": why})
    ledger.append("lineage", "REJECT", data=lineage.model_dump(mode="json"))
    return RunOutcome(lineage=lineage, correctness=correctness)


def run_candidate(
    task: Task, candidate: Path, direction: str, device: torch.device, command: str
) -> RunOutcome:
    """Judge one candidate file against the task's baseline and record everything."""
    ledger, frozen = open_ledger(task)
    sha = src_sha16(candidate)
    history = previous(ledger)
    kept = [r for r in history if r.status == "KEEP"]
    lineage = LineageRecord(
        id=f"c{len(history) + 1}-{sha[:8]}", parent=kept[-1].id if kept else "baseline", direction=direction,
        src_sha16=sha, build=task.spec.build_env, dispatch_gate="", correctness="not run",
        benchmark="not run", status="REJECT",
    )  # fmt: skip
    copy = ledger.root / "candidates" / f"{sha}.py"
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(candidate, copy)
    ledger.append("candidate", "SUBMITTED", data={"id": lineage.id, "command": command}, files=[copy])
    if any(r.src_sha16 == sha for r in history):
        return _reject(ledger, lineage, ["resubmitted: this source was already judged"])
    failed = run_gates(task, candidate, frozen)
    if "frozen_task" in failed:
        ledger.append("void", "VOID", data={"reasons": failed["frozen_task"]})
    if failed:
        return _reject(ledger, lineage, [f"{name}: {'; '.join(why)}" for name, why in failed.items()])
    base_fn = kernel_fn(task.root / "baseline.py", "baseline")
    cand_fn = kernel_fn(candidate, f"candidate_{sha}")
    correctness = check_correctness(task, base_fn, cand_fn, device)
    path = ledger.write_model(f"runs/{lineage.id}/correctness.json", correctness)
    ledger.append(
        "correctness",
        "CHECKED",
        data={"passed": correctness.passed, "failed": correctness.failed},
        files=[path],
    )
    lineage = lineage.model_copy(
        update={"correctness": "pass" if correctness.passed else ", ".join(correctness.failed[:5])}
    )
    if not correctness.passed:
        return _reject(ledger, lineage, [f"correctness: {', '.join(correctness.failed[:8])}"], correctness)
    return _time_and_decide(task, ledger, lineage, history, base_fn, cand_fn, device, command, correctness)


def _time_and_decide(
    task: Task, ledger: Ledger, lineage: LineageRecord, history: list[LineageRecord],
    base_fn: Callable[..., None], cand_fn: Callable[..., None], device: torch.device, command: str,
    correctness: CorrectnessRecord,
) -> RunOutcome:  # fmt: skip
    """Time every row, decide each bucket, record the bench rows, dispatch table and lineage."""
    harness = Harness(task)
    copy_gbps = copy_bandwidth_gbps(device)
    env = environment()
    bench, dispatch = [], []
    for row in task.rows:
        sets = input_sets(harness, row.params, device)
        idle_before = gpu_utilisation()
        timing = time_pair(base_fn, cand_fn, sets, task.spec.timing, device)
        bench.append(BenchRow(
            utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            host=env["host"], gpu=env["gpu"],
            row=row.id, shape=",".join(f"{k}={v}" for k, v in row.params.items()),
            baseline_median_us=round(timing.baseline_median_us, 3),
            candidate_median_us=round(timing.candidate_median_us, 3),
            speedup=round(timing.speedup, 4), speedup_low=round(min(timing.speedups), 4),
            speedup_high=round(max(timing.speedups), 4), trials=task.spec.timing.trials, iters=timing.iters,
            warmup=task.spec.timing.warmup, cand_src_sha16=lineage.src_sha16, command=command,
            gpu_idle_before=idle_before, gpu_idle_after=gpu_utilisation(),
        ))  # fmt: skip
        ncu = latest_ncu(ledger, row.id)
        bound = active_bound(
            timing.baseline_median_us,
            harness.roofline(row.params),
            copy_gbps,
            ncu,
        )
        dispatch.append(decide(row.bucket or row.id, timing, task.spec.min_speedup, bound))
    head = geomean([b.speedup for b in bench])
    bench_path = ledger.write_text(f"runs/{lineage.id}/bench.json", _json_list(bench))
    disp_path = ledger.write_text(f"runs/{lineage.id}/dispatch.json", _json_list(dispatch))
    ledger.append(
        "bench", "TIMED", data={"geomean": head, "copy_gbps": copy_gbps}, files=[bench_path, disp_path]
    )
    taken = [d.bucket for d in dispatch if d.decision == "candidate"]
    status = "KEEP" if taken else "REJECT"
    lineage = lineage.model_copy(update={
        "status": status, "benchmark": f"geomean x{head:.4f} over {len(bench)} rows",
        "dispatch_gate": ", ".join(taken) or "none (no bucket won)",
        "evidence_files": [ledger.rel(bench_path), ledger.rel(disp_path)],
    })  # fmt: skip
    if status == "KEEP":
        for old in (r for r in history if r.status == "KEEP"):
            ledger.append(
                "lineage",
                "SUPERSEDED",
                data=old.model_copy(update={"status": "SUPERSEDED"}).model_dump(mode="json"),
            )
    ledger.append("lineage", status, data=lineage.model_dump(mode="json"))
    write_views(ledger)
    return RunOutcome(lineage=lineage, correctness=correctness, bench=bench, dispatch=dispatch, geomean=head)


def latest_ncu(ledger: Ledger, row: str) -> NcuDigest | None:
    """The newest baseline NCU digest recorded for a row."""
    for event in reversed(ledger.events()):
        if event.kind == "ncu" and event.data.get("row") == row and event.data.get("side") == "baseline":
            return NcuDigest.model_validate(event.data)
    return None


def _json_list(models: list[BaseModel]) -> str:
    return "[\n" + ",\n".join(m.model_dump_json() for m in models) + "\n]\n"


def write_views(ledger: Ledger) -> None:
    """`benchmark.csv`, `solutions.jsonl` and `dispatch.md` rendered from the ledger (views, not evidence)."""
    rows: list[BenchRow] = []
    dispatch: list[DispatchRow] = []
    for event in ledger.events():
        for rel in event.files:
            if rel.endswith("/bench.json"):
                rows = [BenchRow.model_validate(r) for r in _load(ledger.root / rel)] + rows
            if rel.endswith("/dispatch.json"):
                dispatch = [DispatchRow.model_validate(r) for r in _load(ledger.root / rel)]
    fields = [f for f in BenchRow.model_fields if f != "schema_version"]
    csv = [",".join(fields)] + [",".join(_csv(getattr(r, f)) for f in fields) for r in rows]
    ledger.write_text("benchmark.csv", "\n".join(csv) + "\n")
    ledger.write_text("solutions.jsonl", "".join(r.model_dump_json() + "\n" for r in latest_lineage(ledger)))
    ledger.write_text("dispatch.md", dispatch_markdown(dispatch))


def latest_lineage(ledger: Ledger) -> list[LineageRecord]:
    """One lineage record per candidate id, its latest status."""
    latest: dict[str, LineageRecord] = {}
    for record in previous(ledger):
        latest[record.id] = record
    return list(latest.values())


def _load(path: Path) -> list[dict]:
    return json.loads(path.read_text())


def _csv(value: object) -> str:
    text = "" if value is None else str(value)
    return f'"{text}"' if "," in text or " " in text else text


def command_line() -> str:
    """The command as typed, for the ledger (`perfloop kernel ...` or the module run directly)."""
    as_module = [sys.executable, "-m", "perfloop.kernel.cli"]
    head = ["perfloop"] if Path(sys.argv[0]).name == "perfloop" else as_module
    return shlex.join([*head, *sys.argv[1:]])
