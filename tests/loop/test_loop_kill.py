"""Crash safety: the loop process is SIGKILLed in different states; resume finishes without repeats."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import git
import pytest
import yaml

from perfloop.ledger.verify import verify_ledger

DRIVER = Path(__file__).with_name("loop_driver.py")
RUN = "test-run"


def _start(*args: str, hold: str | None = None) -> subprocess.Popen:
    """Run the driver; `hold` pauses it on entering a state."""
    env = dict(os.environ)
    env.pop("PERFLOOP_HOLD_AT", None)
    if hold:
        env["PERFLOOP_HOLD_AT"] = hold
    return subprocess.Popen(
        [sys.executable, str(DRIVER), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(*args: str) -> str:
    proc = _start(*args)
    out, _ = proc.communicate(timeout=900)  # liveness only, on a busy machine
    assert proc.returncode == 0, out
    return out.strip().splitlines()[-1]


def _states(root: Path) -> list[str]:
    if not (root / "events.jsonl").exists():
        return []
    lines = (root / "events.jsonl").read_text().splitlines()
    return [json.loads(line)["state"] for line in lines if line.endswith("}")]


def _kill_when(proc: subprocess.Popen, root: Path, state: str, marker: Path | None = None) -> None:
    """SIGKILL the driver once it sits in `state` (and has touched `marker`): it is held there, so no
    timing decides where the kill lands."""

    def there() -> bool:
        return state in _states(root) and (marker is None or marker.exists())

    deadline = time.time() + 600  # liveness only: the driver is held in `state`, no race
    while time.time() < deadline and not there():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.05)
    assert there(), _states(root)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _assert_clean(root: Path, repo: Path) -> None:
    report = verify_ledger(root)
    assert report.ok, report
    events = [json.loads(line) for line in (root / "events.jsonl").read_text().splitlines()]
    records = Counter(
        e["round"] for e in events if e["kind"] == "transition" and e["data"]["from"] == "RECORD"
    )
    assert all(n == 1 for n in records.values()), records  # no round recorded twice
    for e in events:
        if e["kind"] == "transition":
            assert e["data"]["from"] != e["state"]
    pairs = Counter((e["round"], e["data"]["from"]) for e in events if e["kind"] == "transition")
    assert all(n == 1 for n in pairs.values()), pairs  # no state of a round finished twice
    assert len(git.Repo(repo).git.worktree("list").splitlines()) >= 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("state", "hold"), [("BENCH", None), ("REVIEW", "REVIEW:600")], ids=["mid-benchmark", "mid-review"]
)
def test_kill_then_resume_finishes(tmp_path: Path, target_repo: Path, state: str, hold: str | None) -> None:
    artifacts = tmp_path / "artifacts"
    root = artifacts / RUN
    marker = None if hold else tmp_path / "ab-started"  # mid-benchmark: BENCH's benchmark blocks
    extra = [f"block=vs-:0:{marker}"] if marker else []
    proc = _start("create", str(target_repo), str(artifacts), "scripted", *extra, hold=hold)
    _kill_when(proc, root, state, marker)
    before = _states(root)
    assert before[-1] == state  # killed inside the state, before it recorded anything
    last = _finish("resume", str(root), "scripted")
    assert last == "STOPPED COMPLETE"
    _assert_clean(root, target_repo)
    # The work of the killed state was redone once, not appended twice.
    summaries = sorted(p.parent.name for p in root.glob("rounds/*/summary.json"))
    assert summaries == ["001", "002"]


@pytest.mark.slow
def test_kill_while_waiting_for_patch(tmp_path: Path, target_repo: Path) -> None:
    artifacts = tmp_path / "artifacts"
    root = artifacts / RUN
    proc = _start("create", str(target_repo), str(artifacts), "external", hold="WAITING_FOR_PATCH:600")
    _kill_when(proc, root, "WAITING_FOR_PATCH")
    assert _finish("resume", str(root), "external") == "STOPPED WAITING_FOR_PATCH"
    tree = root / "work" / "agent-001"
    config = yaml.safe_load((tree / "engine.yaml").read_text())
    config["enable_prefix_caching"] = True
    (tree / "engine.yaml").write_text(yaml.safe_dump(config))
    agent = git.Repo(tree)
    agent.git.add("-A")
    actor = git.Actor("agent", "agent@example.com")
    agent.index.commit(
        "prefix caching\n\nCites: prefill/kernel_table/aten::mm", author=actor, committer=actor
    )
    assert _finish("submit", str(root)) == "STOPPED COMPLETE"
    _assert_clean(root, target_repo)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _events(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "events.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_revalidation_killed_mid_trials_leaves_its_trials_on_record(
    tmp_path: Path, target_repo: Path
) -> None:
    root = tmp_path / "artifacts" / RUN
    marker = tmp_path / "revalidate-blocked"
    proc = _start("create", str(target_repo), str(root.parent), "scripted", f"block=revalidate:2:{marker}")
    _kill_when(proc, root, "REVALIDATE", marker)
    # Killed with two of three trial pairs done.
    assert _finish("resume", str(root), "scripted") == "STOPPED COMPLETE"
    _assert_clean(root, target_repo)
    interrupted = [e for e in _events(root) if e["kind"] == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0]["data"]["state"] == "REVALIDATE"
    assert interrupted[0]["data"]["trial_results_kept"] >= 2
    kept = sorted(interrupted[0]["files"])
    assert kept and all(f.startswith("rounds/001/interrupted/01-revalidate/revalidate/trials/") for f in kept)


@pytest.mark.slow
def test_resume_kills_the_correctness_command_a_killed_validate_left_running(
    tmp_path: Path, target_repo: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    root = artifacts / RUN
    pidfile = tmp_path / "sleeper.pid"
    # The first run of the check hangs in a grandchild of the shell (no PR_SET_PDEATHSIG reaches it).
    script = (
        "import os, sys, time, yaml; p = sys.argv[1]\n"
        "if not os.path.exists(p):\n"
        "    open(p + '.tmp', 'w').write(str(os.getpid())); os.rename(p + '.tmp', p); time.sleep(300)\n"
        "sys.exit(0 if yaml.safe_load(open('engine.yaml'))['model'] == 'preset:tiny-qwen3' else 1)"
    )
    (tmp_path / "check.py").write_text(script)
    command = f"{sys.executable} {tmp_path / 'check.py'} {pidfile}; exit $?"
    proc = _start("create", str(target_repo), str(artifacts), "scripted", f"correctness={command}")
    deadline = time.time() + 600  # liveness only: FREEZE and BENCH come first, slow on a busy machine
    while not pidfile.exists() and time.time() < deadline:
        assert proc.poll() is None
        time.sleep(0.1)
    assert pidfile.exists()  # written whole (renamed into place) by the check, which now sleeps
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    sleeper = int(pidfile.read_text())
    assert _alive(sleeper)  # an orphan after the loop's death, as the issue found
    assert _finish("resume", str(root), "scripted") == "STOPPED COMPLETE"
    assert not _alive(sleeper)
    interrupted = [e for e in _events(root) if e["kind"] == "interrupted"]
    assert [e["data"]["state"] for e in interrupted] == ["VALIDATE"]
    assert interrupted[0]["data"]["killed_process_groups"]
    _assert_clean(root, target_repo)
