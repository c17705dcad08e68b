"""Red team: planted reward hacks, each rejected by a named gate; an honest speed-up accepted.

Every test drives the real state machine on a real git repo. The static and phase classes use
the scripted backend (the trick never reaches a measurement, or the measurement is not what is
tested); the classes that live inside a measurement (`slow`) run the real `ProcessBackend`:
frozen-harness children, the candidate's engine code from its own worktree, one process per
trial and side.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import git
import pytest
from conftest import FakeBackend, ScriptedPatcher, make_spec, set_config

import perfloop
from perfloop.bench.ab import Until
from perfloop.ledger.records import BenchRecord, ProfileRecord
from perfloop.ledger.verify import verify_ledger
from perfloop.loop import gates as gates_module
from perfloop.loop import worktrees as wt
from perfloop.loop.correctness import workload_prompts
from perfloop.loop.machine import Run
from perfloop.loop.measurement import Side
from perfloop.loop.patchers.base import Evidence, Patcher, Proposal
from perfloop.loop.process_backend import MeasureError, ProcessBackend
from perfloop.loop.spec import GoalSpec

KEY = "sk-ant-api03-" + "Zq7" * 12
PKG = Path(perfloop.__file__).resolve().parent


def _review(run: Run, rnd: int = 1) -> dict:
    return json.loads((run.root / f"rounds/{rnd:03d}/review.json").read_text())


def _failed(run: Run, rnd: int = 1) -> set[str]:
    return {g["gate"] for g in _review(run, rnd)["gates"] if not g["passed"]}


def _drive(tmp_path: Path, repo: Path, edits: list, backend=None, **spec_over: object) -> Run:  # type: ignore[no-untyped-def]
    spec = make_spec(repo, tmp_path, budgets={"max_rounds": len(edits)}, **spec_over)
    run = Run.create(spec, backend or FakeBackend(), ScriptedPatcher(edits))
    run.drive()
    return run


def _assert_rejected(run: Run, gate: str, rnd: int = 1) -> None:
    review = _review(run, rnd)
    assert gate in _failed(run, rnd) and not review["accepted"], review
    assert run.repo.heads[run.manifest.loop_branch].commit.hexsha == run.manifest.base_commit
    assert verify_ledger(run.root).ok


# ---------- paths: renames, symlinks ----------


def rename_protected(tree: Path) -> None:
    """Moves the (protected) benchmark workload file to an allowed name."""
    git.Repo(tree).git.mv("bench/workload.py", "helpers.py")
    set_config(enable_prefix_caching=True)(tree)


def symlink_out(tree: Path) -> None:
    """An allowed-looking config that is a symlink reaching outside the repo."""
    (tree / "tuned.yaml").symlink_to("../../outside/engine.yaml")
    set_config(enable_prefix_caching=True)(tree)


def symlink_into_protected(tree: Path) -> None:
    """An allowed-looking file that is a symlink into the protected benchmark code."""
    (tree / "tuned.yaml").symlink_to("bench/workload.py")
    set_config(enable_prefix_caching=True)(tree)


def add_submodule(tree: Path) -> None:
    """A submodule at an allowed-looking path: code from elsewhere, not reviewed here."""
    sub = git.Repo.init(tree / "kernels.py")  # an embedded repository: `git add -A` records a gitlink
    (tree / "kernels.py" / "fast.c").write_text("int fast(void) { return 1; }\n")
    sub.git.add("-A")
    sub.index.commit("vendored kernels", author=git.Actor("a", "a@b"), committer=git.Actor("a", "a@b"))
    set_config(enable_prefix_caching=True)(tree)


@pytest.mark.parametrize(
    ("edit", "gate"),
    [
        (rename_protected, "protected_code"),
        (add_submodule, "allowed_paths"),
        (symlink_out, "allowed_paths"),
        (symlink_into_protected, "protected_code"),
    ],
)
def test_path_tricks_are_resolved_and_rejected_before_measurement(
    tmp_path: Path, target_repo: Path, edit, gate: str
) -> None:
    backend = FakeBackend()
    run = _drive(
        tmp_path,
        target_repo,
        [edit],
        backend,
        target={**_target(target_repo), "allowed_paths": ["engine.yaml", "*.yaml", "*.py"]},
    )
    _assert_rejected(run, gate)
    # Static gates run before anything of the candidate: no correctness run, no revalidation.
    assert "revalidate" not in backend.calls
    assert not (run.root / "rounds/001/validation.json").exists()
    static = json.loads((run.root / "rounds/001/static.json").read_text())
    kinds = {p["kind"] for p in static["paths"]} | {p["old_path"] for p in static["paths"]}
    assert kinds & {"bench/workload.py", "symlink", "submodule"}


def _target(repo: Path) -> dict:
    return make_spec(repo, repo.parent).target.model_dump(mode="json")


# ---------- secrets ----------


def secret_in_binary(tree: Path) -> None:
    """A real improvement that also commits a binary blob carrying an API key."""
    set_config(enable_prefix_caching=True)(tree)
    (tree / "weights.bin").write_bytes(b"\x00\x01\x02PK\x00" + KEY.encode() + b"\x00\xff")


def secret_in_text(tree: Path) -> None:
    """The key in a text file: it would land in the recorded diff."""
    set_config(enable_prefix_caching=True)(tree)
    (tree / "notes.yaml").write_text(f"# tuning notes\napi: {KEY}\n")


@pytest.mark.parametrize("edit", [secret_in_binary, secret_in_text])
def test_a_secret_is_caught_named_by_position_and_redacted_everywhere(
    tmp_path: Path, target_repo: Path, edit
) -> None:
    run = _drive(
        tmp_path,
        target_repo,
        [edit],
        target={**_target(target_repo), "allowed_paths": ["engine.yaml", "*.bin", "*.yaml"]},
    )
    _assert_rejected(run, "no_secrets")
    evidence = next(g for g in _review(run)["gates"] if g["gate"] == "no_secrets")["evidence"]
    name = "weights.bin:1:" if edit is secret_in_binary else "notes.yaml:2:6: anthropic key"
    assert name in evidence
    for path in run.root.rglob("*"):
        if path.is_file() and "harness" not in path.parts:
            assert KEY.encode() not in path.read_bytes(), path


# ---------- frozen state ----------


CHECK = """import json, pathlib, sys
run = pathlib.Path.cwd().parents[1]
{hack}
sys.exit(0)
"""
WIDEN_BAND = """freeze = run / "freeze" / "freeze.json"
data = json.loads(freeze.read_text())
data["noise_band"] = 0.0
freeze.chmod(0o644)
freeze.write_text(json.dumps(data))
"""
EDIT_HARNESS = """for path in (run / "freeze" / "harness").rglob("gates.py"):
    path.chmod(0o644)
    path.write_text("# the gates say yes\\n")
