"""`perfloop bench ...`: run, ab, compare, search, plot."""

from __future__ import annotations

import functools
import inspect
import json
import math
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import typer
from pydantic import ValidationError
from rich.table import Table

from perfloop.engine.cli_options import engine_flags
from perfloop.engine.config import EngineConfig
from perfloop.errors import UserError, describe_validation
from perfloop.terminal import make_console

app = typer.Typer(help="Fair serving benchmark.", no_args_is_help=True)
console = make_console()

# Options shared by `run` and `ab` (Typer reads these as parameter metadata).
DATASET = typer.Option("random", "--dataset-name", help="random, shared-prefix, sharegpt or standard.")
NUM_PROMPTS = typer.Option(100, "--num-prompts", help="random/sharegpt: requests.")
INPUT_LEN = typer.Option(1024, "--random-input-len", help="random: input tokens.")
OUTPUT_LEN = typer.Option(128, "--random-output-len", help="random/sharegpt: output tokens.")
RANGE_RATIO = typer.Option(0.0, "--random-range-ratio", help="random: lengths from len*(1-r) to len*(1+r).")
PREFIX_LEN = typer.Option(0, "--random-prefix-len", help="random: shared random prefix tokens.")
GROUPS = typer.Option(64, "--gsp-num-groups", help="shared-prefix: groups.")
PER_GROUP = typer.Option(16, "--gsp-prompts-per-group", help="shared-prefix: prompts per group.")
SYSTEM_LEN = typer.Option(2048, "--gsp-system-prompt-len", help="shared-prefix: system prompt tokens.")
QUESTION_LEN = typer.Option(128, "--gsp-question-len", help="shared-prefix: question tokens.")
GSP_OUTPUT = typer.Option(256, "--gsp-output-len", help="shared-prefix: output tokens.")
DATASET_PATH = typer.Option(None, "--dataset-path", help="sharegpt: local ShareGPT JSON.")
VOCAB = typer.Option(None, "--vocab-size", help="Token-id range; default from the model's config.")
SEED = typer.Option(0, "--seed", help="Seed of the workload and the arrivals.")
RATE = typer.Option("inf", "--request-rate", help="Requests/s, or inf for all at once.")
BURST = typer.Option(1.0, "--burstiness", help="Gamma shape of arrival gaps; 1.0 = Poisson.")
CONCURRENCY = typer.Option(None, "--max-concurrency", help="Most requests in flight.")
WARMUPS = typer.Option(1, "--num-warmups", help="Unmeasured warm-up requests.")
THREADS = typer.Option(None, "--torch-threads", help="torch threads for in-process backends.")
NO_EOS = typer.Option(True, "--ignore-eos/--no-ignore-eos", help="Generate exactly the asked lengths.")
ALLOW_PRECISION = typer.Option(
    False, "--allow-precision-mismatch", help="Compare sides serving different weight precisions (labelled)."
)


# name -> (type, option) of every option above, in the order `--help` lists them.
SHARED: dict[str, tuple[Any, Any]] = {
    "dataset": (str, DATASET),
    "num_prompts": (int, NUM_PROMPTS),
    "input_len": (int, INPUT_LEN),
    "output_len": (int, OUTPUT_LEN),
    "range_ratio": (float, RANGE_RATIO),
    "prefix_len": (int, PREFIX_LEN),
    "groups": (int, GROUPS),
    "per_group": (int, PER_GROUP),
    "system_len": (int, SYSTEM_LEN),
    "question_len": (int, QUESTION_LEN),
    "gsp_output": (int, GSP_OUTPUT),
    "dataset_path": (str | None, DATASET_PATH),
    "vocab": (int | None, VOCAB),
    "seed": (int, SEED),
    "request_rate": (str, RATE),
    "burstiness": (float, BURST),
    "max_concurrency": (int | None, CONCURRENCY),
    "num_warmups": (int, WARMUPS),
    "torch_threads": (int | None, THREADS),
    "ignore_eos": (bool, NO_EOS),
}


