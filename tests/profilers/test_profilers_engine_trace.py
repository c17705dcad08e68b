"""Tables from a CPU trace of the bundled engine, captured by the test itself."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from perfloop.profilers.capture import CaptureMeta
from perfloop.profilers.tables import TABLE_COLUMNS, load_activities, step_events


def test_capture_writes_trace_and_meta(engine_trace: Path) -> None:
    meta = CaptureMeta.model_validate_json((engine_trace.parent / "meta.json").read_text())
    assert engine_trace.name == "trace.json.gz" and engine_trace.stat().st_size > 0
    assert meta.engine_config["model"] == "preset:tiny-qwen3"
    assert meta.mapping_trace is None  # CPU: no CUDA graphs, no mapping trace
    assert meta.environment["torch"]


def test_exact_columns_in_every_format(engine_tables: tuple[Path, dict]) -> None:
    out, result = engine_tables
    for stage, tables in result.items():
        for name, rows in tables.items():
            columns = list(TABLE_COLUMNS[name])
            assert rows, f"{stage}/{name} is empty"
            assert all(list(r) == columns for r in rows)
            assert [list(r) for r in json.loads((out / stage / f"{name}.json").read_text())][0] == columns
            with open(out / stage / f"{name}.csv") as f:
                assert next(csv.reader(f)) == columns
            header = (out / stage / f"{name}.md").read_text().splitlines()[2]
            assert header == "| " + " | ".join(columns) + " |"


def test_shares_add_up_to_the_stage_time(engine_tables: tuple[Path, dict]) -> None:
    _, result = engine_tables
    for tables in result.values():
        assert abs(sum(r["Share"] for r in tables["kernel_table"]) - 100) < 0.1
        assert abs(sum(r["Share"] for r in tables["fuse_table"]) - 100) < 0.1
        overlap = [
            float(re.search(r"share ([\d.]+)%", r["Formal signal"]).group(1)) for r in tables["overlap_table"]
        ]
        assert abs(sum(overlap) - 100) < 0.1
        device = [r for r in tables["host_table"] if r["Section"] == "device"]
        assert abs(sum(r["Share"] for r in device) - 100) < 0.1


def test_small_rows_are_folded(engine_tables: tuple[Path, dict]) -> None:
    _, result = engine_tables
    for tables in result.values():
        shown = [r for r in tables["kernel_table"] if not r["Kernel"].startswith("(")]
        assert all(r["Share"] >= 1.0 for r in shown)


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
    assert top["Launches"] > 0 and top["GPU time"] > 0
    assert "perfloop/engine/" in top["Python location"] and "site share" in top["Python location"]


def test_host_table_shows_steps_and_a_verdict(engine_tables: tuple[Path, dict]) -> None:
    _, result = engine_tables
    host = result["decode"]["host_table"]
    assert any(r["Section"] == "step" and "perfloop.step.decode" in r["Item"] for r in host)
    assert host[-1]["Section"] == "verdict"
    assert host[-1]["Item"] in {"launch-bound", "host-bound", "device-bound"}