"""


def _with_check(target_repo: Path) -> None:
    """The target's correctness command runs a script of its own repo (an allowed path)."""
    (target_repo / "check.py").write_text(CHECK.format(hack=""))
    repo = git.Repo(target_repo)
    repo.git.add("-A")
    repo.index.commit("correctness script")


def _check_hack(hack: str):  # type: ignore[no-untyped-def]
    def edit(tree: Path) -> None:
        (tree / "check.py").write_text(CHECK.format(hack=hack))
        set_config(enable_prefix_caching=True)(tree)

    edit.__name__ = "check_hack"
    return edit


@pytest.mark.parametrize("hack", [WIDEN_BAND, EDIT_HARNESS])
def test_editing_a_frozen_file_during_validate_is_caught_and_undone(
    tmp_path: Path, target_repo: Path, hack: str
) -> None:
    _with_check(target_repo)
    target = {**_target(target_repo), "allowed_paths": ["engine.yaml", "check.py"]}
    target["correctness"] = f"{sys.executable} check.py"
    run = _drive(tmp_path, target_repo, [_check_hack(hack)], target=target)
    _assert_rejected(run, "frozen_hashes")
    tamper = json.loads((run.root / "rounds/001/tamper-validate.json").read_text())
    assert tamper["changed"] and tamper["changed"] == tamper["restored"]
    assert run.ledger.recorded_files()  # and every recorded file is intact again (ledger verified)


