"""`perfloop goal ...` (the loop) and `perfloop report` (the PR report)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from perfloop.ledger.records import RoundSummary
from perfloop.ledger.runs import resolve_run
from perfloop.ledger.verify import verify_ledger
from perfloop.loop import states as S
from perfloop.loop.machine import LoopError, Run
from perfloop.loop.model_review import ModelReviewer
from perfloop.loop.patchers.anthropic import AnthropicPatcher, ApiSettings, MissingKeyError, api_key
from perfloop.loop.patchers.base import Patcher
from perfloop.loop.patchers.external import ExternalPatcher
from perfloop.loop.patchers.playbook import PlaybookPatcher
from perfloop.loop.pricing import UnknownModelError
from perfloop.loop.process_backend import MeasureError, ProcessBackend
from perfloop.loop.quickstart import make_target_repo, quickstart_spec
from perfloop.loop.remote import JobPending, RemoteBackend, import_out
from perfloop.loop.report import build_report
from perfloop.loop.spec import GoalSpec, SpecError, load_spec, parse_spec
from perfloop.loop.worktrees import TargetRepoError

app = typer.Typer(help="The performance loop.", invoke_without_command=True)
console = Console()


def _patcher(spec: GoalSpec) -> Patcher:
    if spec.patcher == "anthropic":
        _require_key()
        try:
            return AnthropicPatcher(
                ApiSettings(model=spec.agent.model),
                max_turns=spec.agent.max_turns,
                max_output_tokens=spec.agent.max_output_tokens,
                notify=_notify,
            )
        except UnknownModelError as exc:
            raise typer.BadParameter(str(exc).removeprefix("--model: "), param_hint="--model") from exc
    return ExternalPatcher() if spec.patcher == "external" else PlaybookPatcher()


def _reviewer(spec: GoalSpec) -> ModelReviewer | None:
    """The optional model reviewer of `--review-model`."""
    if not spec.agent.review_model:
        return None
    _require_key()
    try:
        return ModelReviewer(ApiSettings(model=spec.agent.review_model))
    except UnknownModelError as exc:
        raise typer.BadParameter(str(exc).removeprefix("--model: "), param_hint="--review-model") from exc


def _require_key() -> None:
    try:
        api_key()
    except MissingKeyError as exc:
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from exc


def _notify(message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}")


GPU_CMD_HELP = "Run GPU phases as batch jobs through this command ({bundle}, {out}, {archive}; or `manual`)."


def _backend(spec: GoalSpec, gpu_cmd: str | None = None) -> ProcessBackend:
    """Local child processes, or batch jobs through `--gpu-cmd` / `target.gpu_cmd`."""
    runner = gpu_cmd or spec.target.gpu_cmd
    return RemoteBackend(runner) if runner else ProcessBackend()


def _open(run: str, gpu_cmd: str | None = None) -> Run:
    root = resolve_run(run)
    spec = GoalSpec.model_validate(json.loads((root / "manifest.json").read_text())["spec"])
    return Run(root, _backend(spec, gpu_cmd), _patcher(spec), _notify, _reviewer(spec))


def _finish(run: Run) -> None:
    """Print where the run stopped, verify the ledger, and write the report."""
    state = run.state
    if state.state == S.WAITING_FOR_PATCH:
        console.print(f"[yellow]waiting for a patch[/yellow]: prompt at {run.round_dir / 'prompt.md'}")
        console.print(f"then: perfloop goal submit {run.root}")
        return
    report = verify_ledger(run.root)
    status = "[green]verified[/green]" if report.ok else f"[red]BROKEN at {report.broken}[/red]"
    console.print(f"[bold]{state.state}[/bold]: {state.reason}")
    console.print(f"ledger {status}: {run.root} ({report.events} events)")
    console.print(f"report: {build_report(run.root)}")


def _drive(run: Run) -> None:
    try:
        run.drive()
    except LoopError as exc:
        raise typer.BadParameter(str(exc), param_hint="RUN") from exc
    except JobPending as exc:
        console.print(f"[yellow]waiting for a GPU job[/yellow]: {exc}")
        return
    except MeasureError as exc:
        # Already recorded as a failed attempt of the state (an `error` event); resume retries it.
        console.print(f"[red]error[/red]: {exc}\nrecorded; `perfloop goal resume {run.root}` retries it")
        raise typer.Exit(1) from exc
    _finish(run)


def _start(spec: GoalSpec) -> Run:
    try:
        return Run.create(spec, _backend(spec), _patcher(spec), _notify, _reviewer(spec))
    except (TargetRepoError, LoopError, SpecError) as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.callback()
def goal(
    ctx: typer.Context,
    artifact_root: Path = typer.Option(Path("artifacts"), "--artifact-root", help="Where runs are written."),
) -> None:
    """With no command: the quickstart, a complete real loop on the CPU (a few minutes)."""
    if ctx.invoked_subcommand is not None:
        return
    run_id = "quickstart-" + time.strftime("%Y%m%d-%H%M%S")
    repo = make_target_repo(artifact_root.resolve() / "quickstart-targets" / run_id)
    console.print(f"quickstart: mis-tuned target repo at {repo}; run {run_id}")
    _drive(_start(quickstart_spec(repo, artifact_root, run_id)))


@app.command("run")
def run_goal(
    spec: Path = typer.Option(..., "--spec", help="Goal spec YAML."),
    run_id: str = typer.Option(None, "--run-id", help="Run id (default: a timestamp)."),
    patcher: str = typer.Option(
        None, "--patcher", help="playbook, external or anthropic (overrides the spec)."
    ),
    max_rounds: int = typer.Option(None, "--max-rounds", help="Round budget (overrides the spec)."),
    model: str = typer.Option(None, "--model", help="anthropic patcher model (default claude-sonnet-5-5)."),
    max_turns: int = typer.Option(None, "--max-turns", min=1, help="API responses per round (default 40)."),
    max_output_tokens: int = typer.Option(
        None, "--max-output-tokens", min=1, help="Output tokens across the run's agent calls."
    ),
    max_usd: float = typer.Option(None, "--max-usd", min=0.0, help="API spend cap for the run, in USD."),
    review_model: str = typer.Option(None, "--review-model", help="Model of the optional model reviewer."),
    gpu_cmd: str = typer.Option(None, "--gpu-cmd", help=GPU_CMD_HELP),
) -> None:
    """Start a run from a goal spec and drive it until it ends or waits for a patch."""
    try:
        goal_spec = load_spec(spec)
    except SpecError as exc:
        raise typer.BadParameter(str(exc), param_hint="--spec") from exc
    data = goal_spec.model_dump(mode="json")
    if run_id:
        data["run_id"] = run_id
    if patcher:
        if patcher not in ("playbook", "external", "anthropic"):
            raise typer.BadParameter("choose playbook, external or anthropic", param_hint="--patcher")
        data["patcher"] = patcher
    if max_rounds:
        data["budgets"]["max_rounds"] = max_rounds
    if max_usd is not None:
        data["budgets"]["max_api_usd"] = max_usd
    agent = {"model": model, "max_turns": max_turns, "max_output_tokens": max_output_tokens}
    data["agent"].update({k: v for k, v in agent.items() if v is not None})
    if review_model:
        data["agent"]["review_model"] = review_model
    if gpu_cmd:
        data["target"]["gpu_cmd"] = gpu_cmd
    try:
        goal_spec = parse_spec(data)
    except SpecError as exc:
        raise typer.BadParameter(str(exc)) from exc
    _drive(_start(goal_spec))


@app.command("resume")
def resume(
    run: str = typer.Argument(..., help="Run folder or id."),
    gpu_cmd: str = typer.Option(None, "--gpu-cmd", help=GPU_CMD_HELP),
) -> None:
    """Continue a run after a crash, kill or stop request, from its last recorded transition."""
    _drive(_open(run, gpu_cmd))


@app.command("import")
def import_job(
    run: str = typer.Argument(..., help="Run folder or id."),
    archive: Path = typer.Argument(..., help="out.tgz of a job bundle run by hand (`--gpu-cmd manual`)."),
) -> None:
    """Hand a waiting run the out/ of its GPU job, then continue it."""
    loop = _open(run)
    try:
        bundle = import_out(loop.root, archive)
    except (MeasureError, OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="ARCHIVE") from exc
    console.print(f"imported the out/ of job {bundle.name}")
    _drive(loop)


@app.command("submit")
def submit(
    run: str = typer.Argument(..., help="Run folder or id."),
    commit: str = typer.Option(None, "--commit", help="Candidate SHA (default: HEAD of the agent worktree)."),
    rationale: str = typer.Option("", "--rationale", help="Why (default: the commit message)."),
    cite: list[str] = typer.Option([], "--cite", help="Cited row stage/table#index (default: Cites: lines)."),
    gpu_cmd: str = typer.Option(None, "--gpu-cmd", help=GPU_CMD_HELP),
) -> None:
    """Hand the waiting run an external agent's commit; the loop validates, revalidates and reviews it."""
    loop = _open(run, gpu_cmd)
    try:
        loop.submit(commit, rationale, cite)
    except (LoopError, TargetRepoError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    _drive(loop)


@app.command("status")
def status(run: str = typer.Argument(..., help="Run folder or id.")) -> None:
    """A table of the run's rounds and where it stands."""
    loop_run = _open(run)
    table = Table(
        title=f"run {loop_run.manifest.run_id}: {loop_run.state.state} (round {loop_run.state.round})"
    )
    for col in ("Round", "Gap", "Candidate", "Rule", "Verdict", "Rejected by"):
        table.add_column(col)
    for folder in sorted((loop_run.root / "rounds").glob("[0-9][0-9][0-9]")):
        path = folder / "summary.json"
        if not path.exists():
            table.add_row(folder.name, "", "", "", "(in progress)", "")
            continue
        s = RoundSummary.model_validate_json(path.read_text())
        gap = f"{s.gap.median_ratio:.3f} {s.gap.position}" if s.gap else ""
        commit = (s.patch.commit or "")[:12] if s.patch else ""
        rule = (s.patch.rule or s.patch.patcher) if s.patch else ""
        table.add_row(folder.name, gap, commit, rule, s.verdict or "", ", ".join(s.rejected_by))
    console.print(table)
    if loop_run.state.reason:
        console.print(loop_run.state.reason)


@app.command("stop")
def stop(run: str = typer.Argument(..., help="Run folder or id.")) -> None:
    """Abort the run now, or at the next transition when a process is driving it."""
    console.print(_open(run).stop())


def report(
    run: str = typer.Argument(..., help="Run folder or id."),
    out: Path = typer.Option(None, "--out", help="Report path (default: RUN/report.md)."),
) -> None:
    """Render the Markdown PR report of a run from its ledger."""
    path = build_report(resolve_run(run), out)
    console.print(f"report: {path}")
