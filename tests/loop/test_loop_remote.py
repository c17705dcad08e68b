"""GPU phases as batch jobs (`--gpu-cmd`): a whole goal through a stand-in runner that keeps nothing."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tarfile
from pathlib import Path

import git
import pytest
import yaml
from batch_runner import run_elsewhere
from conftest import run_cli

from perfloop.ledger.store import Ledger
from perfloop.ledger.verify import verify_ledger
from perfloop.loop import harness
from perfloop.loop.process_backend import MeasureError
from perfloop.loop.quickstart import make_target_repo, quickstart_spec
from perfloop.loop.remote import RemoteBackend

RUNNER = f"{sys.executable} {Path(__file__).parent / 'batch_runner.py'} {{bundle}} {{out}}"
ROOT = Path(__file__).resolve().parents[2]


def _spec(tmp_path: Path, run_id: str) -> Path:
    """The quickstart's goal, cut to one short round on a 2-core host."""
    repo = make_target_repo(tmp_path / "target")
    data = quickstart_spec(repo, tmp_path / "artifacts", run_id).model_dump(mode="json")
    data["measure"].update({"trials": 2, "aa_trials": 2, "profile_requests": 2})
    data["workload"].update(
        {"num_groups": 1, "prompts_per_group": 4, "system_prompt_len": 64, "output_len": 4}
    )
    data["budgets"]["max_rounds"] = 1
    # An unreachable value: GAP always goes on to PROFILE and a candidate, whatever the timing noise.
    data["objective"] = {"kind": "reach_value", "value": 1e9}
    path = tmp_path / "goal.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_goal_runs_every_gpu_phase_as_a_batch_job(tmp_path: Path) -> None:
    result = run_cli(
        "goal", "run", "--spec", str(_spec(tmp_path, "remote")), "--gpu-cmd", RUNNER, timeout=900
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    root = tmp_path / "artifacts" / "remote"
    assert verify_ledger(root).ok
    recorded = Ledger(root).recorded_files()
    jobs = [json.loads((root / rel).read_text()) for rel in recorded if rel.endswith("/remote.json")]
    labels = {rel.split("/")[-2] for rel in recorded if rel.endswith("/remote.json")}
    # FREEZE's A/A, BENCH, PROFILE and REVALIDATE came back through the runner, each hash-checked.
    assert {"aa", "bench-0", "profile", "revalidate"} <= labels, labels
    assert all(j["runner"] == RUNNER and j["exit_code"] == 0 and len(j["bundle_sha256"]) == 64 for j in jobs)
    # The correctness command ran as a job too, and its log (recorded) names the bundle.
    assert "[batch job: bundle sha256" in (root / "rounds/001/validation.log").read_text()
    assert "[batch job: bundle sha256" in (root / "freeze/reference.log").read_text()
    bench = json.loads((root / "rounds/001/bench-0.json").read_text())
    assert bench["result_files"] and all((root / f).is_file() for f in bench["result_files"])
    assert (root / json.loads((root / "rounds/001/profile.json").read_text())["trace"]).is_file()


@pytest.mark.slow
def test_failed_job_is_a_recorded_attempt(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "failing")
    result = run_cli("goal", "run", "--spec", str(spec), "--gpu-cmd", "echo gpu busy; exit 7", timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in out, out[-3000:]
    assert "brought nothing back" in out
    root = tmp_path / "artifacts" / "failing"
    assert verify_ledger(root).ok
    errors = [e for e in Ledger(root).events() if e.kind == "error"]
    assert [e.state for e in errors] == ["FREEZE"] and "brought nothing back" in errors[0].data["error"]


@pytest.mark.slow
def test_manual_jobs_are_exported_and_imported(tmp_path: Path) -> None:
    """`--gpu-cmd manual`: each job waits as an archive; its out.tgz, imported, continues the run."""
    result = run_cli("goal", "run", "--spec", str(_spec(tmp_path, "manual")), "--gpu-cmd", "manual")
    root = tmp_path / "artifacts" / "manual"
    for step in range(2):  # FREEZE's reference command, then its A/A run
        out = (result.stdout + result.stderr).replace("\n", "")
        assert result.returncode == 0 and "waiting for a GPU job" in out, out[-3000:]
        archive = re.search(r"run the job bundle (\S+\.tgz)", out)
        assert archive, out[-2000:]
        node = tmp_path / f"node-{step}"
        with tarfile.open(archive.group(1)) as tar:
            tar.extractall(node, filter="data")
        assert run_elsewhere(node / "bundle") == 0
        result = run_cli("goal", "import", str(root), str(node / "bundle" / "out.tgz"), timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0 and "waiting for a GPU job" in out, out[-3000:]
    events = Ledger(root).events()
    assert [e.state for e in events if e.kind == "transition"] == ["FREEZE", "BENCH"]
    # A state waiting for its job was paused, not interrupted: nothing of it is recorded as killed.
    assert not [e for e in events if e.kind in ("error", "interrupted")]
    assert verify_ledger(root).ok
    assert json.loads((root / "freeze/aa/remote.json").read_text())["runner_exit"] is None
    # `goal status` names the pending job and the import that continues the run, not `resume`.
    pending = re.search(r"run the job bundle (\S+\.tgz)", out.replace("\n", ""))
    status = json.loads(run_cli("goal", "status", str(root), "--json").stdout)
    assert pending and pending.group(1) in status["reason"], status
    assert status["next_command"] == f"perfloop goal import {root} bundle/out.tgz"


def test_jobs_changed_on_the_way_are_refused(tmp_path: Path) -> None:
    """A changed out/ (set aside for a retry) or a changed bundle is refused; an intact job then passes."""
    root = tmp_path / "run"
    snapshot = harness.snapshot(root)
    (root / harness.MANIFEST).write_text(snapshot.model_dump_json())
    tree = root / "work" / "candidate"
    tree.mkdir(parents=True)
    backend = RemoteBackend(RUNNER.replace("{out}", "{out} && echo tampered >> {out}/run/freeze/ref.txt"))
    writes = root / "freeze" / "ref.txt"
    with pytest.raises(MeasureError, match="does not match what the job says it wrote"):
        backend.shell("echo hello > ../../freeze/ref.txt", tree, root, writes, {})
    assert not writes.exists()
    assert list((root / "work" / "jobs").glob("*/out.failed-*"))
    init = "{bundle}/freeze/harness/perfloop/__init__.py"
    edit = f"chmod u+w {init} && echo x=1 >> {init} && "
    with pytest.raises(MeasureError, match="bundle changed since it was written"):
        RemoteBackend(edit + RUNNER).shell("echo hello > ../../freeze/ref.txt", tree, root, writes, {})
    code, stdout, _ = RemoteBackend(RUNNER).shell("echo hello > ../../freeze/ref.txt", tree, root, writes, {})
    assert code == 0 and writes.read_text() == "hello\n"


def _h200_goal_on_cpu(tmp_path: Path) -> Path:
    """examples/h200-standard-workload.yaml, cut to the CPU: a git copy of the engine's source as the
    target, the tiny model for the standard engine config, a small random workload, one round."""
    repo = tmp_path / "perfloop-copy"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("perfloop", "examples"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=ignore)
    (repo / "examples/engine/qwen3-0.6b-standard.yaml").write_text("model: preset:tiny-qwen3\n")
    git.Repo.init(repo).git.add("-A")
    git.Repo(repo).git.commit("-qm", "engine source", "--author", "t <t@example.com>")
    data = yaml.safe_load((ROOT / "examples/h200-standard-workload.yaml").read_text())
    data["target"]["repo"] = str(repo)
    data["workload"] = {"kind": "random", "num_prompts": 4, "input_len": 24, "output_len": 4}
    data["measure"].update({"profile_requests": 2, "profile_steps": 3, "torch_threads": 1, "aa_trials": 2})
    data["budgets"]["max_rounds"] = 1
    data["artifact_root"], data["run_id"] = str(tmp_path / "artifacts"), "h200-cpu"
    path = tmp_path / "goal.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_h200_goal_reaches_its_first_patch_through_batch_jobs(tmp_path: Path) -> None:
    """The H200 goal's phases as jobs of a runner that keeps nothing: each side's engine travels in its
    bundle (the profiled side's too), the fp32 reference is written here, the round waits for a patch."""
    result = run_cli(
        "goal", "run", "--spec", str(_h200_goal_on_cpu(tmp_path)), "--gpu-cmd", RUNNER, timeout=1200
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0 and "WAITING_FOR_PATCH" in out, out[-3000:]
    root = tmp_path / "artifacts" / "h200-cpu"
    assert verify_ledger(root).ok
    recorded = Ledger(root).recorded_files()
    labels = {rel.split("/")[-2] for rel in recorded if rel.endswith("/remote.json")}
    assert {"aa", "bench-0", "profile"} <= labels, labels
    # correctness_on_gpu: false -> the fp32 reference was written on this machine, not as a job.
    reference = (root / "freeze/reference.log").read_text()
    assert "tiny-qwen3-fp32.yaml" in reference and "[batch job" not in reference
    bundles = [json.loads(p.read_text()) for p in (root / "work/jobs").glob("*/bundle.json")]
    bench = next(b for b in bundles if b["label"] == "vs-base")
    # The measured side's own engine source went with the job (its trials mount it there).
    assert "work/best/perfloop/engine/runner.py" in bench["files"]
    meta = json.loads((root / "rounds/001/profile/meta.json").read_text())
    assert meta["schedule"]["active"] == 3