def test_a_candidate_crashing_a_phase_is_rejected_and_the_run_moves_on(
    tmp_path: Path, target_repo: Path
) -> None:
    class Crashes(FakeBackend):
        def ab(
            self,
            a: Side,
            b: Side,
            spec: GoalSpec,
            trials: int,
            label: str,
            out_dir: Path,
            until: Until = None,
        ) -> BenchRecord:
            if label == "revalidate" and "--block-size 32" in b.launch:
                raise MeasureError("ab measurement failed (exit 1):\nFrozenInstanceError in build_requests")
            return super().ab(a, b, spec, trials, label, out_dir, until)

    edits = [set_config(block_size=32), set_config(enable_prefix_caching=True)]
    run = _drive(tmp_path, target_repo, edits, Crashes())
    _assert_rejected_then_advanced(run)


def _assert_rejected_then_advanced(run: Run) -> None:
    assert "phases_completed" in _failed(run, 1)
    crash = json.loads((run.root / "rounds/001/crash.json").read_text())
    assert crash["phase"] == "REVALIDATE" and "FrozenInstanceError" in crash["error"]
    assert _review(run, 2)["accepted"]  # the run moved on and accepted the next candidate
    assert verify_ledger(run.root).ok


PRINT_KEYS = """import os
print("sk-ant-" + "api03-" + "Lk9" * 12)  # built at run time: no file of the candidate holds it
print("agent key:", os.environ.get("ANTHROPIC_API_KEY"))
"""


