"""Capturing torch-profiler traces: the bundled engine in-process, or a running server over HTTP."""

from __future__ import annotations

import gzip
import os
import platform
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import torch
from pydantic import BaseModel, Field
from rich.progress import Progress
from torch.profiler import ProfilerActivity, profile, schedule

from perfloop.bench.workloads import WorkloadSpec, build_requests
from perfloop.engine.config import EngineConfig
from perfloop.engine.llm_engine import LLMEngine
from perfloop.engine.sampling_params import SamplingParams

TRACE_NAME = "trace.json.gz"
Workload = WorkloadSpec | list[tuple[list[int], SamplingParams]]


class CaptureError(RuntimeError):
    """The capture did not produce a trace."""


class ProfileSchedule(BaseModel):
    """torch.profiler schedule over engine steps.

    The `wait` and `warmup` steps run a throwaway request, so the `active` (recorded) steps start
    at the workload's first step, its prefill.
    """

    wait: int = Field(1, ge=0)
    warmup: int = Field(1, ge=0)
    active: int = Field(8, ge=1)


class CaptureMeta(BaseModel):
    """meta.json written next to every captured trace."""

    schema_version: int = 1
    created_at: str
    trace: str
    mapping_trace: str | None = None
    source: str = Field(description="engine (in-process) or the server URL")
    engine_config: dict[str, Any] | None = None
    workload: dict[str, Any] | list[dict[str, Any]]
    schedule: ProfileSchedule | None = None
    steps_profiled: int | None = None
    max_concurrency: int | None = Field(
        None,
        description="Requests in flight at once during the capture, as the benchmark ran them (None: all).",
    )
    environment: dict[str, Any]


