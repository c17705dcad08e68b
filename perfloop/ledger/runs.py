"""Finding a run folder from what a user types: a path, or a run id under `artifacts/`."""

from __future__ import annotations

from pathlib import Path

import typer

ARTIFACTS = Path("artifacts")


def resolve_run(run: str) -> Path:
    """A run folder holding `events.jsonl`: `run` as a path, else `artifacts/<run>`."""
    for candidate in (Path(run), ARTIFACTS / run):
        if (candidate / "events.jsonl").exists() or (candidate / "manifest.json").exists():
            return candidate
    raise typer.BadParameter(f"no run folder at {run!r} or {ARTIFACTS / run}", param_hint="RUN")
