"""The fuse catalog validates, and each pattern matches its own example and rejects its counter-example."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from perfloop.profilers.fuse import CATALOG_PATH, FuseCatalog, load_catalog, split_runs
from perfloop.profilers.links import Activity

CATALOG = load_catalog()


def _snippet(names: list[str]) -> list[Activity]:
    """Kernels back to back on one stream, 10 us each."""
    return [
        Activity(
            n, "other", i * 20_000, i * 20_000 + 10_000, "stream 7", "x.py:1 f", "", "", "", "decode", 0, 0
        )
        for i, n in enumerate(names)
    ]


def test_catalog_has_enough_patterns_with_sources() -> None:
    assert len(CATALOG.patterns) >= 15
    for p in CATALOG.patterns:
        assert p.fused_paths and all("/" in fp.path for fp in p.fused_paths)


def test_schema_rejects_bad_entries() -> None:
    raw = yaml.safe_load(CATALOG_PATH.read_text())
    raw["patterns"][0]["unknown_field"] = 1
    with pytest.raises(ValidationError):
        FuseCatalog.model_validate(raw)
    raw = yaml.safe_load(CATALOG_PATH.read_text())
    raw["patterns"][1]["name"] = raw["patterns"][0]["name"]
    with pytest.raises(ValidationError, match="duplicate"):
        FuseCatalog.model_validate(raw)


@pytest.mark.parametrize("pattern", CATALOG.patterns, ids=lambda p: p.name)
def test_pattern_matches_its_example(pattern) -> None:
    runs = split_runs(pattern, _snippet(pattern.examples.match))
    assert len(runs) >= 1 and len(runs[0]) == len(pattern.split)


@pytest.mark.parametrize("pattern", CATALOG.patterns, ids=lambda p: p.name)
def test_pattern_rejects_its_counter_example(pattern) -> None:
    assert split_runs(pattern, _snippet(pattern.examples.no_match)) == []
