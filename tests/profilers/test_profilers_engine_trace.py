"""Tables from a CPU trace of the bundled engine, captured by the test itself."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from perfloop.profilers.capture import CaptureMeta
from perfloop.profilers.tables import TABLES, load_activities, step_events, table_spec


def test_capture_writes_trace_and_meta(engine_trace: Path) -> None:
    meta = CaptureMeta.model_validate_json((engine_trace.parent / "meta.json").read_text())
    assert engine_trace.name == "trace.json.gz" and engine_trace.stat().st_size > 0
    assert meta.engine_config["model"] == "preset:tiny-qwen3"
    assert meta.mapping_trace is None  # CPU: no CUDA graphs, no mapping trace
    assert meta.environment["torch"]


def test_exact_columns_in_every_format(engine_tables: tuple[Path, dict]) -> None:
    out, result = engine_tables
    for stage, tables in result.items():
        assert list(tables) == [t.name for t in TABLES]
        for name, rows in tables.items():
            columns = table_spec(name).shown
            keys = [c.key for c in columns]
            assert rows, f"{stage}/{name} is empty"
            assert all(set(keys) <= set(r) and list(r) == list(rows[0]) for r in rows)
            assert json.loads((out / stage / f"{name}.json").read_text()) == rows
            with open(out / stage / f"{name}.csv") as f:
                assert next(csv.reader(f)) == keys
            header = (out / stage / f"{name}.md").read_text().splitlines()[2]
            assert header == "| " + " | ".join(c.header for c in columns) + " |"


def test_rows_are_typed_and_units_are_in_the_labels(engine_tables: tuple[Path, dict]) -> None:
    out, result = engine_tables
    kernels = result["decode"]["kernel_table"]
    assert all(isinstance(r["time_ms"], float) and isinstance(r["launches"], int) for r in kernels)
    assert all(isinstance(v, int | float) for r in result["decode"]["overlap_table"] for v in _numbers(r))
    assert all(isinstance(r["count"], int) for r in result["decode"]["host_table"])
    header = (out / "decode" / "kernel_table.md").read_text().splitlines()[2]
    assert "| Time (ms) | Share (%) | Launches |" in header
    assert "| Time (ms) | Share (%) |" in (out / "decode" / "overlap_table.md").read_text()
    assert "(site share " in (out / "decode" / "kernel_table.md").read_text()
    # counts render as integers, never "4.00"
    launches = [
        line.split(" | ")[4] for line in (out / "decode" / "kernel_table.md").read_text().splitlines()[4:]
    ]
    assert launches == [str(r["launches"]) for r in kernels]


def _numbers(row: dict) -> list:
    return [row[k] for k in ("time_ms", "share_pct", "exclusive_pct", "hidden_pct")]


def test_every_row_has_a_stable_id(engine_tables: tuple[Path, dict]) -> None:
    _, result = engine_tables
    for stage, tables in result.items():
        for name, rows in tables.items():
            ids = [r["row_id"] for r in rows]
            assert len(set(ids)) == len(ids)
            assert all(i.startswith(f"{stage}/{name}/") and " " not in i for i in ids)
    kernels = result["decode"]["kernel_table"]
    assert {f"decode/kernel_table/{r['kernel']}" for r in kernels if not r["folded"]} <= {
        r["row_id"] for r in kernels
    }
    verdict = result["decode"]["host_table"][-1]
    assert verdict["row_id"] == f"decode/host_table/verdict:{verdict['item']}"


def test_shares_add_up_to_the_stage_time(engine_tables: tuple[Path, dict]) -> None:
    _, result = engine_tables
    for tables in result.values():
        assert abs(sum(r["share_pct"] for r in tables["kernel_table"]) - 100) < 0.1
        assert abs(sum(r["share_pct"] for r in tables["fuse_table"]) - 100) < 0.1
        assert abs(sum(r["share_pct"] for r in tables["overlap_table"]) - 100) < 0.1
        device = [r for r in tables["host_table"] if r["section"] == "device"]
        assert abs(sum(r["share_pct"] for r in device) - 100) < 0.1


def test_small_rows_are_folded(engine_tables: tuple[Path, dict]) -> None:
    _, result = engine_tables
    for tables in result.values():
        shown = [r for r in tables["kernel_table"] if not r["folded"]]
        assert all(r["share_pct"] >= 1.0 for r in shown)


def test_stage_split_matches_engine_annotations(engine_trace: Path, engine_tables: tuple[Path, dict]) -> None:
    trace, acts = load_activities(engine_trace)
    annotated = {e.name.split()[0].removeprefix("perfloop.step.") for e in step_events(trace)}
    assert annotated == {"prefill", "decode"}
    assert set(engine_tables[1]) == annotated
    steps = step_events(trace)
    for a in acts:
        assert a.stage == steps[a.step].name.split()[0].removeprefix("perfloop.step.")


def test_python_locations_point_into_the_engine(engine_trace: Path) -> None:
    _, acts = load_activities(engine_trace)
    total = sum(a.dur for a in acts)
    in_engine = sum(a.dur for a in acts if a.site.startswith("perfloop/engine/"))
    assert in_engine / total > 0.9
    assert re.fullmatch(
        r"perfloop/engine/\S+\.py:\d+ \w+", next(a.site for a in acts if a.category == "gemm")
    )


def test_kernel_table_names_the_engine_hot_spot(engine_tables: tuple[Path, dict]) -> None:
    _, result = engine_tables
    top = result["decode"]["kernel_table"][0]
    assert top["launches"] > 0 and top["time_ms"] > 0
    assert any(s["site"].startswith("perfloop/engine/") for s in top["python_sites"])
    assert 0 < top["python_sites"][0]["share_pct"] <= 100


def test_host_table_shows_steps_and_a_verdict(engine_tables: tuple[Path, dict]) -> None:
    _, result = engine_tables
    host = result["decode"]["host_table"]
    assert any(r["section"] == "step" and "perfloop.step.decode" in r["item"] for r in host)
    assert host[-1]["section"] == "verdict"
    assert host[-1]["item"] in {"launch-bound", "host-bound", "device-bound"}
