"""Pipeline tables: forward passes (cold vs steady), per-layer timeline, layer clusters, and the
compute flow of a representative layer. Layers come from perfloop's `perfloop.layer.<i>`
annotations; traces of other engines are cut into layers at each attention (anchor) kernel."""

from __future__ import annotations

import statistics
from collections import defaultdict

from perfloop.engine.models.config import ModelConfig
from perfloop.profilers.kernel_table import ms, pct
from perfloop.profilers.links import Activity
from perfloop.profilers.rows import Row, col, columns

PASS_COLUMNS = columns(
    "fwd=Fwd#", "stage", "start_ms", "duration_ms", "avg_layer_ms", "first_layer_ms", "notes"
)
LAYER_FAMILIES = ("gemm", "attention", "norm", "elementwise", "memory", "other")
LAYER_COLUMNS = columns(
    "layer=L",
    "wall_ms",
    "sum_ms=SumDur",
    "bubble_ms",
    *(f"{f}_pct={f}" for f in LAYER_FAMILIES),
    "kernels=K#",
)
CLUSTER_COLUMNS = columns(
    "cluster",
    "count=#",
    col("layers", lambda row: ",".join(str(i) for i in row["layers"])),
    "avg_wall_ms=Avg Wall",
    "avg_sum_ms=Avg Sum",
)
FLOW_COLUMNS = columns(
    "rank=#", "category", "kernel", "dur_us=dur", "share_pct", "ts_rel_ms=ts_rel", "input_dims=Input Dims"
)
STEADY_TOLERANCE = 0.05


def forward_passes(acts: list[Activity], cfg: ModelConfig | None) -> list[list[list[Activity]]]:
    """Passes, each a list of layers, each a list of activities in time order."""
    if any(a.layer is not None for a in acts):
        return _annotated(acts)
    if cfg is None:
        raise ValueError("model_config: the trace has no perfloop layer annotations; pass --model-config")
    return _anchored(acts, cfg.num_hidden_layers)


def _annotated(acts: list[Activity]) -> list[list[list[Activity]]]:
    by_step: dict[int | None, dict[int, list[Activity]]] = defaultdict(lambda: defaultdict(list))
    for a in acts:
        if a.layer is not None:
            by_step[a.step][a.layer].append(a)
    return [
        [layers[i] for i in sorted(layers)]
        for _, layers in sorted(by_step.items(), key=lambda kv: _first(kv[1]))
    ]


def _first(layers: dict[int, list[Activity]]) -> int:
    return min(a.start for group in layers.values() for a in group)


def _anchored(acts: list[Activity], n_layers: int) -> list[list[list[Activity]]]:
    """A layer runs from one attention kernel to the next; n_layers layers make one pass."""
    ordered = sorted(acts, key=lambda a: a.start)
    starts = [i for i, a in enumerate(ordered) if a.category == "attention"]
    if len(starts) < n_layers:
        raise ValueError(f"trace: only {len(starts)} attention anchor kernels for {n_layers} layers")
    layers = [ordered[s:e] for s, e in zip(starts, starts[1:] + [len(ordered)], strict=True)]
    return [layers[p : p + n_layers] for p in range(0, len(layers) - n_layers + 1, n_layers)]


def _wall(layer: list[Activity]) -> int:
    return max(a.end for a in layer) - min(a.start for a in layer)


def pass_table(passes: list[list[list[Activity]]]) -> list[Row]:
    """One row per forward pass, labelled cold-start / steady-state / varying."""
    rows = []
    t0 = min(a.start for p in passes for layer in p for a in layer) if passes else 0
    prev_first = None
    for n, layers in enumerate(passes):
        first = _wall(layers[0])
        start = min(a.start for a in layers[0])
        end = max(a.end for a in layers[-1])
        if n == 0:
            note = "cold-start"
        elif prev_first and abs(first - prev_first) / prev_first < STEADY_TOLERANCE:
            note = "steady-state"
        elif prev_first and first / prev_first > 1.5:
            note = f"growing {first / prev_first:.1f}x"
        else:
            note = "varying"
        prev_first = first
        rows.append(
            {
                "fwd": n,
                "stage": layers[0][0].stage,
                "start_ms": ms(start - t0),
                "duration_ms": ms(end - start),
                "avg_layer_ms": ms(statistics.mean(_wall(layer) for layer in layers)),
                "first_layer_ms": ms(first),
                "notes": note,
            }
        )
    return rows


