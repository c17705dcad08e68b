"""Every skill is well-formed and every `perfloop ...` command it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import typer
import yaml

from perfloop.cli import app

ROOT = Path(__file__).resolve().parents[1]
SKILLS = sorted(ROOT.glob("skills/*/SKILL.md"))
SECTIONS = ["When to use", "Preflight", "Commands", "Hard gates", "Outputs", "Gotchas"]


def _frontmatter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def _commands(text: str) -> set[tuple[str, ...]]:
    """The `perfloop a b` command paths named anywhere in the skill."""
    found = set()
    for match in re.finditer(r"perfloop((?: [a-z][a-z-]*)+)", text):
        words = tuple(w for w in match.group(1).split() if not w.startswith("-"))
        found.add(words[:2])
    return found


def test_skills_exist() -> None:
    assert SKILLS, "no skills/*/SKILL.md found"


@pytest.mark.parametrize("path", SKILLS, ids=lambda p: p.parent.name)
def test_skill_frontmatter_and_sections(path: Path) -> None:
    text = path.read_text()
    meta = _frontmatter(text)
    assert set(meta) == {"name", "description"}
    assert meta["name"] == path.parent.name
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    for section in SECTIONS:
        assert any(h.lower().startswith(section.lower()) for h in headings), f"{path}: missing '{section}'"


@pytest.mark.parametrize("path", SKILLS, ids=lambda p: p.parent.name)
def test_skill_commands_exist(path: Path) -> None:
    root = typer.main.get_command(app)
    ctx = click.Context(root)
    for words in _commands(path.read_text()):
        command = root.get_command(ctx, words[0])
        assert command is not None, f"{path.parent.name}: `perfloop {words[0]}` does not exist"
        if isinstance(command, click.Group) and len(words) > 1:
            sub = command.get_command(ctx, words[1])
            assert sub is not None, f"{path.parent.name}: `perfloop {' '.join(words)}` does not exist"