def bench_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command every SHARED option (declared once, here); it receives them as `opts`."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    own = [p.replace(kind=keyword) for p in inspect.signature(fn).parameters.values() if p.name != "opts"]
    extra = [inspect.Parameter(n, keyword, default=opt, annotation=kind) for n, (kind, opt) in SHARED.items()]

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        opts = SimpleNamespace(**{name: kwargs.pop(name) for name in SHARED})
        return fn(opts=opts, **kwargs)

    wrapper.__signature__ = inspect.signature(fn).replace(parameters=own + extra)  # type: ignore[attr-defined]
    return wrapper


def _fail(message: str) -> UserError:
    """The error to raise for a bad option: `perfloop` prints it as one line on stderr and exits 2."""
    return UserError(message)


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _fail(f"--request-rate: expected a number or inf, got {text!r}") from None
    if value <= 0:
        raise _fail("--request-rate: must be > 0 (inf for all at once)")
    return value


def _goodput(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    slos: dict[str, float] = {}
    for item in text.replace(",", " ").split():
        name, _, value = item.partition(":")
        if name not in ("ttft", "tpot", "e2el"):
            raise _fail(f"--goodput: unknown metric {name!r} (ttft, tpot, e2el)")
        try:
            slos[name] = float(value)
        except ValueError:
            raise _fail(f"--goodput: {item!r} is not METRIC:MS") from None
    return slos


def _workload(opts: SimpleNamespace) -> Any:
    from perfloop.bench.workloads import WorkloadSpec

    kw = vars(opts)
    kind = kw["dataset"]
    output_len = kw["gsp_output"] if kind == "shared-prefix" else kw["output_len"]
    try:
        return WorkloadSpec(
            kind=kind,
            seed=kw["seed"],
            num_prompts=kw["num_prompts"],
            input_len=kw["input_len"],
            output_len=output_len,
            range_ratio=kw["range_ratio"],
            prefix_len=kw["prefix_len"],
            vocab_size=kw["vocab"],
            num_groups=kw["groups"],
            prompts_per_group=kw["per_group"],
            system_prompt_len=kw["system_len"],
            question_len=kw["question_len"],
            dataset_path=kw["dataset_path"],
            ignore_eos=kw["ignore_eos"],
        )
    except ValidationError as exc:
        raise _fail(f"workload: {describe_validation(exc, flag=False)}") from None


def _launch(backend: str, url: str | None, launch: str | None, config: EngineConfig, hf_mode: str) -> str:
    from perfloop.bench.targets import engine_launch

    if backend == "openai":
        if bool(url) == bool(launch):
            raise _fail("--backend openai: give exactly one of --url or --launch")
        return url or launch or ""
    if backend == "engine":
        return engine_launch(config)
    if backend == "hf":
        if hf_mode not in ("generate_batch", "generate"):
            raise _fail(f"--hf-mode: expected generate_batch or generate, got {hf_mode!r}")
        return f"hf:{config.model} --hf-mode {hf_mode}"
    raise _fail(f"--backend: expected openai, engine or hf, got {backend!r}")


def _default_output(backend: str, rate: float, concurrency: int | None, model: str) -> str:
    tag = "inf" if math.isinf(rate) else f"{rate:g}"
    conc = f"-concurrency{concurrency}" if concurrency else ""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model)
    return f"{backend}-{tag}qps{conc}-{safe}-{datetime.now():%Y%m%d-%H%M%S}.json"


def _number(value: float | int | None) -> str:
    """A count as an integer, a rate or a latency with two decimals, a missing value as '-'."""
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def _summary(result: Any) -> Table:
    table = Table(title=f"perfloop bench: {result.backend} {result.model_id}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    keys = [
        "duration",
        "completed",
        "failed",
        "total_input_tokens",
        "total_output_tokens",
        "request_throughput",
        "request_goodput",
        "output_throughput",
        "total_token_throughput",
        "mean_ttft_ms",
        "median_ttft_ms",
        "p99_ttft_ms",
        "mean_tpot_ms",
        "median_tpot_ms",
        "p99_tpot_ms",
        "mean_itl_ms",
        "p99_itl_ms",
        "mean_e2el_ms",
        "p99_e2el_ms",
    ]
    for key in keys:
        value = getattr(result, key)
        table.add_row(key, _number(value))
    lengths = result.perfloop.output_lengths
    table.add_row(
        "output lengths achieved", "yes" if lengths.all_achieved else f"NO ({lengths.mismatched_requests})"
    )
    return table


