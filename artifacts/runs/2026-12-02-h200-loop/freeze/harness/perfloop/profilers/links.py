"""Kernel -> runtime launch (`correlation`) -> CPU op (`External id`) -> Python frames -> stage.

The unit of every table is an Activity: a GPU kernel on CUDA traces, a leaf CPU op (one that
encloses no other op) on CPU-only traces. What ran on the host around each launch is resolved by
one sorted sweep per thread over its nested X events (Python frames, CPU ops, annotations).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from functools import lru_cache

from perfloop.profilers.categories import categorize
from perfloop.profilers.stages import (
    LAYER_PREFIX,
    STEP_PREFIX,
    UNKNOWN,
    anchor_stage,
    annotation_stage,
    fill_from_anchors,
    perfloop_step_stage,
    step_windows,
)
from perfloop.profilers.trace import Event, Trace

UNRESOLVED = "unresolved"
_FRAME_RE = re.compile(r"^(.*)\((\d+)\): (.*)$")
# Which frames best explain a launch: the serving engine's own code beats framework internals.
_SOURCE_PRIORITY = (
    ("perfloop/", 300),
    ("sglang/", 300),
    ("vllm/", 285),
    ("tensorrt_llm/", 280),
    ("sgl_kernel/", 260),
    ("transformers/", 240),
    ("triton_kernels/", 220),
    ("torch/", 20),
    ("site-packages/", 60),
)
_LOW_SIGNAL = frozenset(
    {"__call__", "_call_impl", "_wrapped_call_impl", "decorate_context", "wrapper", "inner"}
)
_NOISE = ("threading", "asyncio", "concurrent/", "selectors")
_SCOPES = {
    "perfloop.attn": "attn",
    "perfloop.mlp": "mlp",
    "perfloop.logits": "logits",
    "perfloop.sample": "sample",
}


@dataclass(slots=True)
class Context:
    """What the host thread was inside at one instant."""

    site: str = UNRESOLVED
    outer_op: str = ""
    inner_op: str = ""
    step: Event | None = None
    stage: str | None = None
    layer: int | None = None
    scope: str = ""


@dataclass(slots=True)
class Activity:
    """One unit of device work (or of CPU op work on CPU-only traces), fully attributed."""

    name: str
    category: str
    start: int
    end: int
    stream: str
    site: str
    cpu_op: str
    input_dims: str
    scope: str
    stage: str
    step: int | None
    layer: int | None
    graph: int | None = None
    launch_start: int | None = None
    launch_end: int | None = None

    @property
    def dur(self) -> int:
        return self.end - self.start


@lru_cache(maxsize=65536)
def frame_site(name: str) -> tuple[int, str]:
    """(priority, `path:line function`) of one python_function event name; priority < 0 = skip."""
    m = _FRAME_RE.match(name)
    if not m:
        return -1, ""
    path, line, func = m.groups()
    path = _short_path(path)
    score = 150
    for marker, prio in _SOURCE_PRIORITY:
        if marker in path or path.startswith(marker.rstrip("/")):
            score = prio
            break
    if func in _LOW_SIGNAL:
        score -= 80
    if any(n in path for n in _NOISE):
        score -= 20
    return score, f"{path}:{line} {func}"


def _short_path(path: str) -> str:
    if "site-packages/" in path:
        return path.rsplit("site-packages/", 1)[1]
    for marker in ("perfloop/", "sglang/", "vllm/", "tensorrt_llm/"):
        i = path.rfind("/" + marker)
        if i >= 0:
            return path[i + 1 :]
    return path


def _resolve(stack: list[Event]) -> Context:
    ctx = Context()
    best = -1
    for ev in reversed(stack):  # innermost first, so ties keep the innermost frame
        cat = ev.cat
        if cat == "python_function":
            score, site = frame_site(ev.name)
            if score > best:
                best, ctx.site = score, site
        elif cat == "cpu_op":
            ctx.outer_op = ev.name
            if not ctx.inner_op:
                ctx.inner_op = ev.name
        elif cat == "user_annotation":
            _annotation(ctx, ev)
    return ctx


def _annotation(ctx: Context, ev: Event) -> None:
    name = ev.name
    if name.startswith(STEP_PREFIX):
        ctx.step, ctx.stage = ev, perfloop_step_stage(name)
    elif name.startswith(LAYER_PREFIX):
        ctx.layer = int(name[len(LAYER_PREFIX) :].split()[0])
    elif name in _SCOPES:
        ctx.scope = ctx.scope or _SCOPES[name]
    elif name.startswith("ProfilerStep#"):
        ctx.step = ctx.step or ev
    elif ctx.stage is None and ctx.step is None:
        ctx.stage = annotation_stage(name)


def sweep(events: list[Event], queries: list[tuple[int, int]]) -> dict[int, Context]:
    """Context at each (time, key) query, from one thread's events; nested intervals assumed."""
    events = sorted(events, key=lambda e: (e.start, -e.end))
    out: dict[int, Context] = {}
    stack: list[Event] = []
    i, n = 0, len(events)
    for t, key in sorted(queries):
        while i < n and events[i].start <= t:
            ev = events[i]
            while stack and stack[-1].end <= ev.start:
                stack.pop()
            stack.append(ev)
            i += 1
        while stack and stack[-1].end <= t:
            stack.pop()
        out[key] = _resolve([e for e in stack if e.end > t])
    return out


def _by_thread(trace: Trace) -> dict[tuple, list[Event]]:
    threads: dict[tuple, list[Event]] = defaultdict(list)
    for group in (trace.python, trace.cpu_ops, trace.annotations):
        for ev in group:
            threads[(ev.pid, ev.tid)].append(ev)
    return threads


