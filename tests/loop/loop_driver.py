"""A loop process for the kill tests: the real state machine with scripted measurements that take time.

Usage: python loop_driver.py create TARGET_REPO ARTIFACTS PATCHER [CORRECTNESS] | resume RUN_ROOT PATCHER
       | submit RUN_ROOT
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import FakeBackend, ScriptedPatcher, make_spec, set_config  # noqa: E402

from perfloop.loop.machine import Run  # noqa: E402
from perfloop.loop.patchers.external import ExternalPatcher  # noqa: E402


class SlowBackend(FakeBackend):
    """Each benchmark takes a moment and writes a result file per trial, so a kill lands mid-benchmark
    with some trials finished."""

    def ab(self, a, b, spec, trials, label, out_dir, until=None):  # type: ignore[no-untyped-def]
        for i in range(trials):
            time.sleep(0.5)
            for side in "AB":
                path = Path(out_dir) / "trials" / f"trial{i:02d}-{side}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f'{{"trial": {i}, "side": "{side}"}}\n')
        return super().ab(a, b, spec, trials, label, out_dir, until)


def patcher(name: str):  # type: ignore[no-untyped-def]
    if name == "external":
        return ExternalPatcher()
    return ScriptedPatcher([set_config(block_size=32), set_config(enable_prefix_caching=True)])


def main(argv: list[str]) -> None:
    cmd = argv[0]
    if cmd == "create":
        repo, artifacts, name = Path(argv[1]), Path(argv[2]), argv[3]
        spec = make_spec(
            repo,
            artifacts.parent,
            artifact_root=str(artifacts),
            patcher=name if name == "external" else "playbook",
        )
        if len(argv) > 4:
            spec = spec.model_copy(update={"target": spec.target.model_copy(update={"correctness": argv[4]})})
        run = Run.create(spec, SlowBackend(), patcher(name), print)
    elif cmd == "resume":
        run = Run(Path(argv[1]), SlowBackend(), patcher(argv[2]), print)
    else:
        run = Run(Path(argv[1]), SlowBackend(), ExternalPatcher(), print)
        run.submit(None, "", [])
    print("STOPPED", run.drive(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
