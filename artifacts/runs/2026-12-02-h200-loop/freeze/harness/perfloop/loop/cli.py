"""`perfloop goal ...` (the loop) and `perfloop report` (the PR report).

Argument parsing and the read-only commands; driving a run (perfloop/loop/driving.py) and drawing
the report are imported by the commands that do them, so help and `goal status` stay light.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import typer
from rich.table import Table

from perfloop.ledger.anchor import LedgerBrokenError
from perfloop.ledger.runs import ARTIFACTS, find_run, resolve_run
from perfloop.ledger.verify import verify_ledger
from perfloop.loop.patchers.registry import patcher_names
from perfloop.loop.status import is_driven, run_status, transitions
from perfloop.loop.templates import write_example_spec
from perfloop.terminal import make_console

app = typer.Typer(
    help="The performance loop; bare `perfloop goal` runs the quickstart (a real loop on the CPU, minutes).",
    invoke_without_command=True,
)
console = make_console()
RUN_HELP = "Run id, or relative or absolute folder."
WAIT_POLL_S = 1.0
STALE_POLLS = 5  # polls with no driver and no new event before `goal wait` says the run is idle
GPU_CMD_HELP = "Run GPU phases as batch jobs through this command ({bundle}, {out}, {archive}; or `manual`)."


def _root(ctx: typer.Context, run: str) -> Path:
    """The absolute run folder of a run id or a relative or absolute path (resolved once, here)."""
    return resolve_run(run, ctx.obj or ARTIFACTS)


@app.callback()
def goal(
    ctx: typer.Context,
    artifact_root: Path = typer.Option(
        None, "--artifact-root", help="Where runs are written and run ids are found (default: artifacts)."
    ),
) -> None:
    """With no command: the quickstart, a complete real loop on the CPU (a few minutes)."""
    ctx.obj = artifact_root
    # Launch and correctness commands say `python`: make it this interpreter, venv activated or not.
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    if ctx.invoked_subcommand is not None:
        return
    from perfloop.loop import driving  # the state machine and its backends: only to drive a run

    driving.quickstart(artifact_root or ARTIFACTS)


@app.command("run")
def run_goal(
    ctx: typer.Context,
    spec: Path = typer.Option(..., "--spec", help="Goal spec YAML (see examples/, `perfloop goal init`)."),
    run_id: str = typer.Option(None, "--run-id", help="Run id (default: a timestamp)."),
    patcher: str = typer.Option(
        None, "--patcher", help=f"Patcher (overrides the spec): {', '.join(patcher_names())}."
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
    """Start a run; drive it until it ends or waits for a patch (both exit 0: the process ends)."""
    from perfloop.loop import driving  # the state machine and its backends: only to drive a run
    from perfloop.loop.spec import SpecError, load_spec, parse_spec

    try:
        data = load_spec(spec).model_dump(mode="json")
    except SpecError as exc:
        raise typer.BadParameter(str(exc), param_hint="--spec") from exc
    overrides = {"run_id": run_id, "patcher": patcher, "artifact_root": ctx.obj and str(ctx.obj)}
    data.update({k: v for k, v in overrides.items() if v})
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
    driving.drive(driving.start(goal_spec))


@app.command("init")
def init(
    repo: Path = typer.Argument(..., help="The target git repo."),
    out: Path = typer.Option(Path("goal.yaml"), "--out", help="Where to write the spec."),
    example: str = typer.Option(
        None, "--example", help="Example to start from (default: picked from what the repo holds)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented goal spec for REPO, from the closest spec in examples/; edit it, then `goal run`."""
    from perfloop.loop.spec import SpecError, load_spec  # numpy, through the workload models

    if out.exists() and not force:
        raise typer.BadParameter(f"{out} exists; pass --force to overwrite", param_hint="--out")
    try:
        name = write_example_spec(repo, out, example)
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    console.print(f"wrote {out} (from examples/{name}.yaml)", soft_wrap=True)
    try:
        load_spec(out)
        console.print(f"it loads; next: perfloop goal run --spec {out}", soft_wrap=True)
    except SpecError as exc:
        console.print(f"[yellow]edit it first[/yellow]: {exc}", soft_wrap=True)


@app.command("resume")
def resume(
    ctx: typer.Context,
    run: str = typer.Argument(..., help=RUN_HELP),
    gpu_cmd: str = typer.Option(None, "--gpu-cmd", help=GPU_CMD_HELP),
) -> None:
    """Continue a run after a crash, kill or stop request, from its last recorded transition."""
    from perfloop.loop import driving

    driving.drive(driving.open_run(_root(ctx, run), gpu_cmd))


@app.command("import")
def import_job(
    ctx: typer.Context,
    run: str = typer.Argument(..., help=RUN_HELP),
    archive: Path = typer.Argument(..., help="out.tgz of a job bundle run by hand (`--gpu-cmd manual`)."),
) -> None:
    """Hand a waiting run the out/ of its GPU job, then continue it."""
    from perfloop.loop import driving  # the state machine and its backends: only to drive a run

    driving.import_job(_root(ctx, run), archive)