def top_level_ops(cpu_ops: list[Event]) -> list[tuple[Event, str]]:
    """CPU ops not nested in another op, each with its longest direct child op's name.

    On CPU-only traces these are what Python called, the analogue of kernel launches; their
    inclusive time is the op work, and what lies between them on a step is host overhead.
    """
    threads: dict[tuple, list[Event]] = defaultdict(list)
    for ev in cpu_ops:
        threads[(ev.pid, ev.tid)].append(ev)
    tops: list[Event] = []
    child: dict[int, Event] = {}
    for evs in threads.values():
        evs.sort(key=lambda e: (e.start, -e.end))
        stack: list[Event] = []
        for ev in evs:
            while stack and stack[-1].end <= ev.start:
                stack.pop()
            if not stack:
                tops.append(ev)
            elif len(stack) == 1:
                top = stack[0]
                if id(top) not in child or ev.dur > child[id(top)].dur:
                    child[id(top)] = ev
            stack.append(ev)
    return [(ev, child[id(ev)].name if id(ev) in child else "") for ev in tops]


def build_activities(trace: Trace) -> list[Activity]:
    """Every activity of the trace, attributed to Python site, CPU op, stage, step and layer."""
    acts = _device_activities(trace) if trace.has_device else _cpu_activities(trace)
    acts.sort(key=lambda a: a.start)
    _fill_stages(acts, trace)
    return acts


def _contexts(trace: Trace, points: dict[tuple, list[tuple[int, int]]]) -> dict[int, Context]:
    threads = _by_thread(trace)
    out: dict[int, Context] = {}
    for thread, queries in points.items():
        out.update(sweep(threads.get(thread, []), queries))
    return out


def _cpu_activities(trace: Trace) -> list[Activity]:
    tops = top_level_ops(trace.cpu_ops)
    points: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
    for k, (ev, _) in enumerate(tops):
        points[(ev.pid, ev.tid)].append((ev.start, k))  # just before the op: its caller's frames
    ctxs = _contexts(trace, points)
    steps = _step_index(trace)
    acts = []
    for k, (ev, child) in enumerate(tops):
        op = f"{ev.name} > {child}" if child else ev.name
        acts.append(_activity(ev, f"thread {ev.tid}", ctxs[k], op, ev.input_dims, steps))
    return acts


def _device_activities(trace: Trace) -> list[Activity]:
    runtime = {ev.correlation: ev for ev in trace.runtime if ev.correlation is not None}
    points: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
    for corr, ev in runtime.items():
        points[(ev.pid, ev.tid)].append((ev.start + min(ev.dur // 2, 500), corr))
    ctxs = _contexts(trace, points)
    ops_by_ext = {ev.external_id: ev for ev in trace.cpu_ops if ev.external_id is not None}
    steps = _step_index(trace)
    acts = []
    for k in trace.kernels:
        launch = runtime.get(k.correlation)
        ctx = ctxs.get(k.correlation, Context()) if launch else Context()
        launch_op = ops_by_ext.get(k.external_id) if k.external_id is not None else None
        inner = launch_op.name if launch_op else ctx.inner_op
        op = inner if ctx.outer_op in ("", inner) else f"{ctx.outer_op} > {inner}"
        act = _activity(k, f"stream {k.tid}", ctx, op, launch_op.input_dims if launch_op else "", steps)
        if launch is not None:
            act.launch_start, act.launch_end = launch.start, launch.end
            if "GraphLaunch" in launch.name:
                act.graph = k.correlation
                act.cpu_op = act.cpu_op or launch.name
        acts.append(act)
    return acts


def _step_index(trace: Trace) -> dict[int, int]:
    return {id(ev): i for i, ev in enumerate(step_windows(trace.annotations))}


def _activity(ev: Event, stream: str, ctx: Context, op: str, dims: str, steps: dict[int, int]) -> Activity:
    scope = ctx.scope or (ctx.site.rsplit(" ", 1)[-1] if ctx.site != UNRESOLVED else "")
    return Activity(
        name=ev.name,
        category=categorize(ev.name),
        start=ev.start,
        end=ev.end,
        stream=stream,
        site=ctx.site,
        cpu_op=op,
        input_dims=dims,
        scope=scope,
        stage=ctx.stage or "",
        step=steps.get(id(ctx.step)) if ctx.step is not None else None,
        layer=ctx.layer,
    )


def _fill_stages(acts: list[Activity], trace: Trace) -> None:
    """Unstaged activities: GPU-side annotations, then the nearest anchor kernel, else `all`."""
    gpu_ann = [(a.start, a.end, annotation_stage(a.name)) for a in trace.gpu_annotations]
    gpu_ann = [g for g in gpu_ann if g[2]]
    for a in acts:
        if not a.stage:
            a.stage = next((s for lo, hi, s in gpu_ann if lo <= a.start < hi), "")
    anchors = [
        (a.start, s) for a in acts if a.category == "attention" and (s := anchor_stage(a.name, a.input_dims))
    ]
    stages = fill_from_anchors([a.start for a in acts], [a.stage or None for a in acts], anchors)
    for a, s in zip(acts, stages, strict=True):
        a.stage = s or UNKNOWN


def apply_mapping(acts: list[Activity], mapping: list[Activity]) -> list[Activity]:
    """Give CUDA-graph replays the Python site and CPU op that an eager mapping trace shows for the
    same kernel name (replays carry no CPU ops of their own)."""
    sites: dict[str, Counter] = defaultdict(Counter)
    for m in mapping:
        sites[m.name][(m.site, m.cpu_op, m.input_dims)] += m.dur
    out = []
    for a in acts:
        if a.graph is not None and a.name in sites:
            site, op, dims = sites[a.name].most_common(1)[0][0]
            a = replace(a, site=site, cpu_op=op, input_dims=dims)
        out.append(a)
    return out
