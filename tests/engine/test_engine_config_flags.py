"""Engine flags come from EngineConfig's fields alone: CLI options, launch strings and back."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from perfloop.bench.targets import engine_launch, parse_engine_flags, parse_target
from perfloop.engine.cli_options import engine_flags
from perfloop.engine.config import EngineConfig, flag_fields, flag_name
from perfloop.loop.launch import target_launch
from perfloop.loop.spec import TargetSpec

EVERY_FLAG_OFF_DEFAULT = EngineConfig(
    model="/models/my model",  # a space: launch strings must quote it
    dtype="bfloat16",
    device="cuda:1",
    block_size=32,
    num_kv_blocks=100,
    gpu_memory_utilization=0.5,
    max_num_seqs=8,
    max_num_batched_tokens=512,
    max_model_len=1024,
    enable_prefix_caching=False,
    enable_chunked_prefill=False,
    attention_backend="torch",
    enforce_eager=True,
    torch_threads=3,
)


@pytest.mark.parametrize("config", [EngineConfig(model="preset:tiny-qwen3"), EVERY_FLAG_OFF_DEFAULT])
def test_from_flags_of_to_flags_is_the_same_config(config: EngineConfig) -> None:
    assert EngineConfig.from_flags(config.to_flags()) == config
    assert parse_engine_flags(engine_launch(config).removeprefix("engine:")) == config


def test_every_flag_field_is_covered_off_its_default() -> None:
    off = {n for n in flag_fields() if getattr(EVERY_FLAG_OFF_DEFAULT, n) != flag_fields()[n].default}
    assert off == set(flag_fields())  # a new field must join the round trip above


def test_launch_strings_carry_only_what_differs_from_the_defaults() -> None:
    config = EngineConfig(model="preset:tiny-qwen3", enable_prefix_caching=False, max_num_seqs=4)
    assert (
        engine_launch(config)
        == "engine:--model preset:tiny-qwen3 --max-num-seqs 4 --no-enable-prefix-caching"
    )
    target = parse_target(engine_launch(EVERY_FLAG_OFF_DEFAULT))
    assert target.kind == "engine" and parse_engine_flags(target.value).model == "/models/my model"


def test_the_loop_launches_a_committed_engine_config_the_same_way(tmp_path: Path) -> None:
    (tmp_path / "engine.yaml").write_text("model: preset:tiny-qwen3\nmax_num_seqs: 4\ntorch_threads: 1\n")
    spec = TargetSpec.model_construct(engine_config_file="engine.yaml")  # the launch needs no more
    launch = target_launch(spec, tmp_path)
    assert launch == "engine:--model preset:tiny-qwen3 --max-num-seqs 4 --torch-threads 1"


def test_a_command_gets_every_flag_and_a_shared_one_reaches_both() -> None:
    seen: dict[str, object] = {}
    app = typer.Typer()

    @app.command()
    @engine_flags
    def cmd(
        engine_config: EngineConfig, torch_threads: int | None = typer.Option(None, "--torch-threads")
    ) -> None:
        seen.update(config=engine_config, threads=torch_threads)

    words = EVERY_FLAG_OFF_DEFAULT.to_flags()
    result = CliRunner().invoke(app, words)
    assert result.exit_code == 0, result.output
    assert seen == {"config": EVERY_FLAG_OFF_DEFAULT, "threads": 3}
    help_text = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert all(flag_name(n) in help_text for n in flag_fields())
    assert "--no-enforce-eager" in help_text and "--seed" not in help_text  # seed is no flag


@pytest.mark.parametrize(
    ("words", "named"),
    [
        (["--model", "m", "--dtype", "fp8"], "--dtype"),
        (["--model", "m", "--block-size", "0"], "--block-size"),
        (["--model", "m", "--bogus"], "--bogus"),
        (["--dtype", "float32"], "--model"),
    ],
)
def test_bad_flags_give_one_line_naming_the_flag(words: list[str], named: str) -> None:
    with pytest.raises(ValueError, match=named) as info:
        EngineConfig.from_flags(words)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("command", [["engine", "generate"], ["serve"], ["bench", "run"]])
def test_every_command_that_starts_an_engine_takes_every_flag(command: list[str]) -> None:
    from perfloop.cli import app

    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert [flag_name(n) for n in flag_fields() if flag_name(n) not in result.output] == []
