"""`perfloop profile ...`: capture, analyze, pipeline, roofline, capacity, timeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import typer

from perfloop.engine.cli_options import engine_flags
from perfloop.engine.config import EngineConfig
from perfloop.errors import UserError
from perfloop.terminal import make_console

app = typer.Typer(help="Profiler capture and analysis tables.", no_args_is_help=True)
console = make_console()


def _fail(message: str) -> NoReturn:
    """Stop on a bad input: `perfloop` prints it as one line on stderr and exits 2."""
    raise UserError(message)


def _formats(raw: str) -> tuple[str, ...]:
    from perfloop.profilers.render import FORMATS

    formats = tuple(f.strip() for f in raw.split(",") if f.strip())
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise typer.BadParameter(
            f"unknown format {bad[0] if bad else raw!r}; use {','.join(FORMATS)}", param_hint="--format"
        )
    return formats


@app.command()
@engine_flags
def capture(
    engine_config: EngineConfig,
    out: Path = typer.Option(..., "--out", help="Folder for trace.json.gz and meta.json."),
    num_prompts: int = typer.Option(4, "--num-prompts", min=1, help="Random workload: requests."),
    input_len: int = typer.Option(64, "--input-len", min=1, help="Random workload: prompt tokens."),
    output_len: int = typer.Option(16, "--output-len", min=1, help="Random workload: output tokens."),
    seed: int = typer.Option(0, "--seed", help="Workload seed."),
    wait: int = typer.Option(
        1,
        "--wait",
        min=0,
        help="Unrecorded steps of a throwaway request, before the profiler warms up.",
    ),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Profiler warm-up steps (throwaway request)."),
    active: int = typer.Option(8, "--active", min=1, help="Recorded steps, from the workload's prefill."),
    url: str = typer.Option(None, "--url", help="Capture from a running server via /start_profile instead."),
    trace_dir: Path = typer.Option(None, "--trace-dir", help="--url: the server's profiler output folder."),
) -> None:
    """Profile the bundled engine in-process (or a running server with --url) into --out."""
    from perfloop.bench.workloads import WorkloadSpec
    from perfloop.profilers.capture import CaptureError, ProfileSchedule, capture_engine, capture_url

    spec = WorkloadSpec(
        kind="random", num_prompts=num_prompts, input_len=input_len, output_len=output_len, seed=seed
    )
    try:
        if url:
            from perfloop.bench.workloads import build_requests

            # ids under 256 are valid for every served vocabulary (byte-level tokens at least)
            reqs = [
                (list(r.prompt), r.output_len)
                for r in build_requests(spec.model_copy(update={"vocab_size": 256}))
            ]
            path = capture_url(url, reqs, out, trace_dir=trace_dir, model=engine_config.model)
        else:
            sched = ProfileSchedule(wait=wait, warmup=warmup, active=active)
            path = capture_engine(engine_config, spec, out, sched)
    except UserError:
        raise
    except (CaptureError, ValueError) as e:
        _fail(str(e))
    console.print(f"trace: {path}")


@app.command()
def analyze(
    trace: Path = typer.Argument(..., help="torch-profiler trace (.json or .json.gz)."),
    out: Path = typer.Option(..., "--out", help="Output folder: <stage>/<table>.<fmt>."),
    stage: list[str] = typer.Option(None, "--stage", help="Only these stages (repeatable)."),
    fmt: str = typer.Option("md,csv,json", "--format", help="Comma-separated: md, csv, json."),
    mapping: Path = typer.Option(None, "--mapping", help="Eager mapping trace for CUDA-graph replays."),
    show_all: bool = typer.Option(False, "--all", help="Also show rows under 1% share."),
) -> None:
    """Kernel, overlap, fuse and host tables (every registered table) per stage; Markdown also prints here."""
    from perfloop.profilers.tables import analyze as run
    from perfloop.profilers.tables import table_spec
    from perfloop.profilers.trace import TraceFormatError

    formats = _formats(fmt)
    try:
        result = run(trace, out, formats, stages=stage or None, mapping_path=mapping, show_all=show_all)
    except (TraceFormatError, ValueError) as e:
        _fail(str(e))
    if "md" in formats:
        for st, tables in result.items():
            for name, rows in tables.items():
                console.print(table_spec(name).render(st, rows), markup=False)
    console.print(f"tables: {out}")


@app.command()
def pipeline(
    trace: Path = typer.Argument(..., help="torch-profiler trace (.json or .json.gz)."),
    model_config: Path = typer.Option(
        None, "--model-config", help="HF config.json (layer count for anchors)."
    ),
    stage: str = typer.Option(None, "--stage", help="Only this stage."),
    out: Path = typer.Option(None, "--out", help="Also write <table>.md/.json here."),
) -> None:
    """Forward passes, per-layer timeline, layer clusters and a layer's compute flow."""
    from perfloop.engine.models.config import ModelConfig
    from perfloop.profilers.pipeline import PIPELINE_COLUMNS, pipeline_tables
    from perfloop.profilers.render import markdown, write_table
    from perfloop.profilers.tables import load_activities
    from perfloop.profilers.trace import TraceFormatError

    try:
        cfg = ModelConfig.from_hf(json.loads(model_config.read_text())) if model_config else None
        _, acts = load_activities(trace)
        tables = pipeline_tables(acts, cfg, stage)
    except (TraceFormatError, ValueError, OSError) as e:
        _fail(str(e))
    for name, rows in tables.items():
        console.print(markdown(name, PIPELINE_COLUMNS[name], rows), markup=False)
        if out:
            write_table(out, name, name, PIPELINE_COLUMNS[name], rows, ("md", "json"))