@app.command()
@engine_flags
@bench_options
def run(
    engine_config: EngineConfig,
    opts: SimpleNamespace,
    backend: str = typer.Option("engine", "--backend", help="openai, engine or hf."),
    url: str | None = typer.Option(None, "--url", help="openai: base URL of a running server."),
    launch: str | None = typer.Option(
        None, "--launch", help="openai: server command with {port}, or docker:IMAGE."
    ),
    hf_mode: str = typer.Option("generate_batch", "--hf-mode", help="hf: generate_batch or generate."),
    served_model_name: str | None = typer.Option(None, "--served-model-name", help="openai: model name."),
    goodput: str | None = typer.Option(
        None, "--goodput", help="SLOs, e.g. 'ttft:300 tpot:50 e2el:2000' (ms)."
    ),
    label: str | None = typer.Option(None, "--label", help="Result label."),
    output: str | None = typer.Option(None, "--output", help="Result JSON path (sidecar JSONL next to it)."),
    health_timeout: float = typer.Option(600.0, "--health-timeout", help="Seconds to wait for /health."),
    server_log: str | None = typer.Option(None, "--server-log", help="Where a launched server logs."),
    target_repo: str | None = typer.Option(None, "--target-repo", help="Git tree of the target (commit)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    max_failed: int = typer.Option(
        0, "--max-failed", min=0, help="Failed requests tolerated; more exits 1 and marks the result invalid."
    ),
) -> None:
    """Benchmark one target; writes a vLLM-compatible result JSON with perfloop fingerprints."""
    from perfloop.bench.runner import BenchSpec, run_benchmark

    spec_launch = _launch(backend, url, launch, engine_config, hf_mode)
    workload = _workload(opts)
    rate = _rate(opts.request_rate)
    out = output or _default_output(backend, rate, opts.max_concurrency, engine_config.model)
    try:
        spec = BenchSpec(
            launch=spec_launch,
            workload=workload,
            request_rate=rate,
            burstiness=opts.burstiness,
            max_concurrency=opts.max_concurrency,
            seed=opts.seed,
            num_warmups=opts.num_warmups,
            goodput_slos_ms=_goodput(goodput),
            label=label,
            model_id=served_model_name or (engine_config.model if backend == "openai" else None),
            health_timeout=health_timeout,
            torch_threads=opts.torch_threads,
            target_repo=target_repo,
            output=out,
            server_log=server_log,
            progress=progress,
            max_failed=max_failed,
        )
        result = run_benchmark(spec)
    except UserError:
        raise
    except (ValueError, RuntimeError) as exc:
        raise _fail(str(exc)) from None
    console.print(_summary(result))
    console.print(f"result: {out}")
    if result.perfloop.interrupted:
        console.print("[yellow]interrupted: saved the requests that finished[/]")
        raise typer.Exit(code=130)
    if not result.perfloop.valid:
        console.print(
            f"[bold red]error:[/] {result.failed} of {result.num_prompts} requests failed "
            f"(--max-failed {max_failed}); the result is marked invalid"
        )
        for line in result.perfloop.failures:
            console.print(f"  {line}")
        raise typer.Exit(code=1)


