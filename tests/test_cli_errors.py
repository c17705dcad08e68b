"""Every user mistake ends as one line naming the bad value (no traceback), and `perfloop --help` is light.

Runs the installed `perfloop` console script in a subprocess, as a user would.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from perfloop.cli import COMMANDS, load_command

BIN = Path(sys.executable).parent / "perfloop"
PERFLOOP = str(BIN) if BIN.exists() else shutil.which("perfloop") or "perfloop"
TINY = ["--model", "preset:tiny-qwen3"]


def perfloop(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the console script; fail the test if it hangs."""
    return subprocess.run([PERFLOOP, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another socket is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


GEN = ["engine", "generate", "--prompt", "x"]
# (case id, arguments, words the one-line message must contain); {tmp} is a fresh folder.
CASES = [
    ("dtype-unknown", [*GEN, *TINY, "--dtype", "fp8"], ["--dtype", "fp8", "bfloat16"]),
    ("block-size", [*GEN, *TINY, "--block-size", "0"], ["--block-size", "0"]),
    ("prompt-ids", ["engine", "generate", *TINY, "--prompt-ids", "[[1,"], ["--prompt-ids"]),
    ("option-typo", ["engine", "generate", "--modle", "x"], ["--modle", "--model"]),
    ("command-typo", ["bogus"], ["bogus"]),
    ("serve-log-level", ["serve", *TINY, "--log-level", "verbose"], ["verbose", "debug", "warning"]),
    ("serve-host", ["serve", *TINY, "--host", "no-such-host.invalid"], ["--host", "no-such-host.invalid"]),
    ("bench-dataset", ["bench", "run", *TINY, "--dataset-name", "foo"], ["foo", "shared-prefix"]),
    ("bench-rate", ["bench", "run", *TINY, "--request-rate", "fast"], ["--request-rate", "fast"]),
    ("bench-prompts", ["bench", "run", *TINY, "--num-prompts", "0"], ["num_prompts", "0"]),
    ("bench-compare", ["bench", "compare", "{tmp}/a.json", "{tmp}/b.json"], ["{tmp}/a.json"]),
    ("bench-space", ["bench", "search", "--space", "{tmp}/bad.yaml"], ["{tmp}/bad.yaml", "line 1"]),
    ("bench-pull", ["bench", "docker-preset", "vllm", "--model", "m", "--pull", "soon"], ["--pull", "soon"]),
    ("profile-gpu", ["profile", "roofline", *TINY, "--gpu", "b300x"], ["b300x", "h200"]),
    ("profile-trace", ["profile", "analyze", "{tmp}/t.json", "--out", "{tmp}/o"], ["{tmp}/t.json"]),
    ("goal-spec", ["goal", "run", "--spec", "{tmp}/goal.yaml"], ["{tmp}/goal.yaml"]),
    ("goal-run-id", ["goal", "status", "no-such-run"], ["no-such-run"]),
    ("ledger-run", ["ledger", "verify", "no-such-run"], ["no-such-run"]),
    ("ledger-out", ["ledger", "schemas", "--out", "{tmp}/file/schemas"], ["{tmp}/file"]),
    ("report-run", ["report", "no-such-run"], ["no-such-run"]),
    # these load torch before they can tell (several seconds each): slow
    ("model-missing", [*GEN, "--model", "{tmp}/nope"], ["--model", "{tmp}/nope", "preset:"]),
    ("preset-unknown", [*GEN, "--model", "preset:tiny-qwen4"], ["tiny-qwen4", "tiny-qwen3"]),
    ("device-unknown", [*GEN, *TINY, "--device", "gpu"], ["--device", "gpu", "cpu"]),
    ("materialize-out", ["engine", "materialize", "tiny-qwen3", "--out", "{tmp}/file/m"], ["{tmp}/file"]),
    ("serve-model", ["serve", "--model", "{tmp}/nope"], ["{tmp}/nope"]),
    ("bench-engine-model", ["bench", "run", "--backend", "engine", "--model", "{tmp}/nope"], ["{tmp}/nope"]),
    ("profile-capture", ["profile", "capture", "--model", "{tmp}/nope", "--out", "{tmp}/o"], ["{tmp}/nope"]),
]
SLOW = {"model-missing", "preset-unknown", "device-unknown", "materialize-out", "serve-model",
        "bench-engine-model", "profile-capture"}  # fmt: skip
PARAMS = [pytest.param(args, needles, id=name, marks=[pytest.mark.slow] if name in SLOW else [])
          for name, args, needles in CASES]  # fmt: skip


@pytest.mark.parametrize(("args", "needles"), PARAMS)
def test_user_mistake_is_one_line(args: list[str], needles: list[str], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file where a folder is expected")
    (tmp_path / "bad.yaml").write_text("launch: [1, 2\n")
    result = perfloop(*(a.format(tmp=tmp_path) for a in args), cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle.format(tmp=tmp_path) in lines[0], lines[0]
    assert "serving" not in result.stderr


def test_option_named_once(tmp_path: Path) -> None:
    line = perfloop("goal", "run", "--spec", str(tmp_path / "goal.yaml")).stderr.strip()
    assert line.count("--spec") == 1, line


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a host without CUDA")
def test_cuda_on_a_cpu_host() -> None:
    result = perfloop("engine", "generate", *TINY, "--device", "cuda", "--prompt", "x")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: --device: 'cuda'") and "cpu" in result.stderr


def test_serve_on_a_busy_port_fails_before_loading(busy_port: int) -> None:
    result, cpu = cpu_seconds("serve", *TINY, "--port", str(busy_port))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert f"--port: {busy_port}" in result.stderr and "in use" in result.stderr
    # no model load, not even the torch import (about 2 s of CPU alone)
    assert cpu < 1.0, f"{cpu:.2f} s of CPU"


@pytest.mark.slow
def test_debug_shows_the_traceback() -> None:
    result = perfloop("--debug", "engine", "generate", "--model", "preset:tiny-qwen4", "--prompt", "x")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "EngineConfigError" in result.stderr


def cpu_seconds(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the console script: its result and CPU time (not wall time: the machine may be busy)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = perfloop(*args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return result, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def test_help_is_light() -> None:
    result, cpu = cpu_seconds("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout
    assert cpu < 1.0, f"perfloop --help used {cpu:.2f} s of CPU"


@pytest.mark.parametrize(
    "args", [["goal"], ["goal", "status"], ["goal", "run"], ["report"], ["bench"], ["eval"], ["kernel"]]
)
def test_subcommand_help_is_light(args: list[str]) -> None:
    result, cpu = cpu_seconds(*args, "--help")
    assert result.returncode == 0 and "Usage: " in result.stdout, result.stderr
    assert cpu < 1.0, f"perfloop {' '.join(args)} --help used {cpu:.2f} s of CPU"


HEAVY = ("torch", "transformers", "matplotlib", "numpy", "fastapi", "uvicorn", "perfloop.loop.machine")


@pytest.mark.parametrize("module", ["perfloop.cli", *sorted({t.split(":")[0] for t, _ in COMMANDS.values()})])
def test_cli_modules_import_nothing_heavy(module: str) -> None:
    # what a command needs is imported inside it: help and light commands stay light
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_listed_help_matches_the_command(name: str) -> None:
    assert (load_command(name).help or "").strip().splitlines()[0] == COMMANDS[name][1]


def test_bare_goal_help_mentions_the_quickstart() -> None:
    result = perfloop("goal", "--help")
    assert result.returncode == 0 and "quickstart" in result.stdout


def test_help_in_a_pipe_keeps_option_names_whole() -> None:
    # typer squeezes help to 80 columns when stdout is not a terminal, cutting names to `--random-input-…`
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")}  # pytest sets 80
    result = subprocess.run([PERFLOOP, "bench", "run", "--help"], capture_output=True, text=True, env=env)
    assert result.returncode == 0
    for name in ("--random-input-len", "--random-range-ratio", "--enable-chunked-prefill"):
        assert name in result.stdout, result.stdout
