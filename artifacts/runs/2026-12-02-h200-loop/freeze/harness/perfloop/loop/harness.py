"""The frozen harness: the perfloop code that produces evidence, copied and hashed at FREEZE.

Every process that measures or judges a candidate (the A/B driver, each trial, the
profiler, the correctness command) runs with this copy first on `sys.path`, the working
directory off it (`PYTHONSAFEPATH`), no bytecode written into it, and its hash checked
before each use. A candidate's tree supplies only the target: a `perfloop/engine`
package in the tree is mounted by `perfloop.engine_tree`, everything else stays frozen.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import perfloop
from perfloop.engine_tree import ENV as ENGINE_TREE_ENV
from perfloop.ledger.evidence_records import HarnessManifest
from perfloop.loop.patchers.tools import HIDDEN_ENV

HARNESS_DIR = "freeze/harness"
MANIFEST = "freeze/harness.json"


class HarnessError(RuntimeError):
    """The frozen harness is missing or changed since FREEZE."""


def _files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def tree_sha256(files: dict[str, str]) -> str:
    """One hash over every (path, file hash) pair."""
    return hashlib.sha256("".join(f"{k}\0{v}\n" for k, v in sorted(files.items())).encode()).hexdigest()


def snapshot(run_root: Path) -> HarnessManifest:
    """Copy the running perfloop package into the run folder (read-only) and hash it."""
    source = Path(perfloop.__file__).resolve().parent
    dest = run_root / HARNESS_DIR / "perfloop"
    if dest.exists():
        shutil.rmtree(dest.parent, onerror=_force)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    files = _files(dest.parent)
    for path in dest.parent.rglob("*"):
        if path.is_file():
            path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    return HarnessManifest(source=str(source), sha256=tree_sha256(files), files=files)


def _force(func: Callable[[str], object], path: str, _exc: object) -> None:
    # The copy is read-only; a FREEZE redone after a kill removes the old one first.
    os.chmod(path, stat.S_IRWXU)
    func(path)


def harness_of(path: Path) -> Path | None:
    """The run folder holding `path` (a measurement's output folder), if it has a frozen harness."""
    for folder in [path, *path.parents]:
        if (folder / MANIFEST).exists():
            return folder
    return None


def current_sha256(run_root: Path) -> str:
    """The hash of the harness copy as it is on disk now."""
    return tree_sha256(_files(run_root / HARNESS_DIR))


def verify(run_root: Path) -> HarnessManifest:
    """The manifest, after checking the copy on disk still hashes to it (every file, no extras)."""
    manifest = HarnessManifest.model_validate_json((run_root / MANIFEST).read_text())
    files = _files(run_root / HARNESS_DIR)
    if tree_sha256(files) != manifest.sha256:
        changed = sorted(
            k for k in files.keys() | manifest.files.keys() if files.get(k) != manifest.files.get(k)
        )
        raise HarnessError(f"frozen harness changed since FREEZE: {changed[:10]}")
    return manifest


def threads_env(threads: int | None) -> dict[str, str]:
    """The torch thread count measurement uses, as the environment every evidence process starts with
    (so no process can tell the benchmark from the correctness run by its thread count)."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}


def child_env(run_root: Path | None, tree: Path | None) -> dict[str, str]:
    """The environment of every evidence process: frozen harness first, cwd off the path, not the
    agent's API key (a candidate's code runs in some of them), and the candidate's engine package
    when its tree has one."""
    env = {k: v for k, v in os.environ.items() if k not in HIDDEN_ENV}
    env.pop(ENGINE_TREE_ENV, None)
    if run_root is not None:
        verify(run_root)
        harness = str((run_root / HARNESS_DIR).resolve())
        env["PYTHONPATH"] = os.pathsep.join(p for p in (harness, os.environ.get("PYTHONPATH")) if p)
    env["PYTHONSAFEPATH"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if has_engine(tree):
        env[ENGINE_TREE_ENV] = str(Path(str(tree)).resolve())
    return env


def has_engine(tree: Path | None) -> bool:
    """True when a tree holds its own `perfloop/engine` package (a code target, not a config)."""
    return tree is not None and (tree / "perfloop" / "engine" / "__init__.py").is_file()
