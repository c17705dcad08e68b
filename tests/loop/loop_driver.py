"""A loop process for the kill tests: the real state machine with scripted measurements.

Usage: python loop_driver.py create TARGET_REPO ARTIFACTS PATCHER [correctness=CMD] [block=LABEL:N:FILE]
       | resume RUN_ROOT PATCHER | submit RUN_ROOT
With block=LABEL:N:FILE, the first benchmark whose label starts with LABEL writes N trial pairs,
touches FILE and then blocks: the test kills it there, with no timing deciding where.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import FakeBackend, ScriptedPatcher, make_spec, set_config  # noqa: E402

from perfloop.loop.machine import Run  # noqa: E402
from perfloop.loop.patchers.external import ExternalPatcher  # noqa: E402


class TrialBackend(FakeBackend):
    """Writes a result file per trial pair (so a kill can land with some trials finished) and, when
    asked, blocks inside one benchmark after `after` pairs."""

    def __init__(self, block: str | None = None) -> None:
        super().__init__()
        label, after, marker = block.split(":", 2) if block else ("", "0", "")
        self.label, self.after, self.marker = label, int(after), Path(marker) if marker else None

    def ab(self, a, b, spec, trials, label, out_dir, until=None):  # type: ignore[no-untyped-def]
        for i in range(trials):
            if self.marker is not None and label.startswith(self.label) and i == self.after:
                self.marker.touch()
                time.sleep(600)  # the test kills the process here
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
        options = dict(arg.split("=", 1) for arg in argv[4:])
        spec = make_spec(
            repo,
            artifacts.parent,
            artifact_root=str(artifacts),
            patcher=name if name == "external" else "playbook",
        )
        if "correctness" in options:
            target = spec.target.model_copy(update={"correctness": options["correctness"]})
            spec = spec.model_copy(update={"target": target})
        run = Run.create(spec, TrialBackend(options.get("block")), patcher(name), print)
    elif cmd == "resume":
        run = Run(Path(argv[1]), TrialBackend(), patcher(argv[2]), print)
    else:
        run = Run(Path(argv[1]), TrialBackend(), ExternalPatcher(), print)
        run.submit(None, "", [])
    print("STOPPED", run.drive(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