def representative(passes: list[list[list[Activity]]], rows: list[Row]) -> int:
    """The first steady-state pass, else the last one."""
    return next((r["fwd"] for r in rows if r["notes"] == "steady-state"), len(passes) - 1)


def layer_table(layers: list[list[Activity]]) -> list[Row]:
    """Wall vs summed kernel time per layer (their difference is bubbles) and category shares."""
    rows = []
    for i, layer in enumerate(layers):
        total = sum(a.dur for a in layer)
        fam: dict[str, int] = defaultdict(int)
        for a in layer:
            fam[a.category if a.category in LAYER_FAMILIES else "other"] += a.dur
        row = {
            "layer": i,
            "wall_ms": ms(_wall(layer)),
            "sum_ms": ms(total),
            "bubble_ms": ms(max(0, _wall(layer) - total)),
        }
        row.update({f"{f}_pct": pct(fam[f], total) for f in LAYER_FAMILIES})
        row["kernels"] = len(layer)
        rows.append(row)
    return rows


def cluster_table(layer_rows: list[Row]) -> list[Row]:
    """FIRST, MIDDLE and LAST layers, plus OUTLIER layers more than 20% off the median wall."""
    if not layer_rows:
        return []
    median = statistics.median(r["wall_ms"] for r in layer_rows)
    groups: dict[str, list[Row]] = defaultdict(list)
    last = len(layer_rows) - 1
    for r in layer_rows:
        if median and abs(r["wall_ms"] - median) / median > 0.2 and 0 < r["layer"] < last:
            groups["OUTLIER"].append(r)
        else:
            groups["FIRST" if r["layer"] == 0 else "LAST" if r["layer"] == last else "MIDDLE"].append(r)
    order = ("FIRST", "MIDDLE", "LAST", "OUTLIER")
    return [
        {
            "cluster": name,
            "count": len(groups[name]),
            "layers": [r["layer"] for r in groups[name]],
            "avg_wall_ms": round(statistics.mean(r["wall_ms"] for r in groups[name]), 4),
            "avg_sum_ms": round(statistics.mean(r["sum_ms"] for r in groups[name]), 4),
        }
        for name in order
        if groups[name]
    ]


def flow_table(layer: list[Activity]) -> list[Row]:
    """Every kernel of one layer, longest first, with its offset from the layer start."""
    t0 = min(a.start for a in layer)
    total = sum(a.dur for a in layer)
    ranked = sorted(layer, key=lambda a: -a.dur)
    return [
        {
            "rank": n,
            "category": a.category,
            "kernel": a.name,
            "dur_us": round(a.dur / 1000, 3),
            "share_pct": pct(a.dur, total),
            "ts_rel_ms": ms(a.start - t0),
            "input_dims": a.input_dims,
        }
        for n, a in enumerate(ranked)
    ]


def pipeline_tables(
    acts: list[Activity], cfg: ModelConfig | None, stage: str | None = None
) -> dict[str, list[Row]]:
    """All four pipeline tables for the trace (optionally one stage)."""
    if stage:
        acts = [a for a in acts if a.stage == stage]
    passes = forward_passes(acts, cfg)
    if not passes:
        raise ValueError("trace: no complete forward pass found")
    passes_rows = pass_table(passes)
    rep = representative(passes, passes_rows)
    layers = layer_table(passes[rep])
    walls = [r["wall_ms"] for r in layers]
    median_layer = min(range(len(walls)), key=lambda i: abs(walls[i] - statistics.median(walls)))
    return {
        "passes": passes_rows,
        "layers": layers,
        "clusters": cluster_table(layers),
        "compute_flow": flow_table(passes[rep][median_layer]),
    }


PIPELINE_COLUMNS = {
    "passes": PASS_COLUMNS,
    "layers": LAYER_COLUMNS,
    "clusters": CLUSTER_COLUMNS,
    "compute_flow": FLOW_COLUMNS,
}
