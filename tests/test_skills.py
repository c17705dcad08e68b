"""The agent-facing contract: every skill is well-formed, and every `perfloop ...` command, flag and
repo path named in a skill, an example spec, AGENTS.md or the Claude Code plugin exists."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import click
import pytest
import typer
import yaml

from perfloop.cli import app

ROOT = Path(__file__).resolve().parents[1]
SKILLS = sorted(ROOT.glob("skills/*/SKILL.md"))
PLUGIN = ROOT / ".claude-plugin" / "plugin.json"
# Every text an agent reads to learn the CLI.
DOCS = [
    *SKILLS,
    *sorted(ROOT.glob("examples/*.yaml")),
    ROOT / "AGENTS.md",
    *sorted(ROOT.glob("commands/*.md")),
]
SECTIONS = ["When to use", "Preflight", "Commands", "Hard gates", "Outputs", "Gotchas"]
# A `perfloop` word that starts a command (not `perfloop.cli`, `perfloop/engine`, `perfloop-goal`).
COMMAND = re.compile(r"(?<![\w./-])perfloop(?=[ `\n]|$)([^`\n|;&#)]*)")
# Repo paths named in a text; run folders under artifacts/ exist only at run time.
PATH = re.compile(
    r"(?<![\w./{-])((?:\./)?(?:examples|skills|prompts|perfloop|benchmarks|tests|commands|\.claude-plugin|"
    r"artifacts/schemas)/[\w./*-]*)"
)


def _frontmatter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def _is_group(command: object) -> bool:
    # typer ships its own copy of click, so test the behaviour, not the class.
    return hasattr(command, "list_commands")


def _resolve(words: list[str]) -> list[str]:
    """Problems with one command line: unknown subcommands and flags the commands do not take."""
    root = typer.main.get_command(app)
    ctx = click.Context(root)
    command = root
    problems, i = [], 0
    while i < len(words):
        word = words[i]
        if word == "...":  # "perfloop --debug ...": any command
            return problems
        if word.startswith("--") and word != "--help":
            name = word.split("=", 1)[0]
            option = next(
                (p for p in command.params if name in (*p.opts, *getattr(p, "secondary_opts", []))), None
            )
            if option is None:
                problems.append(f"`{command.name}` has no option {name}")
            elif not getattr(option, "is_flag", False) and "=" not in word:
                i += 1  # its value
        elif _is_group(command) and not word.startswith("-"):
            sub = command.get_command(ctx, word)
            if sub is None:
                problems.append(f"`perfloop ... {word}` is not a command")
                break
            command = sub
        i += 1
    if _is_group(command) and command is not root and command.name != "goal":
        problems.append(f"`{command.name}` needs a subcommand")
    return problems


def code(path: Path) -> str:
    """What a text shows as code: Markdown code blocks and spans; a spec's commands and indented comments."""
    text = path.read_text()
    if path.suffix == ".md":
        blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
        prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
        return "\n".join([*blocks, *re.findall(r"`([^`\n]+)`", prose)])
    if path.suffix == ".json":
        return "\n".join(re.findall(r'"(\./[^"]+)"', text))
    spec = yaml.safe_load(text)
    commands = [p["launch"] for p in spec.get("peers", [])]
    commands += [spec["target"].get(k) or "" for k in ("launch", "correctness", "reference_command")]
    shown = [x for x in text.splitlines() if re.match(r"\s*#\s{2,}\S", x)]  # indented comment = code
    return "\n".join([*commands, *shown])


def command_problems(text: str) -> list[str]:
    """Every problem of every `perfloop ...` command line in a text."""
    problems = []
    for match in COMMAND.finditer(text):
        line = match.group(1).split(" #")[0].strip().removesuffix("\\").strip()
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        problems += [f"perfloop {line}: {p}" for p in _resolve(words)]
    return problems


def path_problems(text: str) -> list[str]:
    """Repo paths a text names that do not exist (globs must match something)."""
    missing = []
    for match in PATH.finditer(text):
        path = match.group(1).rstrip(".,:")
        if not (list(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()):
            missing.append(path)
    return missing


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


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_named_commands_and_flags_exist(path: Path) -> None:
    assert command_problems(code(path)) == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_named_paths_exist(path: Path) -> None:
    assert path_problems(code(path)) == []


def test_the_checker_catches_what_it_should() -> None:
    assert command_problems("`perfloop goal submit RUN --commit SHA`") == []
    assert command_problems("perfloop goal --artifact-root X run --spec s.yaml") == []
    assert command_problems("run `perfloop goal sbmit RUN`")
    assert command_problems("perfloop goal status RUN --jsn")
    assert command_problems("perfloop ledger")
    assert path_problems("see examples/code-target.yaml and skills/*/SKILL.md") == []
    assert path_problems("see `examples/nope.yaml`") == ["examples/nope.yaml"]


def test_claude_plugin_and_codex_agents_name_existing_files() -> None:
    manifest = json.loads(PLUGIN.read_text())
    assert manifest["name"] == "perfloop"
    for entry in [*manifest["commands"], *manifest["skills"]]:
        assert (ROOT / entry).exists(), entry
    listed = {Path(s).name for s in manifest["skills"]}
    assert listed == {p.parent.name for p in SKILLS}, "the plugin must ship every skill"
    for skill in manifest["skills"]:
        assert (ROOT / skill / "SKILL.md").exists()
    command = (ROOT / "commands" / "perfloop-goal.md").read_text()
    assert _frontmatter(command)["description"]
    agents = (ROOT / "AGENTS.md").read_text()
    for skill in SKILLS:
        assert skill.relative_to(ROOT).as_posix() in agents, f"AGENTS.md does not point at {skill}"
