"""What a coding agent relies on: run paths in any form, a submit that cannot lose work, names checked
at spec load, one patcher registry, machine-readable status, `goal wait`, `goal init`, the examples,
the earlier candidates in the prompt, and the report's Reproduce section."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest
import yaml
from conftest import CORRECTNESS, FakeBackend, ScriptedPatcher, make_spec, run_cli, set_config
from typer.testing import CliRunner

from perfloop.cli import app
from perfloop.ledger.store import Ledger
from perfloop.ledger.verify import verify_ledger
from perfloop.loop import worktrees as wt
from perfloop.loop.machine import Run
from perfloop.loop.patchers.base import Evidence, Patcher, Proposal
from perfloop.loop.patchers.external import ExternalPatcher
from perfloop.loop.patchers.registry import PatcherEntry, register_patcher, unregister_patcher
from perfloop.loop.quickstart import make_target_repo, quickstart_spec
from perfloop.loop.report import build_report
from perfloop.loop.spec import SpecError, load_spec, parse_spec
from perfloop.loop.status import RunStatus

ROOT = Path(__file__).resolve().parents[2]


def _waiting_run(tmp_path: Path, target_repo: Path, **over: object) -> Run:
    run = Run.create(
        make_spec(target_repo, tmp_path, patcher="external", **over), FakeBackend(), ExternalPatcher()
    )
    assert run.drive() == "WAITING_FOR_PATCH"
    return run


def _agent_commit(
    run: Run, message: str = "Enable prefix caching\n\nCites: all/engine_stats/counters", **cfg: object
) -> str:
    tree = run.root / "work" / f"agent-{run.state.round:03d}"
    data = yaml.safe_load((tree / "engine.yaml").read_text())
    data.update(cfg or {"enable_prefix_caching": True})
    (tree / "engine.yaml").write_text(yaml.safe_dump(data))
    repo = git.Repo(tree)
    repo.git.add("-A")
    actor = git.Actor("agent", "agent@example.com")
    return repo.index.commit(message, author=actor, committer=actor).hexsha


# ---------- run paths ----------


def test_run_id_relative_and_absolute_paths_resolve_to_one_absolute_folder(
    tmp_path: Path, target_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from perfloop.ledger.runs import resolve_run

    run = _waiting_run(tmp_path, target_repo)
    monkeypatch.chdir(tmp_path)
    assert resolve_run("artifacts/test-run") == run.root
    assert resolve_run(str(run.root)) == run.root
    assert resolve_run("test-run", Path("artifacts")) == run.root
    assert run.root.is_absolute()


def test_submit_with_a_relative_run_path_keeps_worktrees_where_they_belong(
    tmp_path: Path, target_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _waiting_run(tmp_path, target_repo)
    sha = _agent_commit(run)
    monkeypatch.chdir(tmp_path)
    again = Run(Path("artifacts/test-run"), FakeBackend(), ExternalPatcher())
    again.submit(None, "", [])
    assert again.drive() == "COMPLETE"
    assert again.repo.heads[again.manifest.loop_branch].commit.hexsha == sha
    assert not (target_repo / "artifacts").exists(), "no stray run folder inside the target repo"
    assert verify_ledger(run.root).ok


def test_cli_submit_of_a_bad_commit_by_relative_path_leaves_the_run_waiting(
    tmp_path: Path, target_repo: Path
) -> None:
    run = _waiting_run(tmp_path, target_repo)
    sha = _agent_commit(run)
    result = run_cli("goal", "submit", "artifacts/test-run", "--commit", "nope123", cwd=tmp_path)
    assert result.returncode == 2 and "nope123" in result.stderr and "Traceback" not in result.stderr
    assert Run(run.root, FakeBackend(), ExternalPatcher()).state.state == "WAITING_FOR_PATCH"
    assert git.Repo(run.root / "work/agent-001").head.commit.hexsha == sha


def _fail(monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(f"injected failure in {name}")

    monkeypatch.setattr(target, name, broken)


@pytest.mark.parametrize(
    "where",
    ["resolve_commit", "diff_text", "write_text", "write_model", "append", "drop_worktree"],
)
def test_a_submit_failing_at_any_step_loses_nothing(tmp_path: Path, target_repo: Path, where: str) -> None:
    run = _waiting_run(tmp_path, target_repo)
    sha = _agent_commit(run)
    tree = run.root / "work/agent-001"
    with pytest.MonkeyPatch.context() as mp:
        _fail(mp, Ledger if where in ("write_text", "write_model", "append") else wt, where)
        with pytest.raises(OSError, match="injected"):
            Run(run.root, FakeBackend(), ExternalPatcher()).submit(None, "", [])
    after = Run(run.root, FakeBackend(), ExternalPatcher())
    if after.state.state == "WAITING_FOR_PATCH":
        # Nothing was recorded: the worktree and its commit are as the agent left them.
        assert git.Repo(tree).head.commit.hexsha == sha
        after.submit(None, "", [])
    else:
        assert after.state.state == "VALIDATE" and after.state.pending_commit == sha
    assert Run(run.root, FakeBackend(), ExternalPatcher()).drive() == "COMPLETE"
    assert verify_ledger(run.root).ok


# ---------- the spec ----------


def _spec_data(target_repo: Path, tmp_path: Path) -> dict:
    return make_spec(target_repo, tmp_path).model_dump(mode="json")


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("metric",), "output_througput", "did you mean 'output_throughput'"),
        (("tolerances", "other_metrics"), {"p99_tfft_ms": 0.2}, "'p99_tfft_ms' is not a benchmark metric"),
        (("slos",), {"ttft": 100}, "'ttft' is not a benchmark metric"),
        (("peers",), [{"name": "p", "launch": "serve --model x"}], "peers.0.launch"),
        (("peers",), [{"name": "p", "launch": "engine:--model a"}] * 2, "peer name 'p' is used twice"),
        (("patcher",), "claude", "patcher: 'claude' is not a patcher; valid: playbook, external, anthropic"),
        (("target", "engine_config_file"), "missing.yaml", "target.engine_config_file: 'missing.yaml'"),
        (("target", "repo"), "/nonexistent/repo", "target.repo: '/nonexistent/repo' is not a git repository"),
    ],
)
def test_every_name_is_checked_at_load(
    tmp_path: Path, target_repo: Path, path: tuple[str, ...], value: object, expected: str
) -> None:
    data = _spec_data(target_repo, tmp_path)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_cli_reports_a_bad_metric_in_one_line(tmp_path: Path, target_repo: Path) -> None:
    data = _spec_data(target_repo, tmp_path) | {"metric": "output_througput"}
    (tmp_path / "goal.yaml").write_text(yaml.safe_dump(data))
    result = run_cli("goal", "run", "--spec", str(tmp_path / "goal.yaml"))
    assert result.returncode == 2
    assert "output_througput" in result.stderr and "output_throughput" in result.stderr
    assert "Traceback" not in result.stderr


def test_relative_repo_in_a_spec_file_is_relative_to_the_file(tmp_path: Path, target_repo: Path) -> None:
    data = _spec_data(target_repo, tmp_path)
    data["target"]["repo"] = "target"
    (tmp_path / "goal.yaml").write_text(yaml.safe_dump(data))
    assert load_spec(tmp_path / "goal.yaml").target.repo == target_repo.resolve()


def test_a_failure_that_cannot_succeed_on_retry_blocks_at_once(tmp_path: Path, target_repo: Path) -> None:
    class BadInput(FakeBackend):
        def profile(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise ValueError("launch: 'x' is not a launch spec")

    notes: list[str] = []
    run = Run.create(make_spec(target_repo, tmp_path), BadInput(), ScriptedPatcher([]), notes.append)
    assert run.drive() == "BLOCKED"
    assert "cannot succeed on retry" in run.state.reason
    assert not any("resume" in n for n in notes)


# ---------- the patcher registry ----------


class _Recording(Patcher):
    name = "test-only"
    calls: list[int] = []

    def propose(self, evidence: Evidence) -> Proposal:
        self.calls.append(evidence.round)
        return Proposal(commit=None, reason="the test-only patcher proposes nothing")


@pytest.fixture
def test_only_patcher() -> object:
    register_patcher(PatcherEntry("test-only", "registered by a test", lambda spec, notify: _Recording()))
    yield
    unregister_patcher("test-only")


def test_a_registered_patcher_is_accepted_by_the_spec_and_the_cli(
    tmp_path: Path, target_repo: Path, test_only_patcher: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parse_spec(_spec_data(target_repo, tmp_path) | {"patcher": "test-only"}).patcher == "test-only"
    monkeypatch.setattr("perfloop.loop.driving.ProcessBackend", FakeBackend)
    (tmp_path / "goal.yaml").write_text(yaml.safe_dump(_spec_data(target_repo, tmp_path)))
    other_root = tmp_path / "elsewhere"
    result = CliRunner().invoke(
        app,
        [
            "goal",
            "--artifact-root",
            str(other_root),
            "run",
            "--spec",
            str(tmp_path / "goal.yaml"),
            "--patcher",
            "test-only",
        ],
    )
    assert result.exit_code == 0, result.output
    assert _Recording.calls == [1]
    manifest = json.loads((other_root / "test-run" / "manifest.json").read_text())
    assert manifest["spec"]["patcher"] == "test-only"
    assert manifest["spec"]["artifact_root"] == str(other_root)  # --artifact-root honoured
    unknown = CliRunner().invoke(
        app, ["goal", "run", "--spec", str(tmp_path / "goal.yaml"), "--patcher", "nope"]
    )
    assert unknown.exit_code == 2 and "test-only" in unknown.output


# ---------- status and wait ----------


def test_status_json_of_a_finished_run_shows_how_its_last_round_ended(
    tmp_path: Path, target_repo: Path
) -> None:
    run = Run.create(make_spec(target_repo, tmp_path), FakeBackend(), ScriptedPatcher([]))
    assert run.drive() == "NO_GO"
    result = run_cli("goal", "--artifact-root", str(tmp_path / "artifacts"), "status", "test-run", "--json")
    assert result.returncode == 0, result.stderr
    status = RunStatus.model_validate_json(result.stdout)
    assert status.state == "NO_GO" and status.ended and status.next_command is None
    assert [r.status for r in status.rounds] == ["ended: NO_GO"]
    table = run_cli("goal", "status", str(run.root))
    assert "in progress" not in table.stdout and "ended: NO_GO" in table.stdout


def test_wait_returns_at_once_on_a_waiting_run_and_names_the_next_step(
    tmp_path: Path, target_repo: Path
) -> None:
    run = _waiting_run(tmp_path, target_repo)
    result = run_cli("goal", "wait", "artifacts/test-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("WAITING_FOR_PATCH") and str(run.root / "rounds/001/prompt.md") in last
    assert f"perfloop goal submit {run.root}" in last
    status = RunStatus.model_validate_json(run_cli("goal", "status", str(run.root), "--json").stdout)
    assert status.waiting_for_patch and status.worktree == str(run.root / "work/agent-001")


def test_wait_on_a_run_nobody_drives_says_resume(tmp_path: Path, target_repo: Path) -> None:
    run = Run.create(make_spec(target_repo, tmp_path), FakeBackend(), ScriptedPatcher([]))
    result = run_cli("goal", "wait", str(run.root), "--timeout", "600")  # it ends after 5 idle polls
    assert result.returncode == 1
    assert f"perfloop goal resume {run.root}" in result.stdout


# ---------- init, examples, schema ----------


def test_init_writes_the_quickstart_spec_for_a_config_repo(tmp_path: Path) -> None:
    repo = make_target_repo(tmp_path / "qs")
    out = tmp_path / "goal.yaml"
    result = run_cli("goal", "init", str(repo), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "it loads" in result.stdout and out.read_text().startswith("# The quickstart's goal spec")
    loaded = load_spec(out).model_dump(exclude={"run_id", "artifact_root"})
    expected = quickstart_spec(repo, tmp_path, "x").model_dump(exclude={"run_id", "artifact_root"})
    assert loaded == expected
    again = run_cli("goal", "init", str(repo), "--out", str(out))
    assert again.returncode == 2 and "--force" in again.stderr
    bad = run_cli("goal", "init", str(repo), "--out", str(tmp_path / "x.yaml"), "--example", "nope")
    assert bad.returncode == 2 and "code-target" in bad.stderr


@pytest.mark.parametrize("name", ["code-target", "served-target", "docker-peer", "h200-standard-workload"])
def test_examples_load_as_they_are(name: str) -> None:
    spec = load_spec(ROOT / "examples" / f"{name}.yaml")
    assert spec.target.repo == ROOT


def test_goal_spec_schema_is_exported_with_descriptions() -> None:
    schema = json.loads((ROOT / "artifacts/schemas/GoalSpec.schema.json").read_text())
    target = schema["$defs"]["TargetSpec"]["properties"]
    assert "{worktree}" in target["launch"]["description"]
    manifest = json.loads((ROOT / "artifacts/schemas/Manifest.schema.json").read_text())
    assert manifest["properties"]["spec"]["$ref"] == "GoalSpec.schema.json"


# ---------- the prompt and the report ----------


def test_round_prompt_lists_every_earlier_candidate(tmp_path: Path, target_repo: Path) -> None:
    run = _waiting_run(tmp_path, target_repo, budgets={"max_rounds": 3})
    sha = _agent_commit(run, "Smaller blocks", block_size=32)
    again = Run(run.root, FakeBackend(), ExternalPatcher())
    again.submit(None, "", ["prefill/kernel_table/aten::mm"])
    assert again.drive() == "WAITING_FOR_PATCH" and again.state.round == 2
    summary = json.loads((run.root / "rounds/001/summary.json").read_text())
    assert not summary["accepted"] and "beyond_noise" in summary["rejected_by"]
    prompt = (run.root / "rounds/002/prompt.md").read_text()
    line = next(x for x in prompt.splitlines() if sha in x)
    parts = [
        "Round 1",
        "engine.yaml +1",
        "prefill/kernel_table/aten::mm",
        "candidate/best output_throughput x1.000",
    ]
    for part in [*parts, summary["verdict"], *summary["rejected_by"]]:
        assert part in line, (part, line)


def test_report_reproduces_the_run_and_shows_after_only_when_accepted(
    tmp_path: Path, target_repo: Path
) -> None:
    spec = make_spec(
        target_repo,
        tmp_path,
        budgets={"max_rounds": 1},
        target={
            "repo": str(target_repo),
            "engine_config_file": "engine.yaml",
            "allowed_paths": ["engine.yaml"],
            "correctness": CORRECTNESS + " && test -n {reference}",
        },
    )
    run = Run.create(spec, FakeBackend(), ScriptedPatcher([set_config(block_size=32)]))
    run.drive()
    text = build_report(run.root).read_text()
    reproduce = text.split("## Reproduce", 1)[1]
    assert (
        "perfloop goal run --spec goal.yaml" in reproduce and "engine_config_file: engine.yaml" in reproduce
    )
    assert "engine:--model preset:tiny-qwen3 --enable-prefix-caching" in reproduce  # the peer's launch
    correctness = text.split("## Correctness", 1)[1].split("## Rounds", 1)[0]
    assert "{reference}" not in correctness and "test -n freeze/reference.json" in correctness
    assert "After (round" not in text  # nothing was accepted


def test_progress_lines_without_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import threading

    from perfloop.loop import process_backend

    monkeypatch.setattr(process_backend, "PROGRESS_EVERY_S", 0.01)
    seen = threading.Event()
    with process_backend._heartbeat("profile", ["capturing the trace\n"]):
        for _ in range(10_000):  # until the first line is out (no timing assertion; bounds a hang)
            if "profile:" in capsys.readouterr().err:
                seen.set()
                break
            seen.wait(0.01)
    assert seen.is_set()
