"""The HTTP client against a local streaming server: timings, schema, launcher hygiene, Ctrl-C."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jsonschema
import pytest

from perfloop.bench.launcher import Launcher, LaunchError
from perfloop.bench.result import BenchResult, read_records, result_schema
from perfloop.bench.runner import BenchSpec, _measure, run_benchmark
from perfloop.bench.workloads import build_requests


def test_echo_run_achieves_lengths_and_validates_against_schema(
    tmp_path: Path, echo_command: str, tiny_workload
) -> None:  # noqa: ANN001
    out = tmp_path / "r.json"
    spec = BenchSpec(
        launch=echo_command,
        workload=tiny_workload,
        output=str(out),
        progress=False,
        goodput_slos_ms={"ttft": 10_000},
    )
    result = run_benchmark(spec)
    assert result.completed == 6 and result.failed == 0
    assert result.total_output_tokens == 6 * 8 and result.perfloop.output_lengths.all_achieved
    assert result.request_goodput == pytest.approx(result.request_throughput)
    data = json.loads(out.read_text())
    jsonschema.validate(data, result_schema())
    assert data["sglang_compat"]["total_throughput"] == pytest.approx(data["total_token_throughput"])
    assert "{port}" not in data["perfloop"]["environment"]["server_command"]
    rows = read_records(out)
    assert len(rows) == 6 and all(r.output_len_source == "usage" and len(r.itl) == 7 for r in rows)


def test_launcher_stops_the_whole_process_group(echo_command: str) -> None:
    with Launcher(echo_command, health_timeout=120) as server:  # liveness only
        pid = server.proc.pid
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_launcher_failure_shows_the_log_tail(tmp_path: Path) -> None:
    cmd = f"{sys.executable} -c \"print('model weights missing'); raise SystemExit(3)\" {{port}}"
    with pytest.raises(LaunchError, match="model weights missing"):
        with Launcher(cmd, health_timeout=300, log_path=tmp_path / "s.log"):  # it exits at once
            pass
    with pytest.raises(ValueError, match="port"):
        Launcher("python -m http.server")


class _InterruptAfter:
    """A backend that finishes three requests, then the user presses Ctrl-C."""

    name = "fake"
    endpoint_type = "fake"
    model_id = "m"

    def engine_flags(self) -> None:
        return None

    def run(self, requests, arrivals, max_concurrency, on_done, t0) -> None:  # noqa: ANN001
        from perfloop.bench.backends.base import stream_record

        if requests[0].index < 0:
            return  # warm-up
        for req in requests[:3]:
            on_done(stream_record(req, t0, t0, [t0 + 0.01, t0 + 0.02], req.prompt_len, 2))
        raise KeyboardInterrupt


def test_ctrl_c_keeps_the_finished_requests(tiny_workload) -> None:  # noqa: ANN001
    spec = BenchSpec(launch="http://x", workload=tiny_workload, progress=False)
    requests = build_requests(tiny_workload)
    records, duration, interrupted = _measure(_InterruptAfter(), spec, requests, [0.0] * len(requests))
    assert interrupted and len(records) == 3 and duration >= 0


def test_ctrl_c_stops_the_server_before_anything_else_runs(
    monkeypatch: pytest.MonkeyPatch, tiny_workload
) -> None:  # noqa: ANN001
    # Under load, fingerprinting after the interrupt (torch's import) kept a container alive past 60 s.
    import contextlib

    import perfloop.bench.runner as runner

    events: list[str] = []
    real_collect = runner.collect_environment

    class Interrupted(_InterruptAfter):
        def run(self, *args) -> None:  # noqa: ANN002
            try:
                super().run(*args)
            except KeyboardInterrupt:
                events.append("interrupted")
                raise

    @contextlib.contextmanager
    def fake_open_backend(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        yield Interrupted(), None, None
        events.append("server stopped")

    def collect(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        events.append("fingerprint")
        return real_collect(*args, **kwargs)

    monkeypatch.setattr(runner, "open_backend", fake_open_backend)
    monkeypatch.setattr(runner, "collect_environment", collect)
    result = run_benchmark(BenchSpec(launch="http://x", workload=tiny_workload, progress=False))
    assert result.perfloop.interrupted and result.completed == 3
    assert events == ["fingerprint", "interrupted", "server stopped"]


def test_result_round_trips(tmp_path: Path, scripted, tiny_workload) -> None:  # noqa: ANN001
    result = scripted(BenchSpec(launch="http://x", workload=tiny_workload), 100.0)
    path = tmp_path / "x.json"
    path.write_text(result.model_dump_json())
    assert BenchResult.load(path) == result
    path.write_text("{}")
    with pytest.raises(ValueError, match="not a perfloop bench result"):
        BenchResult.load(path)
