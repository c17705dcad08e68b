"""PROFILE of a served target: the loop launches the server and captures through its profiler endpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_spec

from perfloop.loop.process_backend import run_profile_job
from perfloop.profilers.rows import row_id


@pytest.mark.slow
def test_profile_job_captures_a_launched_server(target_repo: Path, tmp_path: Path) -> None:
    launch = (
        "OMP_NUM_THREADS=1 perfloop serve --model preset:tiny-qwen3 --port {port} "
        f"--profile-dir {tmp_path / 'server-profiles'}"
    )
    spec = make_spec(target_repo, tmp_path)
    out = tmp_path / "profile"
    record = run_profile_job(
        {"launch": launch, "spec": json.loads(spec.model_dump_json()), "out_dir": str(out)}
    )
    assert Path(record.trace).is_file()
    # The engine inside the server annotated its steps, so the tables split by stage.
    assert {"prefill", "decode"} <= set(record.tables)
    kernel_rows = record.tables["decode"]["kernel_table"]
    assert any("perfloop/engine/" in s["site"] for row in kernel_rows for s in row["python_sites"])
    assert all(
        row["row_id"] == row_id("decode", "kernel_table", row["kernel"])
        for row in kernel_rows
        if not row["folded"]
    )
    assert (out / "server.log").is_file()


def test_profile_job_refuses_an_hf_peer(target_repo: Path, tmp_path: Path) -> None:
    spec = make_spec(target_repo, tmp_path)
    job = {
        "launch": "hf:preset:tiny-qwen3",
        "spec": json.loads(spec.model_dump_json()),
        "out_dir": str(tmp_path),
    }
    with pytest.raises(Exception, match="profiler endpoints"):
        run_profile_job(job)


def test_in_process_profile_job_runs_one_engine_at_a_time(
    target_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CUDA engine takes most of the device for its KV pool: an engine alive while the capture's
    engine starts leaves that one no memory (PROFILE's crash on the H200). The job records
    `measure.profile_steps` steps."""
    import weakref

    from perfloop.engine.llm_engine import LLMEngine

    alive: weakref.WeakSet = weakref.WeakSet()
    overlapping: list[int] = []
    init = LLMEngine.__init__

    def tracked(self: LLMEngine, config: object) -> None:
        overlapping.append(len(alive))
        init(self, config)
        alive.add(self)

    monkeypatch.setattr(LLMEngine, "__init__", tracked)
    spec = make_spec(target_repo, tmp_path, measure={"profile_requests": 2, "profile_steps": 3})
    job = {
        "launch": "engine:--model preset:tiny-qwen3",
        "spec": json.loads(spec.model_dump_json()),
        "out_dir": str(tmp_path / "profile"),
    }
    record = run_profile_job(job)
    assert len(overlapping) == 2 and overlapping == [0, 0], overlapping
    meta = json.loads((tmp_path / "profile" / "meta.json").read_text())
    assert meta["schedule"]["active"] == 3
    assert record.engine_stats["requests"] == 2
