"""Real H200 traces of the bundled engine (qwen3-0.6b shape, bf16), captured by
`python -m benchmarks.gpu_suite --parts fixtures`: eager, and CUDA graphs with their mapping trace."""

from __future__ import annotations

from pathlib import Path

from perfloop.profilers.tables import analyze, load_activities, table_spec

DATA = Path(__file__).parent / "data"
EAGER, GRAPHS, MAPPING = (DATA / f"h200_{n}.json.gz" for n in ("eager", "graphs", "graphs_mapping"))


def test_eager_kernel_time_resolves_to_engine_python() -> None:
    _, acts = load_activities(EAGER)
    kernels = [a for a in acts if a.launch_start is not None]
    assert kernels, "the eager H200 trace has device kernels"
    resolved = sum(a.dur for a in kernels if a.site.startswith("perfloop/engine/"))
    assert resolved / sum(a.dur for a in kernels) >= 0.9
    assert {a.stage for a in kernels} == {"decode"}  # the schedule's warm-up step took the prefill
    names = {a.name for a in kernels}
    assert {"_paged_decode_kernel", "_rms_norm_kernel", "_qk_norm_rope_kernel"} <= names


def test_graph_replays_are_grouped_and_mapped_by_name() -> None:
    _, acts = load_activities(GRAPHS, mapping_path=MAPPING)
    replayed = [a for a in acts if a.graph is not None]
    assert replayed, "decode steps replay CUDA graphs"
    assert all(a.stage == "decode" for a in replayed)
    # Each cudaGraphLaunch groups one decode forward: 28 layers' worth of attention kernels.
    per_graph: dict[int, int] = {}
    for a in replayed:
        per_graph[a.graph] = per_graph.get(a.graph, 0) + (a.name == "_paged_decode_kernel")
    assert set(per_graph.values()) == {28}
    mapped = sum(a.dur for a in replayed if a.site.startswith("perfloop/engine/"))
    assert mapped / sum(a.dur for a in replayed) >= 0.9


def test_tables_on_the_graph_trace(tmp_path: Path) -> None:
    tables = analyze(GRAPHS, tmp_path, formats=("json",), mapping_path=MAPPING)
    decode = tables["decode"]
    for name, rows in decode.items():
        assert rows and {c.key for c in table_spec(name).shown} <= set(rows[0])
    top = decode["kernel_table"][0]
    assert top["category"] in {"attention", "gemm"}
    host = {(r["section"], r["item"]): r for r in decode["host_table"]}
    assert host[("launch", "graph launches")]["count"] >= 3
