"""The table registry (one entry adds a table) and stable row ids (names, not positions)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import CUDA_TRACE
from typer.testing import CliRunner

from perfloop.cli import app
from perfloop.profilers import tables
from perfloop.profilers.rows import columns, is_empty, parse_cites, profile_rows, row_id, with_ids

runner = CliRunner()


def test_a_registered_table_appears_in_every_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tables.TableSpec(
        name="launch_count",
        title="Launch Count Table",
        columns=columns("kernel", "launches", "time_ms"),
        fn=lambda s: [{"kernel": "all kernels", "launches": len(s.acts), "time_ms": 1.5}],
    )
    monkeypatch.setattr(tables, "TABLES", [*tables.TABLES, spec])
    res = runner.invoke(app, ["profile", "analyze", str(CUDA_TRACE), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "##### Launch Count Table (decode)" in res.output
    assert "| Kernel | Launches | Time (ms) | Row id |" in res.output
    assert "| all kernels | 4 | 1.5 | decode/launch_count/all_kernels |" in res.output
    assert "| all kernels | 4 | 1.5 |" in (tmp_path / "decode" / "launch_count.md").read_text()
    with open(tmp_path / "decode" / "launch_count.csv") as f:
        assert list(csv.reader(f)) == [
            ["kernel", "launches", "time_ms", "row_id"],
            ["all kernels", "4", "1.5", "decode/launch_count/all_kernels"],
        ]
    rows = json.loads((tmp_path / "decode" / "launch_count.json").read_text())
    assert rows == [
        {"row_id": "decode/launch_count/all_kernels", "kernel": "all kernels", "launches": 4, "time_ms": 1.5}
    ]


def test_row_ids_name_the_row_not_its_position() -> None:
    key = lambda row: row["kernel"]  # noqa: E731
    round1 = with_ids("decode", "kernel_table", [{"kernel": "aten::index"}, {"kernel": "aten::linear"}], key)
    round2 = with_ids("decode", "kernel_table", [{"kernel": "aten::linear"}, {"kernel": "aten::index"}], key)
    by_name = {r["kernel"]: r["row_id"] for r in round1}
    assert {r["kernel"]: r["row_id"] for r in round2} == by_name
    assert by_name["aten::linear"] == "decode/kernel_table/aten::linear"
    assert row_id("d", "t", "aten::index_put_") != row_id("d", "t", "aten::index_put")
    twice = with_ids("decode", "t", [{"kernel": "a b"}, {"kernel": "a  b"}], key)
    assert [r["row_id"] for r in twice] == ["decode/t/a_b", "decode/t/a_b~2"]


def test_long_kernel_names_keep_a_prefix_and_a_hash() -> None:
    name = "void at::native::vectorized_elementwise_kernel<4, " + "x" * 200 + ">"
    rid = row_id("decode", "kernel_table", name)
    assert rid == row_id("decode", "kernel_table", name) != row_id("decode", "kernel_table", name + "y")
    assert len(rid) < 130 and " " not in rid and "," not in rid
    assert rid.startswith("decode/kernel_table/void_at::native::vectorized_elementwise_kernel<4_x")


def test_cites_are_parsed_from_a_trailer() -> None:
    text = "decode/kernel_table/aten::mm, `engine/engine_stats/counters` decode/host_table/verdict:host-bound"
    assert parse_cites(text) == [
        "decode/kernel_table/aten::mm",
        "engine/engine_stats/counters",
        "decode/host_table/verdict:host-bound",
    ]
    assert parse_cites("nothing here, decode/kernel_table") == []


def test_profile_rows_and_emptiness() -> None:
    rows = {"decode": {"host_table": [{"row_id": "decode/host_table/launch:graph_launches", "count": 0}]}}
    assert list(profile_rows(rows)) == ["decode/host_table/launch:graph_launches"]
    assert is_empty({"time_ms": 0.0, "count": 0, "folded": True, "item": "x"})
    assert not is_empty({"time_ms": 0.0, "count": 2})
