"""`perfloop goal run --patcher anthropic ...`: flags reach the run, and bad setups fail before any spend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import FakeBackend, make_spec
from fake_messages_api import message, serve, tool
from test_anthropic_loop import KEY, good_turns
from typer.testing import CliRunner

from perfloop.cli import app
from perfloop.loop import driving


def write_spec(tmp_path: Path, repo: Path) -> Path:
    spec = make_spec(repo, tmp_path).model_dump(mode="json")
    path = tmp_path / "goal.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def invoke(*args: str, **env: str | None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def test_flags_reach_the_patcher_the_reviewer_and_the_manifest(
    tmp_path: Path, target_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driving, "ProcessBackend", FakeBackend)  # measurements are not under test here
    review = message(tool("submit_review", verdict="ADVANCED", summary="ok", findings=[]))
    spec = write_spec(tmp_path, target_repo)
    with serve([*good_turns(), review]) as api:
        code, out = invoke(
            "goal", "run", "--spec", str(spec), "--patcher", "anthropic", "--model", "claude-opus-5-5",
            "--max-turns", "7", "--max-output-tokens", "5000", "--max-usd", "0.5",
            "--review-model", "claude-haiku-5-5",
            ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=api.url,
        )  # fmt: skip
    assert code == 0, out
    assert "COMPLETE" in out
    root = tmp_path / "artifacts" / "test-run"
    manifest = json.loads((root / "manifest.json").read_text())["spec"]
    assert manifest["patcher"] == "anthropic" and manifest["budgets"]["max_api_usd"] == 0.5
    assert manifest["agent"] == {
        "model": "claude-opus-5-5",
        "max_turns": 7,
        "max_output_tokens": 5000,
        "review_model": "claude-haiku-5-5",
    }
    assert [r["model"] for r in api.requests] == ["claude-opus-5-5"] * 5 + ["claude-haiku-5-5"]
    assert json.loads((root / "rounds/001/model_review.json").read_text())["verdict"] == "ADVANCED"


@pytest.mark.parametrize(
    ("flags", "env", "needle"),
    [
        (["--max-usd", "1"], {"ANTHROPIC_API_KEY": None}, "ANTHROPIC_API_KEY is not set"),
        ([], {"ANTHROPIC_API_KEY": KEY}, "budgets.max_api_usd"),
        (["--max-usd", "1", "--model", "gpt-x"], {"ANTHROPIC_API_KEY": KEY}, "--model"),
        (["--max-usd", "1", "--review-model", "nope"], {"ANTHROPIC_API_KEY": KEY}, "--review-model"),
    ],
)
def test_bad_setups_fail_before_a_run_exists(
    tmp_path: Path, target_repo: Path, flags: list[str], env: dict, needle: str
) -> None:
    spec = write_spec(tmp_path, target_repo)
    code, out = invoke("goal", "run", "--spec", str(spec), "--patcher", "anthropic", *flags, **env)
    assert code == 2
    assert needle in " ".join(out.split())
    assert not (tmp_path / "artifacts" / "test-run").exists()