def environment() -> dict[str, Any]:
    """Where the trace was taken: enough to refuse comparing traces from different setups."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def _requests(workload: Workload, vocab_size: int) -> list[tuple[list[int], SamplingParams]]:
    if isinstance(workload, WorkloadSpec):
        spec = workload if workload.vocab_size else workload.model_copy(update={"vocab_size": vocab_size})
        return [
            (
                list(r.prompt) if isinstance(r.prompt, list) else r.prompt,
                SamplingParams(
                    max_tokens=r.output_len, temperature=spec.temperature, ignore_eos=spec.ignore_eos
                ),
            )
            for r in build_requests(spec)
        ]
    return list(workload)


def _describe(workload: Workload) -> dict[str, Any] | list[dict[str, Any]]:
    if isinstance(workload, WorkloadSpec):
        return workload.model_dump()
    return [
        {"prompt_len": len(p), "max_tokens": s.max_tokens, "temperature": s.temperature} for p, s in workload
    ]


def _uses_cuda_graphs(config: EngineConfig) -> bool:
    on_cuda = config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available())
    return on_cuda and not config.enforce_eager


def capture_engine(
    config: EngineConfig,
    workload: Workload,
    out_dir: Path,
    sched: ProfileSchedule | None = None,
    max_concurrency: int | None = None,
) -> Path:
    """Run the bundled engine on the workload under torch.profiler; return the trace path.

    `max_concurrency` admits the workload's requests that many at a time, as the benchmark does, so
    the traced steps have the batch sizes the measurement had.

    Writes `<out_dir>/trace.json.gz` and `meta.json`. With CUDA graphs on, also writes an eager
    `<out_dir>/mapping/trace.json.gz` so replayed kernels can be mapped to source by name.
    """
    sched = sched or ProfileSchedule()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = _profile_engine(config, workload, out_dir / TRACE_NAME, sched, max_concurrency)
    mapping = None
    if _uses_cuda_graphs(config):
        eager = config.model_copy(update={"enforce_eager": True})
        mapping = out_dir / "mapping" / TRACE_NAME
        mapping.parent.mkdir(exist_ok=True)
        _profile_engine(eager, workload, mapping, sched, max_concurrency)
    meta = CaptureMeta(
        created_at=datetime.now(timezone.utc).isoformat(),
        trace=TRACE_NAME,
        mapping_trace=str(mapping.relative_to(out_dir)) if mapping else None,
        source="engine",
        engine_config=config.model_dump(),
        workload=_describe(workload),
        schedule=sched,
        steps_profiled=steps,
        max_concurrency=max_concurrency,
        environment=environment(),
    )
    (out_dir / "meta.json").write_text(meta.model_dump_json(indent=2))
    return out_dir / TRACE_NAME


def _throwaway(engine: LLMEngine, prompt: list[int] | str, steps: int) -> str | None:
    """Add a request that keeps the engine busy for `steps` unrecorded steps; its id, or None if none."""
    if not steps:
        return None
    # reversed: the same length, but no prefix for the workload's prompts to hit in the cache
    engine.add_request("profile-warmup", prompt[::-1], SamplingParams(max_tokens=steps + 1, ignore_eos=True))
    return "profile-warmup"


def _profile_engine(
    config: EngineConfig, workload: Workload, trace_path: Path, sched: ProfileSchedule, window: int | None
) -> int:
    engine = LLMEngine(config)
    requests = _requests(workload, engine.model_config.vocab_size)
    unrecorded = sched.wait + sched.warmup
    warm_id = _throwaway(engine, requests[0][0], unrecorded)
    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    written: list[Path] = []
    request_ids = [f"profile-{i}" for i in range(len(requests))]
    recorded = 0
    with (
        profile(
            activities=activities,
            record_shapes=True,
            with_stack=True,
            schedule=schedule(wait=sched.wait, warmup=sched.warmup, active=sched.active, repeat=1),
            on_trace_ready=lambda p: (p.export_chrome_trace(str(trace_path)), written.append(trace_path)),
        ) as prof,
        Progress(transient=True) as bar,
    ):
        task = bar.add_task("profiling engine steps", total=unrecorded + sched.active)
        for _ in range(unrecorded):
            engine.step()
            prof.step()
            bar.advance(task)
        if warm_id:  # the recorded steps begin: the workload replaces the throwaway request
            engine.abort(warm_id)
        pending = list(zip(request_ids, requests, strict=True))
        in_flight = 0
        while (pending or engine.has_unfinished()) and recorded < sched.active:
            while pending and (window is None or in_flight < window):
                rid, (prompt, params) = pending.pop(0)
                engine.add_request(rid, prompt, params)
                in_flight += 1
            in_flight -= sum(o.finished for o in engine.step() if o.request_id in request_ids)
            prof.step()
            recorded += 1
            bar.advance(task)
    for rid in request_ids:  # free what the schedule did not need
        engine.abort(rid)
    if not written:
        raise CaptureError(f"the profiler wrote no trace after {recorded} recorded engine steps")
    return recorded


def capture_url(
    url: str,
    prompts: list[tuple[list[int], int]],
    out_dir: Path,
    trace_dir: Path | None = None,
    model: str | None = None,
    client: httpx.Client | None = None,
    max_concurrency: int = 1,
) -> Path:
    """Profile a running server (perfloop, vLLM, SGLang) via /start_profile and /stop_profile.

    Sends each (prompt ids, max_tokens) as a completion while the profiler runs, `max_concurrency`
    at a time (the benchmark's concurrency, so the server batches as it did when measured). The server writes
    the trace; perfloop's server returns its path, others write into `trace_dir` (their profiler dir,
    which must be readable here). The trace is copied to `<out_dir>/trace.json.gz`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    own = client is None
    client = client or httpx.Client(base_url=url.rstrip("/"), timeout=600)
    started = time.time()
    try:
        _post(client, "/start_profile")
        bodies = [
            {"prompt": ids, "max_tokens": n, "temperature": 0.0, "ignore_eos": True}
            | ({"model": model} if model else {})
            for ids, n in prompts
        ]
        with ThreadPoolExecutor(max_workers=max(1, max_concurrency)) as pool:
            list(pool.map(lambda body: _post(client, "/v1/completions", body), bodies))
        stopped = _post(client, "/stop_profile")
    finally:
        if own:
            client.close()
    source = _server_trace(stopped, trace_dir, started)
    dest = out_dir / TRACE_NAME
    _copy_gz(source, dest)
    meta = CaptureMeta(
        created_at=datetime.now(timezone.utc).isoformat(),
        trace=TRACE_NAME,
        source=url,
        workload=[{"prompt_len": len(p), "max_tokens": m} for p, m in prompts],
        max_concurrency=max_concurrency,
        environment=environment(),
    )
    (out_dir / "meta.json").write_text(meta.model_dump_json(indent=2))
    return dest


def _post(client: httpx.Client, path: str, body: dict | None = None) -> dict:
    try:
        resp = client.post(path, json=body)
    except httpx.HTTPError as e:
        raise CaptureError(f"url: POST {path} failed: {e}") from e
    if resp.status_code >= 400:
        raise CaptureError(f"url: POST {path} returned {resp.status_code}: {resp.text[:300]}")
    try:
        return resp.json()
    except ValueError:
        return {}


def _server_trace(stopped: dict, trace_dir: Path | None, since: float) -> Path:
    named = stopped.get("trace")
    if named and Path(named).exists():
        return Path(named)
    if trace_dir is None:
        raise CaptureError("trace_dir: the server did not say where it wrote the trace; pass --trace-dir")
    fresh = [p for p in Path(trace_dir).rglob("*.json*") if p.stat().st_mtime >= since - 1]
    if not fresh:
        raise CaptureError(f"trace_dir: no trace written to {trace_dir} during the capture")
    return max(fresh, key=lambda p: p.stat().st_mtime)


def _copy_gz(source: Path, dest: Path) -> None:
    with open(source, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    if gz:
        shutil.copyfile(source, dest)
        return
    with open(source, "rb") as src, gzip.open(dest, "wb") as dst:
        shutil.copyfileobj(src, dst)
