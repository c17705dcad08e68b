"""`perfloop engine ...`: run, materialise and list the bundled engine's models."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from perfloop.engine.cli_options import engine_flags
from perfloop.engine.config import EngineConfig
from perfloop.terminal import make_console

app = typer.Typer(help="The bundled reference engine.", no_args_is_help=True)


def _parse_prompt_ids(raw: str) -> list[list[int]]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--prompt-ids") from exc
    if not (
        isinstance(value, list)
        and all(isinstance(p, list) and all(isinstance(t, int) for t in p) for p in value)
    ):
        raise typer.BadParameter("expected a JSON list of lists of token ids", param_hint="--prompt-ids")
    return value


@app.command()
@engine_flags
def generate(
    engine_config: EngineConfig,
    prompt: list[str] = typer.Option(None, "--prompt", help="Prompt text (repeatable)."),
    prompt_ids: str = typer.Option(None, "--prompt-ids", help="JSON list of token-id lists."),
    max_tokens: int = typer.Option(16, "--max-tokens", help="Tokens to generate per prompt."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy."),
    top_p: float = typer.Option(1.0, "--top-p"),
    top_k: int = typer.Option(0, "--top-k", help="0 = off."),
    seed: int = typer.Option(None, "--seed", help="Per-request sampling seed."),
    ignore_eos: bool = typer.Option(False, "--ignore-eos", help="Keep generating past EOS."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Generate text with the bundled engine, offline."""
    if bool(prompt) == bool(prompt_ids):
        raise typer.BadParameter("give --prompt or --prompt-ids (one of them)", param_hint="--prompt")
    prompts: list[str | list[int]] = list(prompt) if prompt else list(_parse_prompt_ids(prompt_ids))
    # imported after the cheap checks: a typo is reported without waiting for torch
    from perfloop.engine.errors import EngineInputError
    from perfloop.engine.llm import LLM
    from perfloop.engine.sampling_params import SamplingParams

    params = SamplingParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=seed,
        ignore_eos=ignore_eos,
    )
    llm = LLM(**engine_config.model_dump())
    try:
        outputs = llm.generate(prompts, params, progress=not as_json)
    except EngineInputError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"--{exc.param.replace('_', '-')}") from exc
    if as_json:
        rows = [
            {
                "prompt_token_ids": o.prompt_token_ids,
                "output_token_ids": o.output_token_ids,
                "text": o.text,
                "finish_reason": o.finish_reason,
            }
            for o in outputs
        ]
        typer.echo(json.dumps({"outputs": rows, "stats": llm.engine.stats().model_dump()}))
        return
    console = make_console()
    for o in outputs:
        console.print(f"[bold]{len(o.prompt_token_ids)} prompt tokens[/] -> {len(o.output_token_ids)} tokens "
                      f"({o.finish_reason}): {o.text!r}")  # fmt: skip
    console.print(llm.engine.stats().model_dump())


@app.command()
def materialize(
    preset: str = typer.Argument(..., help="Preset name (see `perfloop engine presets`)."),
    out: Path = typer.Option(..., "--out", help="Directory to write the HF-format model into."),
    seed: int = typer.Option(0, "--seed", help="Weight seed."),
) -> None:
    """Write a preset's seeded random weights as a Hugging Face model directory."""
    from perfloop.engine.models.presets import PRESETS
    from perfloop.engine.models.presets import materialize as write

    if preset.removeprefix("preset:") not in PRESETS:
        raise typer.BadParameter(
            f"unknown preset {preset!r}; known: {', '.join(PRESETS)}", param_hint="PRESET"
        )
    path = write(preset.removeprefix("preset:"), out, seed=seed)
    typer.echo(str(path))


@app.command()
def presets() -> None:
    """List the built-in model presets and their shapes."""
    from perfloop.engine.models.presets import PRESETS

    table = Table("preset", "architecture", "layers", "hidden", "heads/kv", "vocab", "dtype")
    for name, c in PRESETS.items():
        heads = f"{c['num_attention_heads']}/{c['num_key_value_heads']}"
        table.add_row(name, c["architectures"][0], str(c["num_hidden_layers"]), str(c["hidden_size"]), heads,
                      str(c["vocab_size"]), c["dtype"])  # fmt: skip
    make_console().print(table)
