"""Mount `perfloop.engine` from a candidate's tree while the rest of perfloop stays the frozen harness.

The loop sets PERFLOOP_ENGINE_TREE for an evidence process whose target is a code tree
holding a `perfloop/engine` package; `perfloop/__init__.py` calls `mount_from_env()` before
anything imports the engine, so the engine is the candidate's and the harness is not.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

ENV = "PERFLOOP_ENGINE_TREE"
_CLOCK_NAMES = ("perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "time", "time_ns", "sleep")
# Taken before any candidate code runs: the clocks the benchmark must still be reading afterwards.
_CLOCKS = {name: getattr(time, name) for name in _CLOCK_NAMES}
_TIME = time


def tampered_clocks() -> list[str]:
    """Clocks replaced since this process started, and harness modules whose `time` is not the real one."""
    bad = [f"time.{n}" for n, fn in _CLOCKS.items() if getattr(_TIME, n) is not fn]
    if sys.modules.get("time") is not _TIME:
        bad.append("sys.modules['time']")
    for name, module in list(sys.modules.items()):
        if name.startswith("perfloop.") and not name.startswith("perfloop.engine"):
            if getattr(module, "time", _TIME) is not _TIME:
                bad.append(f"{name}.time")
            bad += [f"{name}.{n}" for n, fn in _CLOCKS.items() if getattr(module, n, fn) not in (fn, _TIME)]
    return bad


def mount_from_env() -> None:
    """Import `perfloop.engine` from $PERFLOOP_ENGINE_TREE/perfloop/engine when it is set."""
    tree = os.environ.get(ENV)
    if not tree:
        return
    package = Path(tree) / "perfloop" / "engine"
    spec = importlib.util.spec_from_file_location(
        "perfloop.engine", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"{ENV}: no perfloop/engine package under {tree}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["perfloop.engine"] = module
    spec.loader.exec_module(module)
    sys.modules["perfloop"].engine = module
