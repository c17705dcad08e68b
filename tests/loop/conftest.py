"""Fixtures for loop tests: a scratch target repo, a scripted measurement backend, a scripted patcher."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import git
import pytest
import yaml

from perfloop.bench.ab import Until
from perfloop.bench.targets import parse_engine_flags
from perfloop.engine.config import EngineConfig
from perfloop.ledger.records import BenchRecord, MetricComparison, ProfileRecord
from perfloop.loop import worktrees as wt
from perfloop.loop.measurement import Side
from perfloop.loop.patchers.base import Evidence, Patcher, Proposal
from perfloop.loop.spec import GoalSpec, parse_spec

CORRECTNESS = (
    f"{sys.executable} -c \"import sys, yaml; c = yaml.safe_load(open('engine.yaml')); "
    "sys.exit(0 if c['model'] == 'preset:tiny-qwen3' else 1)\""
)


@pytest.fixture
def target_repo(tmp_path: Path) -> Path:
    """A git repo holding a mis-tuned engine config and a (protected) benchmark script."""
    repo = tmp_path / "target"
    repo.mkdir()
    (repo / "engine.yaml").write_text(
        yaml.safe_dump({"model": "preset:tiny-qwen3", "enable_prefix_caching": False})
    )
    (repo / "bench").mkdir()
    (repo / "bench" / "workload.py").write_text("PROMPTS = 8\n")
    return commit_all(repo, "target")


def commit_all(repo: Path, message: str) -> Path:
    """Make `repo` a git repository with everything in it committed; returns it."""
    r = git.Repo.init(repo)
    r.git.config("user.email", "t@example.com")
    r.git.config("user.name", "t")
    r.git.add("-A")
    r.index.commit(message)
    return repo


def make_spec(repo: Path, tmp_path: Path, **over: object) -> GoalSpec:
    """A small goal spec for the scratch target."""
    data = {
        "target": {
            "repo": str(repo),
            "engine_config_file": "engine.yaml",
            "allowed_paths": ["engine.yaml"],
            "correctness": CORRECTNESS,
        },
        "peers": [{"name": "peer", "launch": "engine:--model preset:tiny-qwen3 --enable-prefix-caching"}],
        "workload": {
            "kind": "shared-prefix",
            "num_groups": 2,
            "prompts_per_group": 2,
            "vocab_size": 512,
            "system_prompt_len": 64,
            "question_len": 8,
            "output_len": 4,
        },
        "artifact_root": str(tmp_path / "artifacts"),
        "run_id": "test-run",
        "budgets": {"max_rounds": 4},
    }
    data.update(over)
    return parse_spec(data)


def _config(launch: str) -> EngineConfig:
    """The engine config an `engine:` launch spec starts (launch specs carry only non-default flags)."""
    return parse_engine_flags(launch.removeprefix("engine:"))


def _score(launch: str) -> float:
    """Fake throughput: prefix caching doubles it; a short max_model_len "cheats" higher."""
    config = _config(launch)
    value = 100.0
    if config.enable_prefix_caching:
        value *= 2
    if config.max_model_len is not None:
        value *= 1.5
    return value


class FakeBackend:
    """Deterministic measurements from the launch spec: tests the loop, not the benchmark."""

    def __init__(self, score: Callable[[str], float] = _score) -> None:
        self.score = score
        self.calls: list[str] = []

    def ab(
        self, a: Side, b: Side, spec: GoalSpec, trials: int, label: str, out_dir: Path, until: Until = None
    ) -> BenchRecord:
        self.calls.append(label)
        va, vb = self.score(a.launch), self.score(b.launch)
        ratio = vb / va
        req = spec.workload.total_requests() * spec.workload.output_len

        def short(launch: str) -> int:  # an engine that caps max_model_len "cheats" with short outputs
            return req // 2 if launch.startswith("engine:") and _config(launch).max_model_len else req

        metrics = {
            "output_throughput": MetricComparison(
                metric="output_throughput",
                a_median=va,
                b_median=vb,
                median_ratio=ratio,
                ci_low=ratio * 0.995,
                ci_high=ratio * 1.005,
                higher_is_better=True,
            ),
        }
        for name in ("p99_ttft_ms", "p99_tpot_ms"):
            metrics[name] = MetricComparison(
                metric=name,
                a_median=10,
                b_median=10 / ratio,
                median_ratio=1 / ratio,
                ci_low=0.99 / ratio,
                ci_high=1.01 / ratio,
                higher_is_better=False,
            )
        return BenchRecord(
            label=label,
            a_name=a.name,
            b_name=b.name,
            a_launch=a.launch,
            b_launch=b.launch,
            workload_fingerprint=spec.workload.fingerprint(),
            trials=trials,
            metrics=metrics,
            requested_output_tokens=req,
            achieved_output_tokens_a=short(a.launch),
            achieved_output_tokens_b=short(b.launch),
        )

    def profile(self, side: Side, spec: GoalSpec, out_dir: Path) -> ProfileRecord:
        self.calls.append("profile")
        tables = {
            "prefill": {
                "kernel_table": [
                    {"row_id": "prefill/kernel_table/aten::mm", "kernel": "aten::mm", "share_pct": 60.0}
                ]
            },
            "all": {
                "engine_stats": [
                    {"row_id": "all/engine_stats/counters", "prefix_cache_hit_rate": 0.0, "requests": 4}
                ]
            },
        }
        return ProfileRecord(trace="none", tables=tables)

    def environment(self) -> dict[str, object]:
        return {"host": "test"}


Edit = Callable[[Path], None]


class ScriptedPatcher(Patcher):
    """Applies one scripted edit per round and commits it; no edits left means no proposal."""

    name = "scripted"

    def __init__(self, edits: list[Edit], cites: list[str] | None = None) -> None:
        self.edits = list(edits)
        self.cites = cites if cites is not None else ["prefill/kernel_table/aten::mm"]

    def propose(self, evidence: Evidence) -> Proposal:
        # Like the playbook, skip what this run already tried (a resumed process starts a fresh script).
        self.edits = [e for e in self.edits if e.__name__ not in evidence.tried_rules]
        if not self.edits:
            return Proposal(commit=None, reason="script exhausted")
        edit = self.edits.pop(0)
        tree = evidence.scratch / "scripted"
        with wt.worktree(evidence.repo, evidence.parent_commit, tree):
            edit(tree)
            sha = wt.commit_in_worktree(tree, edit.__name__)
        return Proposal(
            commit=sha, reason="scripted", rationale=edit.__name__, cited_rows=self.cites, rule=edit.__name__
        )


def set_config(**fields: object) -> Edit:
    """An edit that sets engine.yaml fields."""

    def edit(tree: Path) -> None:
        data = yaml.safe_load((tree / "engine.yaml").read_text())
        data.update(fields)
        (tree / "engine.yaml").write_text(yaml.safe_dump(data))

    edit.__name__ = "set_" + "_".join(f"{k}_{v}" for k, v in fields.items())
    return edit


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`perfloop ...` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "perfloop.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )
