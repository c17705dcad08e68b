"""Finding a run folder from what a user types: a run id, a relative or an absolute path."""

from __future__ import annotations

from pathlib import Path

import typer

ARTIFACTS = Path("artifacts")


def find_run(run: str, artifact_root: Path = ARTIFACTS) -> Path | None:
    """The absolute run folder `run` names (a path, else `<artifact_root>/<run>`), or None."""
    for candidate in (Path(run), artifact_root / run):
        if (candidate / "events.jsonl").exists() or (candidate / "manifest.json").exists():
            # Resolved once, here: later steps run git in the target repo, where a relative
            # path would mean something else.
            return candidate.resolve()
    return None


def resolve_run(run: str, artifact_root: Path = ARTIFACTS) -> Path:
    """Like `find_run`, but a clear CLI error when there is no such run."""
    root = find_run(run, artifact_root)
    if root is None:
        raise typer.BadParameter(
            f"no run folder at {run!r} or {(artifact_root / run).as_posix()!r}", param_hint="RUN"
        )
    return root