@app.command()
def roofline(
    model: str = typer.Option(..., "--model", help="preset:NAME, model dir or config.json."),
    batch: int = typer.Option(1, "--batch", min=1, help="Sequences per step."),
    context: int = typer.Option(
        1024, "--context", min=1, help="Context length (cached tokens / prompt length)."
    ),
    gpu: str = typer.Option("h200", "--gpu", help="h200, h100, a100 or SPEC.json."),
    trace: Path = typer.Option(None, "--trace", help="Measured trace: achieved MFU/MBU per family."),
) -> None:
    """FLOPs, bytes and time floor per operator of one prefill and one decode step."""
    from perfloop.profilers.gpus import gpu_spec
    from perfloop.profilers.render import markdown
    from perfloop.profilers.roofline import (
        ACHIEVED_COLUMNS,
        ROOFLINE_COLUMNS,
        achieved,
        load_model_config,
        roofline_table,
        step_costs,
    )
    from perfloop.profilers.trace import TraceFormatError

    try:
        spec = gpu_spec(gpu)
        cfg = load_model_config(model)
        measured = _measured_per_step(trace) if trace else None
    except (TraceFormatError, ValueError) as e:
        _fail(str(e))
    costs = step_costs(cfg, batch, context, "prefill") + step_costs(cfg, batch, context, "decode")
    console.print(
        f"{spec.name}: {spec.memory_bandwidth_tbs} TB/s, {spec.bf16_tflops} TFLOPS bf16 ({spec.source})"
    )
    console.print(markdown("Roofline", ROOFLINE_COLUMNS, roofline_table(costs, spec)), markup=False)
    if measured is not None:
        console.print(markdown("Achieved", ACHIEVED_COLUMNS, achieved(costs, measured, spec)), markup=False)


def _measured_per_step(trace: Path) -> dict[tuple[str, str], float]:
    """Mean device us per step of each (stage, family) in a trace."""
    from collections import defaultdict

    from perfloop.profilers.tables import load_activities

    _, acts = load_activities(trace)
    total: dict[tuple[str, str], int] = defaultdict(int)
    steps: dict[str, set] = defaultdict(set)
    for a in acts:
        family = a.category if a.category in ("gemm", "attention") else "other"
        total[(a.stage, family)] += a.dur
        steps[a.stage].add(a.step)
    return {k: v / 1000 / max(1, len(steps[k[0]])) for k, v in total.items()}


@app.command()
def capacity(
    model: str = typer.Option(..., "--model", help="preset:NAME, model dir or config.json."),
    memory: float = typer.Option(..., "--memory", help="GB (1e9 bytes) for the KV cache."),
    block_size: int = typer.Option(16, "--block-size", min=1, help="Tokens per KV block."),
    input_len: int = typer.Option(..., "--input-len", min=1),
    output_len: int = typer.Option(..., "--output-len", min=1),
    dtype_bytes: int = typer.Option(2, "--dtype-bytes", min=1, help="KV element size (2 = bf16)."),
) -> None:
    """KV bytes per token, page-rounded blocks and the most requests that fit at once."""
    from perfloop.profilers.capacity import capacity as compute
    from perfloop.profilers.roofline import load_model_config

    try:
        cap = compute(load_model_config(model), memory, block_size, input_len, output_len, dtype_bytes)
    except ValueError as e:
        _fail(str(e))
    for key, value in cap.model_dump().items():
        console.print(f"{key}: {value}")


@app.command()
def timeline(
    result: Path = typer.Argument(..., help="perfloop bench result JSON (with its .requests.jsonl sidecar)."),
    out: Path = typer.Option(..., "--out", help="Output .perfetto-trace file."),
) -> None:
    """Per-request timeline (TTFT span, each token, in-flight count) as a Perfetto trace."""
    from perfloop.profilers.timeline import timeline_from_result, trace_processor_status

    try:
        path = timeline_from_result(result, out)
    except (ValueError, OSError) as e:
        _fail(str(e))
    console.print(f"timeline: {path} (open in ui.perfetto.dev)")
    console.print(trace_processor_status())