@app.command()
@bench_options
def ab(
    opts: SimpleNamespace,
    a: str = typer.Option(
        ..., "--a", help="Launch spec A (URL, command with {port}, engine:FLAGS, hf:MODEL, docker:IMAGE)."
    ),
    b: str | None = typer.Option(None, "--b", help="Launch spec B."),
    aa: bool = typer.Option(False, "--aa", help="Run A against itself: the noise band."),
    trials: int = typer.Option(5, "--trials", help="Pairs of runs."),
    threshold: float = typer.Option(0.0, "--threshold", help="Minimum effect, e.g. 0.02 for 2%."),
    out: str = typer.Option("ab.json", "--output", help="ABResult JSON path; trial results go beside it."),
    allow_precision_mismatch: bool = ALLOW_PRECISION,
) -> None:
    """Interleaved A/B trials: median B/A ratio per metric with a bootstrap 95% interval and a verdict."""
    from perfloop.bench.ab import run_ab

    if not aa and b is None:
        raise _fail("--b: give the B launch spec, or --aa")
    workload = _workload(opts)
    out_path = Path(out)
    trial_dir = out_path.with_name(out_path.stem + "-trials")
    try:
        result = run_ab(
            a,
            b,
            workload,
            trials=trials,
            seed=opts.seed,
            aa=aa,
            threshold=threshold,
            out_dir=trial_dir,
            request_rate=_rate(opts.request_rate),
            burstiness=opts.burstiness,
            max_concurrency=opts.max_concurrency,
            num_warmups=opts.num_warmups,
            torch_threads=opts.torch_threads,
            progress=False,
            allow_precision_mismatch=allow_precision_mismatch,
        )
    except (ValueError, RuntimeError) as exc:
        raise _fail(str(exc)) from None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(result.model_dump_json(indent=2) + "\n")
    title = f"bench ab: B/A over {trials} interleaved pairs" + (" (A/A)" if aa else "")
    if result.precision_note:
        title += f"\n[bold red]{result.precision_note}[/]"
    table = Table(title=title)
    for col in ("metric", "A median", "B median", "B/A median", "95% CI", "verdict for B"):
        table.add_column(col, justify="left" if col in ("metric", "verdict for B") else "right")
    import statistics

    for m in result.metrics.values():
        table.add_row(
            m.metric,
            f"{statistics.median(m.a_values):,.2f}",
            f"{statistics.median(m.b_values):,.2f}",
            f"{m.median_ratio:.3f}",
            f"[{m.ci_low:.3f}, {m.ci_high:.3f}]",
            m.verdict,
        )
    console.print(table)
    console.print(f"result: {out_path}")


