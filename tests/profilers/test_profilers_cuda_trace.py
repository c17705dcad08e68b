"""CUDA-format trace (hand-made, following the observed torch 2.11 CUDA format): linking and graphs."""

from __future__ import annotations

from pathlib import Path

from conftest import CUDA_TRACE

from perfloop.profilers.tables import analyze, load_activities
from perfloop.profilers.trace import load_trace

GEMM = "nvjet_tst_128x64_64x8_1x1_v_bz_TNT"


def test_kernels_link_to_launch_op_and_python_frame() -> None:
    # The fixture trace was recorded before the engine regroup, so its frames carry the old paths.
    _, acts = load_activities(CUDA_TRACE, mapping_path=None)
    gemm = next(a for a in acts if a.name == GEMM and a.graph is None)
    assert gemm.site == "perfloop/engine/layers.py:85 forward"  # engine frame beats torch's _call_impl
    assert gemm.cpu_op == "aten::linear > aten::mm"  # outer op > op named by External id
    assert gemm.input_dims == "[[8,4096],[4096,28672]]"
    assert (gemm.stage, gemm.layer, gemm.scope) == ("prefill", 0, "mlp")
    assert gemm.start - gemm.launch_start == 13_333  # launch -> start delay, exact ns


def test_eager_kernel_time_resolves_to_python() -> None:
    _, acts = load_activities(CUDA_TRACE)
    eager = [a for a in acts if a.graph is None]
    resolved = sum(a.dur for a in eager if a.site != "unresolved")
    assert resolved / sum(a.dur for a in eager) >= 0.9


def test_graph_replays_are_grouped_under_their_launch() -> None:
    trace = load_trace(CUDA_TRACE)
    assert trace.has_device and len(trace.kernels) == 7
    _, acts = load_activities(CUDA_TRACE, mapping_path=None)
    replayed = [a for a in acts if a.graph is not None]
    assert {a.graph for a in replayed} == {600}
    assert len(replayed) == 3 and all(a.stage == "decode" for a in replayed)
    assert all(a.site == "perfloop/engine/cuda_graphs.py:40 replay" for a in replayed)


def test_mapping_trace_gives_replays_their_source() -> None:
    _, acts = load_activities(CUDA_TRACE, mapping_path=CUDA_TRACE)
    gemm = next(a for a in acts if a.name == GEMM and a.graph is not None)
    assert gemm.site == "perfloop/engine/layers.py:85 forward"
    assert gemm.cpu_op == "aten::linear > aten::mm"


def test_tables_on_cuda_trace(tmp_path: Path) -> None:
    result = analyze(CUDA_TRACE, tmp_path, formats=("json",))
    assert set(result) == {"prefill", "decode"}
    host = {r["item"]: r for r in result["decode"]["host_table"]}
    assert host["graph launches"]["count"] == 1
    assert host["kernel launches"]["count"] == 2  # the memcpy launch and the graph launch
    kernels = {r["kernel"]: r for r in result["prefill"]["kernel_table"]}
    assert kernels[GEMM]["category"] == "gemm"
    assert kernels[GEMM]["time_ms"] == 0.0302
    assert kernels[GEMM]["row_id"] == f"prefill/kernel_table/{GEMM}"
    fuse = [r["pattern"] for r in result["prefill"]["fuse_table"]]
    assert "silu-and-mul" in fuse
