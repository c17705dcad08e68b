"""Child processes that die with the loop: each in its own process group, each group on record.

Every evidence-producing child (measurement, correctness, reference commands) is started in a new
session, so it and everything it starts share one process group, with PR_SET_PDEATHSIG so the
direct child dies when the loop does. The group id is written under `<run>/children/` while the
child runs; a SIGKILLed loop cannot clean up, so `goal resume` kills every group still on record
before it starts (`kill_leftovers`), and a normal exit or SIGTERM kills the groups itself.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHILDREN = "children"
_PR_SET_PDEATHSIG = 1
_registry: Path | None = None


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when the loop's thread that started it dies."""
    try:
        ctypes.CDLL("libc.so.6").prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def popen_kwargs() -> dict[str, object]:
    """Popen arguments of a loop child: its own process group, dying with the loop."""
    return {"start_new_session": True, "preexec_fn": die_with_parent}


def set_registry(run_root: Path | None) -> None:
    """Record children's process groups under `run_root/children/` (None: stop recording)."""
    global _registry
    _registry = run_root / CHILDREN if run_root is not None else None


@contextmanager
def tracked(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Keep `proc`'s process group on record while it runs; kill the whole group on the way out."""
    mark = _registry / str(proc.pid) if _registry is not None else None
    if mark is not None:
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text(f"{proc.pid}\n")
    try:
        yield proc
    finally:
        _killpg(proc.pid)
        if mark is not None:
            mark.unlink(missing_ok=True)


def run(
    cmd: str, cwd: Path | None, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`subprocess.run(cmd, shell=True)` as a tracked child: output captured, group killed on exit."""
    proc = subprocess.Popen(
        cmd, shell=True, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        **popen_kwargs(),
    )  # fmt: skip
    with tracked(proc):
        out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def kill_leftovers(run_root: Path) -> list[int]:
    """Kill the process groups a previous (killed) loop process left on record; returns those alive."""
    folder = run_root / CHILDREN
    killed = []
    for mark in sorted(folder.glob("*")) if folder.exists() else []:
        pgid = int(mark.name)
        if _killpg(pgid):
            killed.append(pgid)
        mark.unlink(missing_ok=True)
    return killed


def kill_all() -> None:
    """Kill every group on record now (normal exit, SIGTERM)."""
    if _registry is not None and _registry.exists():
        for mark in _registry.glob("*"):
            _killpg(int(mark.name))


def _killpg(pgid: int) -> bool:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True
