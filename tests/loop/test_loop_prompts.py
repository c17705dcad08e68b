"""The goal prompt renders from a spec and names only real commands."""

from __future__ import annotations

from pathlib import Path

from conftest import make_spec

from perfloop.loop.templates import render


def test_goal_prompt_renders_the_fixed_conditions(tmp_path: Path, target_repo: Path) -> None:
    spec = make_spec(target_repo, tmp_path)
    text = render("goal.md.j2", spec=spec, spec_path="goal.yaml")
    assert "perfloop goal run --spec goal.yaml --patcher external" in text
    assert "`engine.yaml`" in text and "`peer`" in text and "4 rounds" in text
    assert "Hard stops" in text and "Evidence rules" in text
