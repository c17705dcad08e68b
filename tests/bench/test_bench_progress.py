"""`bench run` output: progress lines when stdout is a log or a pipe, counts as integers."""

from __future__ import annotations

import pytest

from perfloop.bench.runner import _progress


def test_progress_lines_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with _progress(True, 25) as advance:
        for _ in range(25):
            advance()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("bench: 3/25 requests done")
    assert lines[-1].startswith("bench: 25/25 requests done")


def test_no_progress_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with _progress(False, 5) as advance:
        for _ in range(5):
            advance()
    assert capsys.readouterr().out == ""


def test_summary_prints_counts_as_integers() -> None:
    from perfloop.bench.cli import _number

    assert (_number(20), _number(1234), _number(12.345), _number(None)) == ("20", "1,234", "12.35", "-")
