"""The target repo through gitpython: the loop branch, candidate commits and per-candidate worktrees.

The user's checked-out branch and working tree are never touched: candidates are built
and measured in worktrees under the run folder, and only the loop branch ref moves.
"""

from __future__ import annotations

import fnmatch
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import git


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
