"""Stage of each activity: perfloop step annotations, then foreign annotation names, then anchor kernels."""

from __future__ import annotations

import bisect
import json
import re

from perfloop.profilers.trace import Event

STEP_PREFIX = "perfloop.step."
LAYER_PREFIX = "perfloop.layer."
UNKNOWN = "all"
ANCHOR_WINDOW_NS = 20_000_000  # an anchor decides the stage of work within 20 ms of it

_STEP_RE = re.compile(r"^perfloop\.step\.(\w+)")


def perfloop_step_stage(name: str) -> str | None:
    """`perfloop.step.decode bs=4 tokens=4` -> `decode`."""
    m = _STEP_RE.match(name)
    return m.group(1) if m else None


def annotation_stage(name: str) -> str | None:
    """Stage named by a foreign annotation (SGLang extend/decode, TRT-LLM generation_0/1, ...)."""
    low = name.lower()
    if "decode" in low or "generation_1" in low:
        return "decode"
    if "prefill" in low or "extend" in low or "generation_0" in low:
        return "prefill"
    return None


def step_windows(annotations: list[Event]) -> list[Event]:
    """Step windows in time order: perfloop's step annotations when present, else ProfilerStep#N."""
    own = [a for a in annotations if a.name.startswith(STEP_PREFIX)]
    windows = own or [a for a in annotations if a.name.startswith("ProfilerStep#")]
    return sorted(windows, key=lambda e: e.start)


def anchor_stage(name: str, input_dims: str) -> str | None:
    """Stage told by an attention kernel's name, or on CPU traces by the query length of SDPA."""
    low = name.lower()
    if "decode" in low or "splitkv" in low or "paged_attention" in low:
        return "decode"
    if "prefill" in low or "extend" in low or "varlen" in low:
        return "prefill"
    if "scaled_dot_product" in low and input_dims:
        return _sdpa_stage(input_dims)
    return None


def _sdpa_stage(input_dims: str) -> str | None:
    try:
        dims = json.loads(input_dims)
    except ValueError:
        return None
    query = dims[0] if dims and isinstance(dims[0], list) else []
    if len(query) < 2:
        return None
    return "decode" if query[-2] == 1 else "prefill"


def fill_from_anchors(
    times: list[int], stages: list[str | None], anchors: list[tuple[int, str]]
) -> list[str]:
    """Give each unstaged time the stage of the nearest anchor within ANCHOR_WINDOW_NS, else `all`."""
    anchors = sorted(anchors)
    keys = [t for t, _ in anchors]
    out: list[str] = []
    for t, stage in zip(times, stages, strict=True):
        if stage is not None:
            out.append(stage)
            continue
        i = bisect.bisect_left(keys, t)
        best: tuple[int, str] | None = None
        for j in (i - 1, i):
            if 0 <= j < len(anchors):
                gap = abs(keys[j] - t)
                if gap <= ANCHOR_WINDOW_NS and (best is None or gap < best[0]):
                    best = (gap, anchors[j][1])
        out.append(best[1] if best else UNKNOWN)
    return out
