"""A loop process for the kill tests: the real state machine with scripted measurements.

Usage: python loop_driver.py create TARGET_REPO ARTIFACTS PATCHER [AB_STARTED_FILE]
       | resume RUN_ROOT PATCHER | submit RUN_ROOT
With AB_STARTED_FILE, the BENCH benchmark touches that file and then blocks: the test kills it there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import FakeBackend, ScriptedPatcher, make_spec, set_config  # noqa: E402

from perfloop.loop.machine import Run  # noqa: E402
from perfloop.loop.patchers.external import ExternalPatcher  # noqa: E402


class BlockingBackend(FakeBackend):
    """With a marker file, the first BENCH benchmark (label vs-PEER) touches it and never ends."""

    def __init__(self, ab_started: Path | None = None) -> None:
        super().__init__()
        self.ab_started = ab_started

    def ab(self, a, b, spec, trials, label, out_dir):  # type: ignore[no-untyped-def]
        if self.ab_started and label.startswith("vs-"):
            self.ab_started.touch()
            time.sleep(600)  # the test kills the process here
        return super().ab(a, b, spec, trials, label, out_dir)


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
        marker = Path(argv[4]) if len(argv) > 4 else None
        run = Run.create(spec, BlockingBackend(marker), patcher(name), print)
    elif cmd == "resume":
        run = Run(Path(argv[1]), BlockingBackend(), patcher(argv[2]), print)
    else:
        run = Run(Path(argv[1]), BlockingBackend(), ExternalPatcher(), print)
        run.submit(None, "", [])
    print("STOPPED", run.drive(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
