"""The target repo through gitpython: the loop branch, candidate commits and per-candidate worktrees.

The user's checked-out branch and working tree are never touched: candidates are built
and measured in worktrees under the run folder, and only the loop branch ref moves.
"""

from __future__ import annotations

import fnmatch
import posixpath
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import git

from perfloop.ledger.evidence_records import ChangedPath

_SYMLINK, _SUBMODULE = "120000", "160000"


class TargetRepoError(ValueError):
    """The target repo cannot be used as it is (missing, dirty, unknown commit)."""


def open_repo(path: Path) -> git.Repo:
    """Open the target repo, refusing a dirty tree (uncommitted work would not be measured)."""
    try:
        repo = git.Repo(path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise TargetRepoError(f"target.repo: {path} is not a git repository") from exc
    if repo.is_dirty(untracked_files=True):
        raise TargetRepoError(f"target.repo: {path} has uncommitted changes; commit or stash them first")
    return repo


def create_branch(repo: git.Repo, branch: str, commit: str) -> None:
    """Create the loop branch at `commit` without checking it out."""
    if branch in repo.heads:
        raise TargetRepoError(f"branch {branch} already exists in {repo.working_dir}")
    repo.create_head(branch, commit)


def move_branch(repo: git.Repo, branch: str, commit: str) -> None:
    """Advance the loop branch to an accepted candidate (never the user's branch)."""
    repo.heads[branch].set_commit(commit)


def resolve_commit(repo: git.Repo, rev: str) -> str:
    """Full SHA of a revision; a clear error when it does not exist."""
    try:
        return repo.commit(rev).hexsha
    except (git.BadName, ValueError) as exc:
        raise TargetRepoError(f"--commit: {rev!r} is not a commit in {repo.working_dir}") from exc


def is_ancestor(repo: git.Repo, ancestor: str, commit: str) -> bool:
    """True when `ancestor` is reachable from `commit`."""
    return repo.is_ancestor(ancestor, commit)


@contextmanager
def worktree(repo: git.Repo, commit: str, where: Path) -> Iterator[Path]:
    """A detached worktree at `commit`, removed when done (even after an error)."""
    if where.exists():
        drop_worktree(repo, where)
    where.parent.mkdir(parents=True, exist_ok=True)
    repo.git.worktree("add", "--detach", str(where), commit)
    try:
        yield where
    finally:
        drop_worktree(repo, where)


def drop_worktree(repo: git.Repo, where: Path) -> None:
    """Remove a worktree and its registration (also one left behind by a killed run)."""
    try:
        repo.git.worktree("remove", "--force", str(where))
    except git.GitCommandError:
        shutil.rmtree(where, ignore_errors=True)
    repo.git.worktree("prune")


def commit_in_worktree(tree: Path, message: str) -> str:
    """Commit every change in a worktree (detached); returns the new SHA."""
    wt = git.Repo(tree)
    wt.git.add("-A")
    # Commits the loop makes are authored by perfloop, whatever git identity the host has.
    actor = git.Actor("perfloop", "perfloop@localhost")
    wt.index.commit(message, author=actor, committer=actor)
    return wt.head.commit.hexsha


def changed_files(repo: git.Repo, parent: str, commit: str) -> list[str]:
    """Paths a candidate changes relative to its parent."""
    out = repo.git.diff("--name-only", parent, commit)
    return [line for line in out.splitlines() if line]


def _raw_diff(repo: git.Repo, parent: str, commit: str) -> Iterator[tuple[str, ...]]:
    """(old mode, new mode, old sha, new sha, status letter, old path or "", path) per change."""
    fields = repo.git.diff("--raw", "-z", "-M", "--no-abbrev", parent, commit).split("\0")
    i = 0
    while i < len(fields) and fields[i].startswith(":"):
        old_mode, new_mode, old_sha, new_sha, status = fields[i][1:].split()
        two = status[0] in "RC"
        old_path, path = (fields[i + 1], fields[i + 2]) if two else ("", fields[i + 1])
        i += 3 if two else 2
        yield old_mode, new_mode, old_sha, new_sha, status[0], old_path, path


def changed_paths(repo: git.Repo, parent: str, commit: str) -> list[ChangedPath]:
    """Every changed path resolved: renames with both sides, symlinks with their targets,
    submodules and binary files named as such (what `allowed_paths`/`protected_code` judge)."""
    out: list[ChangedPath] = []
    for old_mode, new_mode, old_sha, new_sha, status, old_path, path in _raw_diff(repo, parent, commit):
        mode, sha = (old_mode, old_sha) if status == "D" else (new_mode, new_sha)
        out.append(_resolve(repo, path, old_path or None, status, mode, sha))
    return out


def _resolve(repo: git.Repo, path: str, old: str | None, status: str, mode: str, sha: str) -> ChangedPath:
    if mode == _SUBMODULE:
        return ChangedPath(path=path, old_path=old, status=status, kind="submodule")
    data = blob_bytes(repo, sha)
    if mode == _SYMLINK:
        target = data.decode(errors="replace")
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        inside = not posixpath.isabs(target) and joined != ".." and not joined.startswith("../")
        return ChangedPath(
            path=path,
            old_path=old,
            status=status,
            kind="symlink",
            link_target=target,
            resolved_target=joined if inside else None,
        )
    kind = "binary" if b"\0" in data[:8000] else "file"  # git's own binary heuristic
    return ChangedPath(path=path, old_path=old, status=status, kind=kind)


def blob_bytes(repo: git.Repo, sha: str) -> bytes:
    """The contents of a blob by its SHA."""
    return repo.odb.stream(bytes.fromhex(sha)).read()


def added_blobs(repo: git.Repo, parent: str, commit: str) -> dict[str, bytes]:
    """Path -> contents of every file the candidate adds or changes (binary included)."""
    return {
        path: blob_bytes(repo, new_sha)
        for _om, new_mode, _os, new_sha, status, _op, path in _raw_diff(repo, parent, commit)
        if status != "D" and new_mode != _SUBMODULE
    }


def tree_of(repo: git.Repo, commit: str) -> str:
    """The tree hash of a commit: two commits with one tree run the same code."""
    return repo.commit(commit).tree.hexsha


def diff_text(repo: git.Repo, parent: str, commit: str) -> str:
    """The candidate's full diff."""
    return repo.git.diff(parent, commit) + "\n"


def matches_any(path: str, globs: list[str]) -> bool:
    """True when `path` matches one of the globs (`**/` also matches at the top level)."""
    for pattern in globs:
        if fnmatch.fnmatch(path, pattern):
            return True
        if pattern.startswith("**/") and fnmatch.fnmatch(path, pattern[3:]):
            return True
    return False
