"""Driving a run for `perfloop goal`: the backend, patcher and reviewer its spec names, and how a drive ends.

Kept out of perfloop/loop/cli.py so that `goal --help`, `goal status` and `report --help` do not import
the state machine, the measurement backends and the patchers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NoReturn

import typer

from perfloop.ledger.anchor import LedgerBrokenError
from perfloop.ledger.verify import verify_ledger
from perfloop.loop import states as S
from perfloop.loop.machine import LoopError, Run
from perfloop.loop.model_review import ModelReviewer
from perfloop.loop.patchers.anthropic import ApiSettings, MissingKeyError, api_key
from perfloop.loop.patchers.base import Patcher
from perfloop.loop.patchers.registry import make_patcher
from perfloop.loop.pricing import UnknownModelError
from perfloop.loop.process_backend import MeasureError, ProcessBackend
from perfloop.loop.quickstart import make_target_repo, quickstart_spec
from perfloop.loop.remote import JobPending, RemoteBackend, import_out
from perfloop.loop.report import build_report
from perfloop.loop.spec import GoalSpec, SpecError
from perfloop.loop.status import current_state
from perfloop.loop.worktrees import TargetRepoError
from perfloop.terminal import make_console

console = make_console()


def notify(message: str) -> None:
    """One timestamped progress line of the loop."""
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}", soft_wrap=True)


def _patcher(spec: GoalSpec) -> Patcher:
    try:
        return make_patcher(spec, notify)
    except MissingKeyError as exc:
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from exc
    except UnknownModelError as exc:
        raise typer.BadParameter(str(exc).removeprefix("--model: "), param_hint="--model") from exc


def _reviewer(spec: GoalSpec) -> ModelReviewer | None:
    """The optional model reviewer of `--review-model`."""
    if not spec.agent.review_model:
        return None
    try:
        api_key()
        return ModelReviewer(ApiSettings(model=spec.agent.review_model))
    except MissingKeyError as exc:
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from exc
    except UnknownModelError as exc:
        raise typer.BadParameter(str(exc).removeprefix("--model: "), param_hint="--review-model") from exc


def _backend(spec: GoalSpec, gpu_cmd: str | None = None) -> ProcessBackend:
    """Local child processes, or batch jobs through `--gpu-cmd` / `target.gpu_cmd`."""
    runner = gpu_cmd or spec.target.gpu_cmd
    return RemoteBackend(runner) if runner else ProcessBackend()


def open_run(root: Path, gpu_cmd: str | None = None) -> Run:
    """The existing run at `root`, with the backend, patcher and reviewer its manifest's spec names."""
    spec = GoalSpec.model_validate(json.loads((root / "manifest.json").read_text())["spec"])
    return Run(root, _backend(spec, gpu_cmd), _patcher(spec), notify, _reviewer(spec))


def start(spec: GoalSpec) -> Run:
    """A new run of `spec`; a bad target repo or spec is the user's mistake (one line)."""
    try:
        return Run.create(spec, _backend(spec), _patcher(spec), notify, _reviewer(spec))
    except (TargetRepoError, LoopError, SpecError) as exc:
        raise typer.BadParameter(str(exc)) from exc


def quickstart(root: Path) -> None:
    """The quickstart: a mis-tuned target repo under `root`, and a complete real loop on it."""
    run_id = "quickstart-" + time.strftime("%Y%m%d-%H%M%S")
    repo = make_target_repo(root.resolve() / "quickstart-targets" / run_id)
    console.print(f"quickstart: mis-tuned target repo at {repo}; run {run_id}")
    drive(start(quickstart_spec(repo, root, run_id)))


def import_job(root: Path, archive: Path) -> None:
    """Hand the waiting run at `root` the out/ of its GPU job run by hand, then drive it."""
    run = open_run(root)
    try:
        bundle = import_out(run.root, archive)
    except (MeasureError, OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="ARCHIVE") from exc
    console.print(f"imported the out/ of job {bundle.name}")
    drive(run)


def submit(root: Path, commit: str | None, rationale: str, cite: list[str], gpu_cmd: str | None) -> None:
    """Hand the waiting run at `root` an external agent's commit, then drive it."""
    run = open_run(root, gpu_cmd)
    try:
        run.submit(commit, rationale, cite)
    except (LoopError, TargetRepoError, LedgerBrokenError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - nothing was lost: say so in one line
        state = current_state(run.root).state
        again = "submit" if state == S.WAITING_FOR_PATCH else "resume"
        kept = f"the run is in {state}, worktrees kept; rerun `perfloop goal {again} {run.root}`"
        _fail(f"submit failed: {exc}; {kept}", exc)
    drive(run)


def _finish(run: Run) -> None:
    """Print where the run stopped, verify the ledger, and write the report."""
    state = run.state
    if state.state == S.WAITING_FOR_PATCH:
        tree, prompt = run.root / "work" / f"agent-{state.round:03d}", run.round_dir / "prompt.md"
        console.print(f"[yellow]WAITING_FOR_PATCH[/yellow]: read {prompt}", soft_wrap=True)
        console.print(f"commit in {tree}, then: perfloop goal submit {run.root}", soft_wrap=True)
        return
    report = verify_ledger(run.root, against_branch=True)
    status = "[green]verified[/green]" if report.ok else f"[red]BROKEN at {report.broken}[/red]"
    console.print(f"[bold]{state.state}[/bold]: {state.reason}", soft_wrap=True)
    console.print(f"ledger {status}: {run.root} ({report.events} events)", soft_wrap=True)
    console.print(f"report: {build_report(run.root)}", soft_wrap=True)


def drive(run: Run) -> None:
    """Drive `run` until it ends or waits; a failure is one line and exit 1 (the ledger has the rest)."""
    try:
        run.drive()
    except (LoopError, LedgerBrokenError) as exc:
        raise typer.BadParameter(str(exc), param_hint="RUN") from exc
    except JobPending as exc:
        console.print(f"[yellow]waiting for a GPU job[/yellow]: {exc}")
        return
    except MeasureError as exc:
        # Already recorded as a failed attempt of the state (an `error` event); resume retries it.
        _fail(f"{exc}\nrecorded; `perfloop goal resume {run.root}` retries it", exc)
    except Exception as exc:  # noqa: BLE001 - a one-line message; the ledger's error event has the rest
        _fail(
            f"{run.state.state} failed: {_first_line(exc)}; `perfloop goal resume {run.root}` retries it", exc
        )
    _finish(run)


def _fail(message: str, exc: Exception) -> NoReturn:
    """Print the error and exit 1."""
    console.print(f"[red]error[/red]: {message}", soft_wrap=True)
    raise typer.Exit(1) from exc


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
