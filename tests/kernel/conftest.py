"""A small kernel task on the CPU: a matrix-vector product with a torch baseline, built in a temp folder."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

HARNESS = """
import torch

OUTPUTS = ["out"]


def make_inputs(params, device, seed):
    g = torch.Generator().manual_seed(seed)
    n, k = params["n"], params["k"]
    x = torch.randn(1, k, generator=g).to(device)
    w = torch.randn(n, k, generator=g).to(device)
    return {"x": x, "w": w, "out": torch.empty(1, n, device=device)}


def roofline(params):
    n, k = params["n"], params["k"]
    return 2.0 * n * k, 4.0 * (n * k + k + n)
"""

BASELINE = """
import torch


def kernel(x, w, out):
    torch.matmul(x, w.t(), out=out)
"""

ROWS = [
    {"id": "qkv", "params": {"n": 96, "k": 64}, "bucket": "decode/gemv/grid=12x1x1/dims=-"},
    {"id": "down", "params": {"n": 64, "k": 160}, "bucket": "decode/gemv/grid=8x1x1/dims=-"},
]
GRID = [{"n": n, "k": k} for n in (1, 7, 33) for k in (5, 64, 130)]


def candidate(body: str) -> str:
    """A candidate file with this kernel body (x, w, out in scope)."""
    return (
        "import torch\n\n\ndef kernel(x, w, out):\n"
        + textwrap.indent(textwrap.dedent(body).strip(), "    ")
        + "\n"
    )


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    root = tmp_path / "task"
    root.mkdir()
    spec = {
        "name": "matvec-cpu",
        "description": "test task",
        "baseline": {"source": "tests/kernel/conftest.py", "commit": "0" * 40},
        "tolerance": {"atol": 1e-4, "rtol": 1e-4},
        "timing": {"trials": 3, "iters": 5, "warmup": 1, "min_inner_ms": 0.1},
        "min_speedup": 1.0,
    }
    (root / "task.yaml").write_text(yaml.safe_dump(spec))
    (root / "harness.py").write_text(HARNESS)
    (root / "baseline.py").write_text(BASELINE)
    (root / "rows.json").write_text(json.dumps(ROWS))
    (root / "grid.json").write_text(json.dumps(GRID))
    return root


@pytest.fixture
def write_candidate(tmp_path: Path):
    def write(name: str, body: str) -> Path:
        path = tmp_path / f"{name}.py"
        path.write_text(candidate(body))
        return path

    return write
