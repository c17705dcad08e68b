"""`perfloop ledger ...`: verify a run's ledger, export the record schemas."""

from __future__ import annotations

from pathlib import Path

import typer

from perfloop.ledger.runs import resolve_run
from perfloop.ledger.verify import verify_ledger
from perfloop.terminal import make_console

app = typer.Typer(help="Artifact ledger.", no_args_is_help=True)
console = make_console()


@app.command("verify")
def verify(
    run: str = typer.Argument(..., help="Run folder, or a run id under artifacts/."),
    against_branch: bool = typer.Option(
        False, "--against-branch", help="Also check the head anchored in the target repo at each RECORD."
    ),
    allow_missing: list[str] = typer.Option(
        [],
        "--allow-missing",
        help="Glob of recorded files that may be absent (e.g. '**/trace.json.gz'); repeatable.",
    ),
) -> None:
    """Check the hash chain of events.jsonl and every recorded file; name the first broken record.

    Read-only: it never repairs anything.
    """
    root = resolve_run(run)
    report = verify_ledger(root, against_branch=against_branch, allow_missing=allow_missing)
    if report.ok:
        anchored = f"; anchor {report.anchor}" if report.anchor else ""
        console.print(
            f"[green]ledger ok[/green]: {root} ({report.events} events, {report.files} files{anchored})"
        )
        for item in report.absent:
            console.print(f"absent (allowed by --allow-missing): {item}")
        return
    console.print(f"[red]ledger broken[/red]: {report.broken}: {report.problem}")
    raise typer.Exit(code=1)


@app.command("schemas")
def schemas(
    out: Path = typer.Option(Path("artifacts/schemas"), "--out", help="Folder for the JSON Schemas."),
) -> None:
    """Export the JSON Schema of every ledger record."""
    from perfloop.schemas import export_schemas  # composes ledger and loop records

    paths = export_schemas(out)
    console.print(f"wrote {len(paths)} schemas to {out}")
