"""A local stand-in for a batch GPU runner: `python batch_runner.py BUNDLE OUT`.

Like a SLURM job or a lent machine, it keeps nothing of this machine's run folder: the bundle is
copied to a fresh folder, run from another working directory with a clean environment, and only
its out/ comes back to OUT.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def run_elsewhere(job: Path) -> int:
    """`bash JOB/run.sh` from an empty working directory with nothing of this shell's environment."""
    with tempfile.TemporaryDirectory(prefix="gpu-cwd-") as cwd:
        env = {"PATH": "/usr/bin:/bin", "HOME": cwd, "PERFLOOP_PYTHON": sys.executable}
        return subprocess.run(["bash", str(job / "run.sh")], cwd=cwd, env=env).returncode


def main(bundle: str, out: str) -> int:
    """Run a copy of the bundle elsewhere, bring out/ back; the job's exit code is the runner's."""
    with tempfile.TemporaryDirectory(prefix="gpu-node-") as node:
        copy = Path(node) / "job"
        shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns("out"))
        code = run_elsewhere(copy)
        if (copy / "out").exists():
            shutil.copytree(copy / "out", out, dirs_exist_ok=True)
    return code


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