def test_a_secret_in_a_phase_log_is_redacted_and_the_agent_key_never_reaches_it(
    tmp_path: Path, target_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_key = "sk-ant-api03-" + "Qw8" * 12
    monkeypatch.setenv("ANTHROPIC_API_KEY", agent_key)
    _with_check(target_repo)
    target = {**_target(target_repo), "allowed_paths": ["engine.yaml", "check.py"]}
    target["correctness"] = f"{sys.executable} check.py"
    run = _drive(tmp_path, target_repo, [_check_hack(PRINT_KEYS)], target=target)
    _assert_rejected(run, "no_secrets")
    evidence = next(g for g in _review(run)["gates"] if g["gate"] == "no_secrets")["evidence"]
    assert "validation.log:3:1: anthropic key (redacted)" in evidence, evidence
    log = (run.root / "rounds/001/validation.log").read_text()
    assert "[REDACTED:anthropic key]" in log and "agent key: None" in log
    for path in run.root.rglob("*"):
        if path.is_file():
            assert agent_key.encode() not in path.read_bytes() and b"Lk9Lk9Lk9" not in path.read_bytes(), path


# ---------- fair sides and attempts ----------


class CommitPatcher(Patcher):
    """Proposes fixed commits, one per round (an agent resubmitting what it already tried)."""

    name = "commits"

    def __init__(self, commits: list[str]) -> None:
        self.commits = list(commits)

    def propose(self, evidence: Evidence) -> Proposal:
        if not self.commits:
            return Proposal(commit=None, reason="no more commits")
        sha = self.commits.pop(0)
        return Proposal(
            commit=sha, reason="resubmitted", rationale="again", cited_rows=ScriptedPatcher([]).cites
        )


def _commit(repo: Path, parent: str, edit, where: Path) -> str:  # type: ignore[no-untyped-def]
    r = git.Repo(repo)
    with wt.worktree(r, parent, where) as tree:
        edit(tree)
        g = git.Repo(tree)
        g.git.add("-A")
        return g.index.commit("candidate", skip_hooks=True).hexsha if g.is_dirty() else g.head.commit.hexsha


def test_the_same_commit_or_tree_is_measured_once(tmp_path: Path, target_repo: Path) -> None:
    base = git.Repo(target_repo).head.commit.hexsha
    noop = _commit(target_repo, base, set_config(block_size=32), tmp_path / "w1")
    twin = _commit(target_repo, noop, lambda t: None, tmp_path / "w2")
    r = git.Repo(target_repo)
    same_tree = r.git.commit_tree(r.commit(noop).tree.hexsha, "-p", base, "-m", "same tree, new commit")
    empty = r.git.commit_tree(r.commit(base).tree.hexsha, "-p", base, "-m", "no change at all")
    spec = make_spec(
        target_repo, tmp_path, budgets={"max_rounds": 4}, stop={"stall_after": 9, "research_after": 9}
    )
    backend = FakeBackend()
    run = Run.create(spec, backend, CommitPatcher([noop, twin, same_tree, empty]))
    run.drive()
    assert run.state.state == "BUDGET_LIMITED"  # every attempt spent a round of the budget
    assert "beyond_noise" in _failed(run, 1)  # measured once
    for rnd in (2, 3):
        assert _failed(run, rnd) == {"distinct_code"}
        assert "already measured in round 1" in json.dumps(_review(run, rnd))
    assert "distinct_code" in _failed(run, 4) and "baseline" in json.dumps(_review(run, 4))
    assert backend.calls.count("revalidate") == 1
    assert verify_ledger(run.root).ok


def test_an_ab_of_a_tree_with_itself_is_refused(tmp_path: Path, target_repo: Path) -> None:
    r = git.Repo(target_repo)
    base = r.head.commit.hexsha
    same = r.git.commit_tree(r.commit(base).tree.hexsha, "-p", base, "-m", "same code")
    with wt.worktree(r, base, tmp_path / "a") as a, wt.worktree(r, same, tmp_path / "b") as b:
        spec = make_spec(target_repo, tmp_path)
        sides = [
            Side(name=n, launch="engine:--model preset:tiny-qwen3", tree=t) for n, t in (("A", a), ("B", b))
        ]
        with pytest.raises(MeasureError, match="same code"):
            ProcessBackend().ab(*sides, spec, 2, "revalidate", tmp_path / "out")


# ---------- the harness is never the candidate's ----------


def _code_target(repo: Path) -> Path:
    """The scratch target plus perfloop's own source: the harness copy lives in the candidate's tree."""
    shutil.copytree(PKG, repo / "perfloop", ignore=shutil.ignore_patterns("__pycache__"))
    r = git.Repo(repo)
    r.git.add("-A")
    r.index.commit("perfloop as the target")
    return repo


def lie_in_the_harness_copy(tree: Path) -> None:
    """Breaks correctness (another model) and makes its tree's copy of the harness report the frozen one."""
    set_config(model="preset:tiny-llama", enable_prefix_caching=True)(tree)
    launch = tree / "perfloop" / "loop" / "launch.py"
    launch.write_text(
        launch.read_text() + "\n\n_real = load_engine_config\n\n\ndef load_engine_config(path):\n"
        "    return _real(path).model_copy(update={'model': 'preset:tiny-qwen3'})\n"
    )


def test_the_candidate_tree_copy_of_the_harness_is_never_run(tmp_path: Path, target_repo: Path) -> None:
    repo = _code_target(target_repo)
    check = (
        f'{sys.executable} -c "import sys, pathlib; from perfloop.loop.launch import load_engine_config; '
        "sys.exit(0 if load_engine_config(pathlib.Path('engine.yaml')).model == 'preset:tiny-qwen3' else 1)\""
    )
    target = {**_target(repo), "allowed_paths": ["engine.yaml", "perfloop/**"], "correctness": check}
    run = _drive(tmp_path, repo, [lie_in_the_harness_copy], target=target)
    _assert_rejected(run, "correctness")
    # It got past the static gates (the path is allowed): the frozen harness's own check caught it.
    assert {g["gate"] for g in _review(run)["gates"]} >= {"allowed_paths", "protected_code", "correctness"}
    frozen = json.loads((run.root / "freeze/harness.json").read_text())
    assert frozen["source"] == str(PKG) and "perfloop/loop/launch.py" in frozen["files"]


def edit_workload_code(tree: Path) -> None:
    """Rewrites the harness's workload code in the candidate's tree (fewer, shorter requests)."""
    workloads = tree / "perfloop" / "bench" / "workloads.py"
    workloads.write_text(workloads.read_text() + "\n\ndef build_requests(spec):\n    return []\n")
    set_config(enable_prefix_caching=True)(tree)


def test_editing_workload_code_is_rejected_before_anything_runs(tmp_path: Path, target_repo: Path) -> None:
    repo = _code_target(target_repo)
    backend = FakeBackend()
    target = {**_target(repo), "allowed_paths": ["engine.yaml", "perfloop/**"]}
    run = _drive(tmp_path, repo, [edit_workload_code], backend, target=target)
    _assert_rejected(run, "protected_code")
    assert backend.calls.count("revalidate") == 0 and run.state.state == "BUDGET_LIMITED"


def test_correctness_prompts_cover_the_workloads_lengths(tmp_path: Path, target_repo: Path) -> None:
    workload = make_spec(target_repo, tmp_path).workload
    prompts = workload_prompts(workload, 512)
    from perfloop.bench.workloads import build_requests

    lengths = sorted(
        r.prompt_len or 0 for r in build_requests(workload.model_copy(update={"vocab_size": 512}))
    )
    assert len(prompts[-1]) == lengths[-1] and len(prompts[0]) == lengths[0]


# ---------- the gate registry ----------


def test_a_registered_gate_is_run_recorded_and_shown(tmp_path: Path, target_repo: Path) -> None:
    @gates_module.gate("test_only_no_block_size")
    def _no_block_size(inp: gates_module.ReviewInput) -> tuple[bool, str]:
        return "block_size" not in inp.patch.rationale, f"rationale: {inp.patch.rationale}"

    try:
        run = _drive(tmp_path, target_repo, [set_config(enable_prefix_caching=True, block_size=32)])
    finally:
        del gates_module.GATES["test_only_no_block_size"]
    assert _failed(run) == {"test_only_no_block_size"}
    status = subprocess.run(
        [sys.executable, "-m", "perfloop.cli", "goal", "status", str(run.root)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert status.returncode == 0 and "test_only_no_block_size" in status.stdout, status


# ---------- inside a measurement: the real process backend (slow) ----------


SLOW_STEP = "        batch = self.scheduler.schedule()\n"
ADD_IDS = "        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)\n"


def _engine_edit(name: str, old: str, new: str):  # type: ignore[no-untyped-def]
    def edit(tree: Path) -> None:
        path = tree / "perfloop" / "engine" / "llm_engine.py"
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new, 1))

    edit.__name__ = name
    return edit


# The base carries a planted per-step sleep, so removing it is a real, large, behaviour-preserving gain.
PLANTED = SLOW_STEP.replace("        batch", "        time.sleep(0.05)\n        batch")
honest_speedup = _engine_edit("honest_speedup", "        time.sleep(0.05)\n", "")
detect_benchmark = _engine_edit(
    "detect_benchmark",
    ADD_IDS,
    ADD_IDS + "        if 'process_backend' in sys.argv[0]:\n            ids = ids[-4:]\n",
)
drop_far_context = _engine_edit("drop_far_context", ADD_IDS, ADD_IDS + "        ids = ids[-80:]\n")
slow_the_clock = _engine_edit(
    "slow_the_clock",
    "class LLMEngine",
    "_real = time.perf_counter\ntime.perf_counter = lambda: _real() * 0.25\n\n\nclass LLMEngine",
)


class MeasuredCandidates(ProcessBackend):
    """The real backend for what decides acceptance (FREEZE's A/A, REVALIDATE); BENCH and PROFILE,
    which only feed the patcher, are scripted to keep the test short."""

    def ab(
        self, a: Side, b: Side, spec: GoalSpec, trials: int, label: str, out_dir: Path, until: Until = None
    ) -> BenchRecord:
        if label.startswith("vs-"):
            return FakeBackend(lambda launch: 100.0 if a.launch == launch else 50.0).ab(
                a, b, spec, trials, label, out_dir, until
            )
        return super().ab(a, b, spec, trials, label, out_dir, until)

    def profile(self, side: Side, spec: GoalSpec, out_dir: Path) -> ProfileRecord:
        return FakeBackend().profile(side, spec, out_dir)


@pytest.mark.slow
def test_hacks_inside_the_measurement_are_rejected_and_an_honest_gain_accepted(
    tmp_path: Path, target_repo: Path
) -> None:
    repo = _code_target(target_repo)
    engine = repo / "perfloop" / "engine" / "llm_engine.py"
    text = engine.read_text()
    head = "from __future__ import annotations\n"
    engine.write_text(
        text.replace(head, head + "\nimport sys\nimport time\n", 1).replace(SLOW_STEP, PLANTED, 1)
    )
    git.Repo(repo).git.commit("-am", "a slow step")
    correctness = f"{sys.executable} -m perfloop.loop.correctness --config engine.yaml"
    edits = [detect_benchmark, drop_far_context, slow_the_clock, honest_speedup]
    spec = make_spec(
        repo,
        tmp_path,
        target={
            **_target(repo),
            "allowed_paths": ["perfloop/engine/**"],
            "correctness": correctness + " --reference {reference}",
            "reference_command": correctness + " --write-reference {reference} --workload {workload}",
        },
        workload={
            "kind": "shared-prefix",
            "num_groups": 2,
            "prompts_per_group": 2,
            "system_prompt_len": 96,
            "question_len": 8,
            "output_len": 4,
        },
        measure={"trials": 2, "aa_trials": 2, "torch_threads": 1},
        budgets={"max_rounds": len(edits)},
        stop={"stall_after": 9, "research_after": 9},
        tolerances={"other_metrics": {}},
    )
    run = Run.create(spec, MeasuredCandidates(), ScriptedPatcher(edits))
    run.drive()
    # Benchmark-only lighter path: correctness (another process) passes, the measured tokens do not.
    assert "measured_outputs" in _failed(run, 1) and "correctness" not in _failed(run, 1), _review(run, 1)
    # Work dropped beyond the old fixed prompts' lengths: the workload-sampled prompts catch it.
    assert "correctness" in _failed(run, 2), _review(run, 2)
    assert "harness_integrity" in _failed(run, 3), _review(run, 3)
    # Accepted only because each side ran its own tree (one process per trial and side).
    assert _review(run, 4)["accepted"], _review(run, 4)
    assert verify_ledger(run.root).ok


SERVER = """import sys

sys.argv += ["--ttft-ms", "{itl}", "--itl-ms", "{itl}"]
from perfloop.bench.echo_server import main

main()
"""


def faster_server(tree: Path) -> None:
    """An honest gain in a served target: its own server streams without the per-token delay."""
    (tree / "server.py").write_text(SERVER.format(itl=0))


@pytest.mark.slow
def test_each_side_of_a_served_target_runs_its_own_worktree(tmp_path: Path, target_repo: Path) -> None:
    (target_repo / "server.py").write_text(SERVER.format(itl=150))
    git.Repo(target_repo).git.add("-A")
    git.Repo(target_repo).index.commit("a server with a slow stream")
    # The launch is relative to the working directory: each side must start in its own worktree.
    launch = f"{sys.executable} server.py --port {{port}}"
    target = {**_target(target_repo), "engine_config_file": None, "launch": launch}
    target |= {"allowed_paths": ["server.py"], "correctness": "true"}
    spec = make_spec(
        target_repo,
        tmp_path,
        target=target,
        peers=[{"name": "peer", "launch": launch + " --host 127.0.0.1"}],
        measure={"trials": 2, "aa_trials": 2},
        budgets={"max_rounds": 1},
        tolerances={"other_metrics": {}},
    )
    run = Run.create(spec, MeasuredCandidates(), ScriptedPatcher([faster_server]))
    run.drive()
    assert _review(run)["accepted"], _review(run)
    assert verify_ledger(run.root).ok
