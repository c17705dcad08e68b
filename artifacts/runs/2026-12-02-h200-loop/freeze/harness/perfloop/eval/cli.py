"""`perfloop eval ...`: task accuracy and logprob consistency of any OpenAI-compatible target."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from perfloop.errors import UserError

app = typer.Typer(
    help="Accuracy evidence: a task eval, a paired comparison, logprob consistency.", no_args_is_help=True
)
console = Console(soft_wrap=True)


def _fail(message: str) -> None:
    """A user mistake: one line on stderr, exit 2 (the `perfloop` command prints it)."""
    raise UserError(message)


def _progress(total: int):  # noqa: ANN202 - a small closure
    def show(done: int) -> None:
        if done == total or done % 10 == 0:
            print(f"eval: {done}/{total} items", file=sys.stderr, flush=True)

    return show


@app.command("tasks")
def tasks(
    url: str = typer.Option(
        None, "--url", help="Base URL of a served model (OpenAI API with echo + logprobs)."
    ),
    model: str = typer.Option(None, "--model", help="Model name the server serves."),
    hf_model: Path = typer.Option(
        None, "--hf-model", help="Score with HF transformers on this folder instead."
    ),
    items: Path = typer.Option(
        None, "--items", help="JSONL of {id, context, choices, answer}; default: shipped set."
    ),
    out: Path = typer.Option(None, "--out", help="Write the TaskEvalRecord JSON here."),
) -> None:
    """Score every item by loglikelihood; accuracy with its 95 % interval, every item kept."""
    from perfloop.eval.client import Completions, EvalError
    from perfloop.eval.items import load_items
    from perfloop.eval.tasks import hf_scorer, score_items, server_scorer, task_record

    if (url is None) == (hf_model is None):
        _fail("give exactly one of --url (with --model) or --hf-model")
    try:
        todo = load_items(items)
    except (OSError, ValueError) as exc:
        _fail(f"--items: {str(exc).splitlines()[0]}")
    if hf_model is not None:
        scorer, target = hf_scorer(hf_model), f"hf:{hf_model}"
    else:
        if not model:
            _fail("--model is required with --url")
        scorer, target = server_scorer(Completions(url, model)), f"{url} ({model})"
    try:
        record = task_record(score_items(todo, scorer, _progress(len(todo))), target)
    except EvalError as exc:
        _fail(str(exc))
    console.print(
        f"accuracy {record.accuracy:.3f} [{record.low:.3f}, {record.high:.3f}] on {record.items} items"
    )
    if out is not None:
        out.write_text(record.model_dump_json(indent=2) + "\n")


@app.command("compare")
def compare(
    baseline: Path = typer.Argument(..., help="TaskEvalRecord JSON of the baseline."),
    candidate: Path = typer.Argument(..., help="TaskEvalRecord JSON of the candidate."),
    tolerance: float = typer.Option(0.05, "--tolerance", help="Largest accepted accuracy drop (absolute)."),
    dtype: str = typer.Option(
        None, "--dtype", help="float32/bfloat16/float16: also bound loglikelihood drift."
    ),
) -> None:
    """Paired comparison: flips both ways; exits 1 on a drop beyond the tolerance or a broken baseline."""
    from perfloop.eval.paired import DRIFT, UnpairedItems, baseline_broken
    from perfloop.eval.paired import compare as paired
    from perfloop.ledger.eval_records import TaskEvalRecord

    if dtype is not None and dtype not in DRIFT:
        _fail(f"--dtype: {dtype!r} is not one of {', '.join(DRIFT)}")
    try:
        base, cand = (TaskEvalRecord.model_validate_json(p.read_text()) for p in (baseline, candidate))
        result = paired(base, cand, tolerance, DRIFT[dtype] if dtype else float("inf"))
    except (OSError, ValueError, UnpairedItems) as exc:
        _fail(str(exc).splitlines()[0])
    broken = baseline_broken(base)
    console.print(broken or result.reason)
    if broken or not result.passed:
        raise typer.Exit(1)


@app.command("consistency")
def consistency(
    url: str = typer.Option(..., "--url", help="Base URL of the served model."),
    model: str = typer.Option(..., "--model", help="Model name the server serves."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16: sets the threshold."),
    prompts: int = typer.Option(8, "--prompts", help="Seeded prompts."),
    tokens: int = typer.Option(32, "--tokens", help="Tokens generated per prompt."),
    vocab: int = typer.Option(32000, "--vocab", help="Prompt token ids are drawn below this."),
    out: Path = typer.Option(None, "--out", help="Write the ConsistencyRecord JSON here."),
) -> None:
    """Decode vs prefill, alone vs batch, cold vs prefix-cache: the same tokens' logprobs must agree."""
    from perfloop.eval.client import Completions, EvalError
    from perfloop.eval.consistency import THRESHOLDS, check_consistency

    if dtype not in THRESHOLDS:
        _fail(f"--dtype: {dtype!r} is not one of {', '.join(THRESHOLDS)}")
    try:
        record = check_consistency(
            Completions(url, model), f"{url} ({model})", dtype, prompts, 48, tokens, vocab
        )
    except EvalError as exc:
        _fail(str(exc))
    for c in record.checks:
        mark = "ok" if c.passed else "FAIL"
        console.print(
            f"{mark:4} {c.check}: max |d| {c.max_abs_diff:.2e} (p99 {c.p99_abs_diff:.2e}, mean "
            f"{c.mean_abs_diff:.2e}) over {c.tokens} tokens, {c.diverged} diverged; threshold {c.threshold:g}"
        )
    if out is not None:
        out.write_text(record.model_dump_json(indent=2) + "\n")
    if not record.passed:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
