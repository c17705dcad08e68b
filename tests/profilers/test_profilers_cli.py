"""The `perfloop profile` commands, URL capture, pipeline tables and the Perfetto timeline."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import CUDA_TRACE
from fastapi import FastAPI
from fastapi.testclient import TestClient
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace as PerfettoTrace
from typer.testing import CliRunner

from perfloop.bench.metrics import RequestRecord
from perfloop.cli import app
from perfloop.engine.models.presets import PRESETS
from perfloop.profilers.capture import capture_url
from perfloop.profilers.pipeline import LAYER_COLUMNS, PASS_COLUMNS, pipeline_tables
from perfloop.profilers.tables import load_activities
from perfloop.profilers.timeline import write_timeline

runner = CliRunner()


def test_analyze_command_writes_and_prints(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["profile", "analyze", str(CUDA_TRACE), "--out", str(tmp_path), "--format", "md,json"]
    )
    assert res.exit_code == 0, res.output
    assert "| Kernel | Category | Time (ms) | Share (%) | Launches |" in res.output
    assert (tmp_path / "prefill" / "kernel_table.json").exists()
    assert not (tmp_path / "prefill" / "kernel_table.csv").exists()


def test_bad_input_names_the_field(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["profile", "analyze", str(CUDA_TRACE), "--out", str(tmp_path), "--format", "xls"]
    )
    assert res.exit_code != 0 and "--format" in res.output
    res = runner.invoke(
        app, ["profile", "analyze", str(CUDA_TRACE), "--out", str(tmp_path), "--stage", "mixed"]
    )
    assert res.exit_code == 2 and "stage" in res.output


def test_roofline_and_capacity_commands() -> None:
    res = runner.invoke(
        app, ["profile", "roofline", "--model", "preset:llama-3.1-8b", "--batch", "1", "--context", "1"]
    )
    assert res.exit_code == 0 and "lm_head" in res.output and "4.8 TB/s" in res.output
    res = runner.invoke(
        app,
        [
            "profile",
            "capacity",
            "--model",
            "preset:llama-3.1-8b",
            "--memory",
            "40",
            "--input-len",
            "1000",
            "--output-len",
            "100",
        ],
    )
    assert res.exit_code == 0 and "max_concurrent_requests: 276" in res.output


def test_pipeline_tables_from_engine_annotations(engine_trace: Path) -> None:
    _, acts = load_activities(engine_trace)
    tables = pipeline_tables(acts, None, stage="decode")
    assert list(tables["passes"][0]) == [c.key for c in PASS_COLUMNS]
    assert tables["passes"][0]["notes"] == "cold-start"
    layers = PRESETS["tiny-qwen3"]["num_hidden_layers"]
    assert len(tables["layers"]) == layers and list(tables["layers"][0]) == [c.key for c in LAYER_COLUMNS]
    assert all(isinstance(r["kernels"], int) for r in tables["layers"])
    flow = tables["compute_flow"]
    assert flow[0]["dur_us"] >= flow[-1]["dur_us"]
    assert abs(sum(r["share_pct"] for r in flow) - 100) < 0.5


def test_url_capture_uses_profile_endpoints(tmp_path: Path) -> None:
    calls: list[str] = []
    server = FastAPI()

    @server.post("/start_profile")
    def start() -> dict:
        calls.append("start")
        return {"status": "started"}

    @server.post("/v1/completions")
    def complete(body: dict) -> dict:
        calls.append(f"complete {len(body['prompt'])}")
        return {"choices": [{"text": "x"}]}

    @server.post("/stop_profile")
    def stop() -> dict:
        calls.append("stop")
        return {"status": "stopped", "trace": str(CUDA_TRACE)}

    path = capture_url("http://server", [([1, 2, 3], 4)], tmp_path, client=TestClient(server))
    assert calls == ["start", "complete 3", "stop"]
    assert (
        path.name == "trace.json.gz"
        and json.loads((tmp_path / "meta.json").read_text())["source"] == "http://server"
    )
    assert len(load_activities(path)[1]) == 7


def test_timeline_is_a_perfetto_trace(tmp_path: Path) -> None:
    records = [
        RequestRecord(
            index=0,
            success=True,
            prompt_len=8,
            output_len=3,
            start=0.0,
            ttft=0.1,
            itl=[0.02, 0.03],
            latency=0.15,
        ),
        RequestRecord(
            index=1, success=True, prompt_len=8, output_len=2, start=0.05, ttft=0.1, itl=[0.02], latency=0.12
        ),
    ]
    out = write_timeline(records, tmp_path / "bench.perfetto-trace")
    trace = PerfettoTrace()
    trace.ParseFromString(out.read_bytes())
    names = [p.track_event.name for p in trace.packet if p.HasField("track_event")]
    assert names.count("queue + prefill (TTFT)") == 2
    assert "token 3" in names
    tracks = [p.track_descriptor.name for p in trace.packet if p.HasField("track_descriptor")]
    assert tracks == ["in-flight requests", "request 0", "request 1"]
