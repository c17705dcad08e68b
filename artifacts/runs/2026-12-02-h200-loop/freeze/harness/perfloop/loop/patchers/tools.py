"""The agent patcher's tools, confined to one candidate worktree.

The model gets `read_file`, `list_dir`, `grep`, `apply_patch`, `run_correctness` and `finish`,
and nothing else (no shell). Every path is taken relative to the worktree root, normalised,
and refused when it is absolute, climbs out with `..`, enters `.git`, or passes through a
symlink that leaves the worktree. Writes (`apply_patch`) must also match the goal's allowed
paths and may not go through any symlink at all, so a link inside the tree cannot redirect
an allowed name to a protected file. Refusals come back to the model as tool errors and are
kept in `Sandbox.refusals` for the ledger.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from perfloop.loop.worktrees import matches_any

MAX_READ_LINES = 400
MAX_TOOL_CHARS = 30_000
MAX_GREP_HITS = 100
SYMLINK_MODE = "120000"
HIDDEN_ENV = ("ANTHROPIC_API_KEY",)  # the target's commands never see the agent's key

TOOL_SPECS: list[dict[str, Any]] = [
    {
        "name": "read_file",
        "description": "Read a text file of the target worktree, with line numbers. Paths are relative "
        "to the worktree root.",
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "start_line": {"type": "integer", "minimum": 1, "description": "First line (1-based)."},
                "max_lines": {"type": "integer", "minimum": 1, "maximum": MAX_READ_LINES},
            },
            "required": ["path"],
        },
    },
    {
        "name": "list_dir",
        "description": "List a directory of the worktree ('/' marks directories, '@' symlinks).",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string", "description": "Default: the worktree root."}},
        },
    },
    {
        "name": "grep",
        "description": "Search text files under a worktree path with a Python regular expression; "
        f"returns up to {MAX_GREP_HITS} `path:line: text` hits.",
        "input_schema": {
            "type": "object",
            "properties": {"pattern": {"type": "string"}, "path": {"type": "string"}},
            "required": ["pattern"],
        },
    },
    {
        "name": "apply_patch",
        "description": "Apply a unified diff (git diff format, paths a/... b/...) to the worktree. Only the "
        "goal's allowed paths may change; symlinks may not be created or written through.",
        "input_schema": {
            "type": "object",
            "properties": {"patch": {"type": "string", "description": "The unified diff."}},
            "required": ["patch"],
        },
    },
    {
        "name": "run_correctness",
        "description": "Run the goal's correctness command in the worktree (with a timeout); returns the "
        "exit status and the output's tail. perfloop runs it again itself after you finish.",
        "input_schema": {"type": "object", "properties": {}},
    },
    {
        "name": "finish",
        "description": "End the round. With the change applied: the rationale and the profiler table "
        "rows (`row_id`: `stage/table/name`) it acts on. With give_up=true: why no change is worth trying.",
        "input_schema": {
            "type": "object",
            "properties": {
                "rationale": {"type": "string"},
                "cited_rows": {"type": "array", "items": {"type": "string"}},
                "give_up": {"type": "boolean"},
            },
            "required": ["rationale"],
        },
    },
]


class ToolError(Exception):
    """A tool call that failed; its message goes back to the model as an error result."""


class PathRefused(ToolError):
    """A path outside what the sandbox allows (recorded in the ledger)."""


@dataclass
class Finish:
    """What the model handed in with `finish`."""

    rationale: str
    cited_rows: list[str]
    give_up: bool


@dataclass
class Sandbox:
    """One worktree plus the goal's rules; `call` runs one tool."""

    tree: Path
    allowed_paths: list[str]
    correctness: str
    reference: Path
    citeable_rows: set[str]
    correctness_timeout_s: float = 900.0
    refusals: list[str] = field(default_factory=list)
    finished: Finish | None = None

    def call(self, name: str, args: dict[str, Any]) -> str:
        """Run tool `name`; raises ToolError (the model sees its message)."""
        handlers = {
            "read_file": self.read_file,
            "list_dir": self.list_dir,
            "grep": self.grep,
            "apply_patch": self.apply_patch,
            "run_correctness": self.run_correctness,
            "finish": self.finish,
        }
        if name not in handlers:
            raise ToolError(f"unknown tool {name!r}; the tools are {', '.join(handlers)}")
        try:
            return handlers[name](**args)
        except PathRefused as exc:
            self.refusals.append(f"{name}: {exc}")
            raise
        except TypeError as exc:
            raise ToolError(f"bad arguments for {name}: {exc}") from exc

    # ---------- paths ----------

    def resolve(self, rel: str, write: bool = False) -> tuple[Path, str]:
        """The real path and the normalised relative name of `rel`, or PathRefused saying why."""
        if not rel or PurePosixPath(rel).is_absolute():
            raise PathRefused(f"{rel!r}: paths are relative to the worktree root")
        norm = os.path.normpath(rel).replace(os.sep, "/")
        if norm == ".." or norm.startswith("../"):
            raise PathRefused(f"{rel!r}: '..' leaves the worktree")
        parts = [] if norm == "." else norm.split("/")
        if ".git" in parts:
            raise PathRefused(f"{rel!r}: .git is not part of the sandbox")
        root = self.tree.resolve()
        here = root
        for part in parts:
            here = here / part
            if here.is_symlink():
                target = here.resolve()
                if write:
                    raise PathRefused(f"{rel!r}: writes through a symlink ({part} -> {os.readlink(here)})")
                if not target.is_relative_to(root):
                    raise PathRefused(f"{rel!r}: symlink {part} leaves the worktree")
        real = (root / norm).resolve()
        if not real.is_relative_to(root):
            raise PathRefused(f"{rel!r} resolves outside the worktree")
        if write and not matches_any(norm, self.allowed_paths):
            raise PathRefused(f"{norm!r} is outside the allowed paths {self.allowed_paths}")
        return real, norm

    # ---------- tools ----------

    def read_file(self, path: str, start_line: int = 1, max_lines: int = MAX_READ_LINES) -> str:
        """Numbered lines of a text file."""
        real, norm = self.resolve(path)
        if not real.is_file():
            raise ToolError(f"{norm}: not a file")
        data = real.read_bytes()
        if b"\0" in data[:8192]:
            raise ToolError(f"{norm}: binary file")
        lines = data.decode(errors="replace").splitlines()
        start = max(start_line, 1)
        chunk = lines[start - 1 : start - 1 + min(max_lines, MAX_READ_LINES)]
        body = "\n".join(f"{start + i:6d}\t{line}" for i, line in enumerate(chunk))
        more = len(lines) - (start - 1 + len(chunk))
        tail = f"\n[{more} more lines; read from line {start + len(chunk)}]" if more > 0 else ""
        return _clip(f"{norm} ({len(lines)} lines)\n{body}{tail}")

    def list_dir(self, path: str = ".") -> str:
        """Entries of a directory."""
        real, norm = self.resolve(path)
        if not real.is_dir():
            raise ToolError(f"{norm}: not a directory")
        entries = []
        for child in sorted(real.iterdir()):
            if child.name == ".git":
                continue
            mark = "@" if child.is_symlink() else "/" if child.is_dir() else ""
            entries.append(child.name + mark)
        return _clip(f"{norm}:\n" + "\n".join(entries))

    def grep(self, pattern: str, path: str = ".") -> str:
        """Regex hits in text files under `path`."""
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ToolError(f"bad regular expression {pattern!r}: {exc}") from exc
        real, _ = self.resolve(path)
        root = self.tree.resolve()
        files = [real] if real.is_file() else sorted(real.rglob("*"))
        hits: list[str] = []
        for file in files:
            rel = file.relative_to(root).as_posix() if file.is_relative_to(root) else None
            if rel is None or ".git" in rel.split("/") or file.is_symlink() or not file.is_file():
                continue
            data = file.read_bytes()[:1_000_000]
            if b"\0" in data[:8192]:
                continue
            for number, line in enumerate(data.decode(errors="replace").splitlines(), 1):
                if regex.search(line):
                    hits.append(f"{rel}:{number}: {line[:200]}")
                    if len(hits) >= MAX_GREP_HITS:
                        return _clip("\n".join(hits) + f"\n[stopped at {MAX_GREP_HITS} hits]")
        return _clip("\n".join(hits) or "no matches")

    def apply_patch(self, patch: str) -> str:
        """Check every path the diff names, then `git apply` it in the worktree."""
        paths, strip = diff_paths(patch)
        for rel in paths:
            self.resolve(rel, write=True)
        with tempfile.NamedTemporaryFile("w", suffix=".diff", delete=False) as fh:
            fh.write(patch if patch.endswith("\n") else patch + "\n")
        try:
            for check in (["--check"], []):
                proc = subprocess.run(
                    ["git", "apply", *check, "--recount", "--whitespace=nowarn", f"-p{strip}", fh.name],
                    cwd=self.tree,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                if proc.returncode != 0:
                    raise ToolError(f"git apply failed, nothing changed:\n{proc.stderr.strip()}")
        finally:
            os.unlink(fh.name)
        stat = subprocess.run(
            ["git", "diff", "--stat"], cwd=self.tree, capture_output=True, text=True, timeout=60
        )
        return f"applied to {', '.join(paths)}\n{stat.stdout.strip()}"

    def run_correctness(self) -> str:
        """The goal's correctness command in the worktree: exit status and output tail."""
        cmd = self.correctness.replace("{reference}", shlex.quote(str(self.reference)))
        cmd = cmd.replace("{worktree}", str(self.tree))
        try:
            proc = subprocess.run(
                cmd,
                shell=True,
                cwd=self.tree,
                capture_output=True,
                text=True,
                timeout=self.correctness_timeout_s,
                env={k: v for k, v in os.environ.items() if k not in HIDDEN_ENV},
            )
        except subprocess.TimeoutExpired as exc:
            raise ToolError(
                f"correctness command timed out after {self.correctness_timeout_s:.0f} s"
            ) from exc
        output = (proc.stdout + proc.stderr)[-4000:]
        verdict = "passed" if proc.returncode == 0 else "FAILED"
        return f"correctness {verdict} (exit {proc.returncode})\n{output}"

    def finish(self, rationale: str, cited_rows: list[str] | None = None, give_up: bool = False) -> str:
        """Hand in the round: a change with its rationale and cited rows, or a reason to give up."""
        cited = list(cited_rows or [])
        if not rationale.strip():
            raise ToolError("finish needs a rationale")
        if not give_up:
            if not self.changed():
                raise ToolError("no change is applied; apply_patch first, or finish with give_up=true")
            unknown = [r for r in cited if r not in self.citeable_rows]
            if not cited or unknown:
                raise ToolError(
                    f"cite the table rows the change acts on; unknown: {unknown}. "
                    f"Citeable: {', '.join(sorted(self.citeable_rows)[:40])}"
                )
        self.finished = Finish(rationale=rationale.strip(), cited_rows=cited, give_up=give_up)
        return "round handed in; perfloop validates, re-measures and reviews it now"

    def changed(self) -> list[str]:
        """Paths changed in the worktree (tracked or new)."""
        proc = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=self.tree,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return [line[3:] for line in proc.stdout.splitlines() if line.strip()]


_HEADER = re.compile(r"^(?:---|\+\+\+) (\S.*?)(?:\t.*)?$")
_MOVE = re.compile(r"^(?:rename|copy) (?:from|to) (.+)$")
_MODE = re.compile(r"^(?:new file mode|new mode) (\d+)$")


def diff_paths(patch: str) -> tuple[list[str], int]:
    """Every path a unified diff touches, and the `-p` strip level git should use.

    Refuses diffs that create symlinks or name no file at all.
    """
    headers: list[str] = []
    moves: list[str] = []
    for line in patch.splitlines():
        if (mode := _MODE.match(line)) and mode.group(1) == SYMLINK_MODE:
            raise PathRefused("patches may not create symlinks")
        if m := _HEADER.match(line):
            headers.append(_unquote(m.group(1)))
        elif m := _MOVE.match(line):
            moves.append(_unquote(m.group(1)))
    named = [h for h in headers if h != "/dev/null"]
    if not named:
        raise ToolError("not a unified diff: no '--- a/...' / '+++ b/...' file headers")
    prefixed = all(h.startswith(("a/", "b/")) for h in named)
    paths = [h[2:] for h in named] if prefixed else named
    return list(dict.fromkeys(paths + moves)), 1 if prefixed else 0


def _unquote(path: str) -> str:
    return path[1:-1] if len(path) > 1 and path[0] == path[-1] == '"' else path


def _clip(text: str) -> str:
    if len(text) <= MAX_TOOL_CHARS:
        return text
    return text[:MAX_TOOL_CHARS] + f"\n[clipped at {MAX_TOOL_CHARS} characters]"