@app.command()
def compare(
    results: list[Path] = typer.Argument(..., help="Result JSON files; the first is the reference."),
    force: bool = typer.Option(False, "--force", help="Compare different workloads anyway (marked unfair)."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    allow_precision_mismatch: bool = ALLOW_PRECISION,
) -> None:
    """Side-by-side table with ratios to the first result; refuses different workloads or precisions."""
    from perfloop.bench.compare import UnfairComparison, compare_results, render

    try:
        comparison = compare_results(results, force=force, allow_precision_mismatch=allow_precision_mismatch)
    except UnfairComparison as exc:
        raise _fail(str(exc)) from None
    except (ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        print(comparison.model_dump_json(indent=2))
    else:
        console.print(render(comparison))


@app.command()
def search(
    space: Path = typer.Option(..., "--space", help="space.yaml: launch, workload, bench, metric, knobs."),
    out_dir: Path = typer.Option(Path("bench-search"), "--out-dir", help="Trials and results.jsonl go here."),
) -> None:
    """Bounded search over launch flags; resumable (finished trials are skipped)."""
    import yaml

    from perfloop.bench.search import load_space, run_search

    try:
        parsed = load_space(space)
    except ValidationError as exc:
        raise _fail(f"{space}: {describe_validation(exc, flag=False)}") from None
    except (ValueError, OSError, yaml.YAMLError) as exc:
        raise _fail(f"{space}: {exc}") from None

    def show(trial: Any) -> None:
        value = "-" if trial.value is None else f"{trial.value:,.2f}"
        console.print(f"[{trial.status}] {trial.launch}  {parsed.metric}={value}")

    trials = run_search(parsed, out_dir, on_trial=show)
    table = Table(title=f"bench search: {parsed.metric}")
    for col in ("status", "flags", parsed.metric, "error"):
        table.add_column(col)
    for t in trials:
        flags = json.dumps(t.flags) if t.flags else "(baseline)"
        table.add_row(t.status, flags, "-" if t.value is None else f"{t.value:,.2f}", (t.error or "")[:60])
    console.print(table)
    console.print(f"results: {out_dir / 'results.jsonl'}")


@app.command()
def plot(
    results: list[Path] = typer.Argument(..., help="Result JSON files (with their sidecars)."),
    out_dir: Path = typer.Option(Path("bench-plots"), "--out-dir", help="Where the PNGs go."),
) -> None:
    """Latency CDFs (TTFT, TPOT, E2E) and throughput bars as PNGs."""
    from perfloop.bench.plot import plot_results

    try:
        files = plot_results(results, out_dir)
    except (ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    for f in files:
        console.print(f"wrote {f}")


@app.command()
def cleanup(
    run_id: str | None = typer.Option(None, "--run-id", help="Only this run's containers."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List them, remove nothing."),
) -> None:
    """Remove containers perfloop started (label perfloop.managed=1) that a crashed run left behind."""
    from perfloop.bench.docker.cleanup import managed_containers, remove_managed
    from perfloop.bench.launcher import LaunchError

    try:
        found = managed_containers(run_id) if dry_run else remove_managed(run_id)
    except LaunchError as exc:
        raise _fail(str(exc)) from None
    verb = "found" if dry_run else "removed"
    for c in found:
        console.print(f"{verb} {c.name} ({c.image}, {c.status}, run {c.run_id})")
    console.print(f"{len(found)} container(s) {verb}")


@app.command("docker-preset")
def docker_preset(
    framework: str = typer.Argument(..., help="vllm or sglang."),
    model: str = typer.Option(..., "--model", help="Hugging Face id or a path inside the container."),
    image: str | None = typer.Option(None, "--image", help="Image; default the official :latest."),
    tp: int = typer.Option(1, "--tensor-parallel-size", "--tp", help="GPUs per model (tensor parallel)."),
    memory_fraction: float | None = typer.Option(
        None, "--memory-fraction", help="vLLM --gpu-memory-utilization / SGLang --mem-fraction-static."
    ),
    prefix_caching: bool = typer.Option(True, "--prefix-caching/--no-prefix-caching", help="Prefix cache."),
    gpus: str = typer.Option("all", "--gpus", help="all, a count, or device=0,1."),
    hf_cache: str = typer.Option("~/.cache/huggingface", "--hf-cache", help="Host model cache to mount."),
    pull: str = typer.Option("missing", "--pull", help="never, missing or always."),
    as_json: bool = typer.Option(False, "--json", help="Print the container configuration as JSON."),
) -> None:
    """Print a docker: launch spec for vLLM's or SGLang's OpenAI server (use it as --a/--b or a peer)."""
    from perfloop.bench.docker.presets import PresetOptions, preset_launch
    from perfloop.bench.docker.spec import parse_docker_spec

    if framework not in ("vllm", "sglang"):
        raise _fail(f"framework: expected vllm or sglang, got {framework!r}")
    try:
        opts = PresetOptions(
            model=model,
            image=image,
            tensor_parallel_size=tp,
            memory_fraction=memory_fraction,
            prefix_caching=prefix_caching,
            gpus=gpus,
            hf_cache=hf_cache,
            pull=pull,  # type: ignore[arg-type]
        )
        launch = preset_launch(framework, opts)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise _fail(describe_validation(exc)) from None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        print(parse_docker_spec(launch.removeprefix("docker:")).model_dump_json(indent=2))
    else:
        print(launch)


@app.command("chat-prompts")
def chat_prompts(
    model: str = typer.Option(..., "--model", help="Model whose tokenizer sizes and chat template renders."),
    out: Path = typer.Option(..., "--out", help="ShareGPT-format JSON file to write."),
    num_prompts: int = typer.Option(16, "--num-prompts", help="How many prompts."),
    min_tokens: int = typer.Option(128, "--min-tokens", help="Shortest prompt, in the model's tokens."),
    max_tokens: int = typer.Option(512, "--max-tokens", help="Longest prompt, in the model's tokens."),
    seed: int = typer.Option(0, "--seed", help="Seed of the prompt draw."),
) -> None:
    """Write deterministic real-text chat prompts for text workloads (peers that take no token ids)."""
    from perfloop.bench.chat_prompts import ChatDatasetError, write_chat_dataset

    try:
        path = write_chat_dataset(model, out, num_prompts, min_tokens, max_tokens, seed)
    except (ChatDatasetError, FileNotFoundError, RuntimeError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"wrote {num_prompts} chat prompts: {path}")
