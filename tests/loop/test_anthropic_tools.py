"""The agent's sandbox: what the tools let a model read and write in a candidate worktree."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import git
import pytest

from perfloop.loop.patchers.tools import PathRefused, Sandbox, ToolError, diff_paths

GOOD = """diff --git a/engine.yaml b/engine.yaml
--- a/engine.yaml
+++ b/engine.yaml
@@ -1,2 +1,2 @@
-enable_prefix_caching: false
+enable_prefix_caching: true
 model: preset:tiny-qwen3
"""


def new_file(path: str, body: str = "x: 1\n") -> str:
    """A diff that creates `path`."""
    lines = body.splitlines()
    hunk = "".join(f"+{line}\n" for line in lines)
    return (
        f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n"
        f"@@ -0,0 +1,{len(lines)} @@\n{hunk}"
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A worktree with a config, benchmark code, a link out of the tree and a link onto bench code."""
    root = tmp_path / "tree"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours\n")
    root.mkdir()
    (root / "engine.yaml").write_text("enable_prefix_caching: false\nmodel: preset:tiny-qwen3\n")
    (root / "bench").mkdir()
    (root / "bench" / "workload.py").write_text("PROMPTS = 8\n")
    os.symlink(outside, root / "conf")
    os.symlink("bench/workload.py", root / "fast.yaml")
    repo = git.Repo.init(root)
    repo.git.add("-A")
    actor = git.Actor("t", "t@example.com")
    repo.index.commit("tree", author=actor, committer=actor)
    return root


def sandbox(
    tree: Path, allowed: list[str] | None = None, correctness: str = "true", timeout_s: float = 300
) -> Sandbox:
    """A sandbox on `tree`; the correctness timeout is liveness only, unless a test is about it."""
    return Sandbox(
        tree=tree,
        allowed_paths=allowed or ["engine.yaml", "conf/**", "fast.yaml", "new/**"],
        correctness=correctness,
        reference=tree.parent / "reference.json",
        citeable_rows={"prefill/kernel_table/aten::mm"},
        correctness_timeout_s=timeout_s,
    )


def test_good_patch_applies_and_finish_hands_it_in(tree: Path) -> None:
    box = sandbox(tree)
    assert "engine.yaml" in box.call("apply_patch", {"patch": GOOD})
    assert "enable_prefix_caching: true" in (tree / "engine.yaml").read_text()
    box.call(
        "finish", {"rationale": "reuse shared prefixes", "cited_rows": ["prefill/kernel_table/aten::mm"]}
    )
    assert box.finished is not None and box.finished.cited_rows == ["prefill/kernel_table/aten::mm"]


def test_patch_outside_allowed_paths_is_refused_and_nothing_changes(tree: Path) -> None:
    box = sandbox(tree)
    patch = GOOD.replace("engine.yaml", "bench/workload.py")
    with pytest.raises(PathRefused, match="outside the allowed paths"):
        box.call("apply_patch", {"patch": patch})
    assert box.refusals and "bench/workload.py" in box.refusals[0]
    assert box.changed() == []


@pytest.mark.parametrize(
    ("patch", "why"),
    [
        (new_file("conf/extra.yaml"), "through a symlink"),  # conf -> a folder outside the tree
        (GOOD.replace("engine.yaml", "fast.yaml"), "through a symlink"),  # allowed name, bench target
        (new_file("../escape.txt"), "leaves the worktree"),
        (new_file("new/../../escape.txt"), "leaves the worktree"),
        (new_file(".git/hooks/post-commit"), ".git"),
    ],
)
def test_escaping_writes_are_refused(tree: Path, patch: str, why: str) -> None:
    box = sandbox(tree, allowed=["**"])
    with pytest.raises(PathRefused, match=why):
        box.call("apply_patch", {"patch": patch})
    assert len(box.refusals) == 1
    assert box.changed() == []
    assert not (tree.parent / "escape.txt").exists()
    assert sorted(p.name for p in (tree.parent / "outside").iterdir()) == ["secret.txt"]


def test_patch_creating_a_symlink_is_refused(tree: Path) -> None:
    patch = new_file("new/link", "../bench/workload.py").replace("100644", "120000")
    with pytest.raises(PathRefused, match="symlinks"):
        sandbox(tree).call("apply_patch", {"patch": patch})


def test_reads_stay_inside_the_worktree(tree: Path) -> None:
    box = sandbox(tree)
    assert "2\tmodel: preset:tiny-qwen3" in box.call("read_file", {"path": "engine.yaml"})
    assert "PROMPTS" in box.call("read_file", {"path": "fast.yaml"})  # an in-tree link may be read
    for path, why in [
        ("conf/secret.txt", "leaves the worktree"),
        ("/etc/passwd", "relative"),
        ("../outside/secret.txt", "leaves the worktree"),
        (".git/config", ".git"),
    ]:
        with pytest.raises(PathRefused, match=why):
            box.call("read_file", {"path": path})
    listing = box.call("list_dir", {})
    assert "conf@" in listing and "bench/" in listing and ".git" not in listing
    assert box.call("grep", {"pattern": "PROMPTS"}).startswith("bench/workload.py:1:")
    assert len(box.refusals) == 4


def test_bad_calls_come_back_as_errors_the_model_can_read(tree: Path) -> None:
    box = sandbox(tree)
    with pytest.raises(ToolError, match="no change is applied"):
        box.call("finish", {"rationale": "done", "cited_rows": ["prefill/kernel_table/aten::mm"]})
    box.call("apply_patch", {"patch": GOOD})
    with pytest.raises(ToolError, match="unknown: \\['decode/made_up/x'\\]"):
        box.call("finish", {"rationale": "done", "cited_rows": ["decode/made_up/x"]})
    with pytest.raises(ToolError, match="git apply failed"):
        box.call("apply_patch", {"patch": GOOD})  # already applied: the context no longer matches
    with pytest.raises(ToolError, match="not a unified diff"):
        box.call("apply_patch", {"patch": "make it faster"})
    with pytest.raises(ToolError, match="unknown tool 'bash'"):
        box.call("bash", {"command": "ls"})
    with pytest.raises(ToolError, match="bad arguments"):
        box.call("read_file", {"file": "engine.yaml"})
    box.call("finish", {"rationale": "nothing to gain", "give_up": True})
    assert box.finished is not None and box.finished.give_up


def test_run_correctness_reports_exit_status_times_out_and_hides_the_key(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-" + "k" * 40)
    show_key = f"{sys.executable} -c \"import os; print(os.environ.get('ANTHROPIC_API_KEY', 'unset'))\""
    assert "passed (exit 0)\nunset" in sandbox(tree, correctness=show_key).call("run_correctness", {})
    assert "FAILED (exit 3)" in sandbox(tree, correctness="exit 3").call("run_correctness", {})
    with pytest.raises(ToolError, match="timed out after 2 s"):
        sandbox(tree, correctness="sleep 5", timeout_s=2).call("run_correctness", {})


def test_diff_paths_reads_git_and_plain_headers() -> None:
    assert diff_paths(GOOD) == (["engine.yaml"], 1)
    plain = "--- engine.yaml\n+++ engine.yaml\n@@ -1 +1 @@\n-a\n+b\n"
    assert diff_paths(plain) == (["engine.yaml"], 0)
    renamed = "diff --git a/x b/y\nsimilarity index 100%\nrename from x\nrename to y\n"
    with pytest.raises(ToolError):
        diff_paths(renamed)  # a pure rename names no ---/+++ header: refused rather than guessed