@app.command("submit")
def submit(
    ctx: typer.Context,
    run: str = typer.Argument(..., help=RUN_HELP),
    commit: str = typer.Option(None, "--commit", help="Candidate SHA (default: HEAD of the agent worktree)."),
    rationale: str = typer.Option("", "--rationale", help="Why (default: the commit message)."),
    cite: list[str] = typer.Option([], "--cite", help="Cited row id stage/table/name (default: Cites:)."),
    gpu_cmd: str = typer.Option(None, "--gpu-cmd", help=GPU_CMD_HELP),
) -> None:
    """Hand the waiting run an external agent's commit; the loop validates, revalidates and reviews it."""
    from perfloop.loop import driving

    driving.submit(_root(ctx, run), commit, rationale, cite, gpu_cmd)


@app.command("status")
def status(
    ctx: typer.Context,
    run: str = typer.Argument(..., help=RUN_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the status as one JSON object."),
) -> None:
    """A table of the run's rounds and where it stands (`--json`: machine-readable)."""
    root = _root(ctx, run)
    st = run_status(root, root.name)
    if as_json:
        print(st.model_dump_json())
        return
    table = Table(title=f"run {st.run_id}: {st.state} (round {st.round})")
    for col in ("Round", "Gap", "Candidate", "Rule", "Verdict", "Rejected by"):
        table.add_column(col)
    for r in st.rounds:
        gap = f"{r.gap_ratio:.3f} {r.gap_position}" if r.gap_ratio is not None else ""
        verdict = (f"{r.verdict}: {r.why}" if r.why else r.verdict) or f"({r.status})"
        rejected = ", ".join(r.rejected_by)
        table.add_row(str(r.round), gap, (r.candidate or "")[:12], r.rule or "", verdict, rejected)
    console.print(table)
    prompt, nxt = st.prompt and f"prompt: {st.prompt}", st.next_command and f"next: {st.next_command}"
    for line in (st.reason, prompt, nxt):
        if line:
            console.print(line, soft_wrap=True)
    ledger = verify_ledger(root, against_branch=True)  # read-only: never repairs
    console.print(
        f"ledger [green]verified[/green] ({ledger.anchor})"
        if ledger.ok
        else f"ledger [red]BROKEN[/red] at {ledger.broken}: {ledger.problem}"
    )


@app.command("wait")
def wait(
    ctx: typer.Context,
    run: str = typer.Argument(..., help="Run id, or relative or absolute folder (may not exist yet)."),
    timeout: float = typer.Option(3600.0, "--timeout", min=0, help="Give up after so many seconds (exit 1)."),
) -> None:
    """Block until the run waits for a patch (exit 0) or ends (exit 0), one line per transition.

    Exit 1 when the timeout passes, or when no process drives the run (then `goal resume` it).
    """
    deadline = time.monotonic() + timeout
    root = find_run(run, ctx.obj or ARTIFACTS)
    while root is None and time.monotonic() < deadline:  # `goal run` may still be creating it
        time.sleep(WAIT_POLL_S)
        root = find_run(run, ctx.obj or ARTIFACTS)
    if root is None:
        raise typer.BadParameter(f"no run folder at {run!r} after {timeout:.0f}s", param_hint="RUN")
    seen, idle = max(len(transitions(root)) - 1, 0), 0  # the current state, then every new one
    while True:
        events = transitions(root)
        for event in events[seen:]:
            when = time.strftime("%H:%M:%S")
            print(f"{when} round {event.round}: {event.data.get('from')} -> {event.state}", flush=True)
        idle = idle + 1 if len(events) == seen else 0
        seen = len(events)
        st = run_status(root, root.name)
        if st.waiting_for_patch:
            todo = f"read {st.prompt}; commit in {st.worktree}; then {st.next_command}"
            print(f"{st.state}: {todo}", flush=True)
            return
        if st.ended:
            print(f"{st.state}: {st.reason}", flush=True)
            return
        if idle >= STALE_POLLS and not is_driven(root):
            print(f"{st.state}: no process drives the run; `perfloop goal resume {root}`", flush=True)
            raise typer.Exit(1)
        if time.monotonic() >= deadline:
            print(f"{st.state}: still running after {timeout:.0f}s", flush=True)
            raise typer.Exit(1)
        time.sleep(WAIT_POLL_S)


@app.command("stop")
def stop(ctx: typer.Context, run: str = typer.Argument(..., help=RUN_HELP)) -> None:
    """Abort the run now, or at the next transition when a process is driving it."""
    from perfloop.loop import driving

    try:
        console.print(driving.open_run(_root(ctx, run)).stop())
    except LedgerBrokenError as exc:
        raise typer.BadParameter(str(exc), param_hint="RUN") from exc


def report(
    run: str = typer.Argument(..., help=RUN_HELP),
    out: Path = typer.Option(None, "--out", help="Report path (default: RUN/report.md)."),
) -> None:
    """Render the Markdown PR report of a run from its ledger."""
    root = resolve_run(run)
    from perfloop.loop.report import build_report  # matplotlib: only once there is a run to draw

    path = build_report(root, out)
    console.print(f"report: {path}")
