"""Progress of `bench run` when stdout is a log or a pipe: a line per tenth of the requests."""

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
