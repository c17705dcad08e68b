"""The Jinja2 templates under `prompts/` and the goal specs under `examples/` (in the wheel: _data/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

import perfloop

_PKG = Path(perfloop.__file__).resolve().parent


def _data_dir(name: str) -> Path:
    for candidate in (_PKG.parent / name, _PKG / "_data" / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"{name}/ not found next to the perfloop package")


def prompts_dir() -> Path:
    """`prompts/` of a source checkout, else the copy inside the installed wheel."""
    return _data_dir("prompts")


def render(name: str, **context: Any) -> str:
    """Render `prompts/<name>` strictly (an undefined variable is an error, not an empty string)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(prompts_dir()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(name).render(**context)


def examples_dir() -> Path:
    """`examples/` of a source checkout, else the copy inside the installed wheel."""
    return _data_dir("examples")


def pick_example(repo: Path) -> str:
    """The example spec closest to what `repo` holds: an engine config, the engine's source, or a server."""
    if (repo / "engine.yaml").is_file():
        return "quickstart"
    if (repo / "perfloop" / "engine").is_dir():
        return "code-target"
    return "served-target"


def write_example_spec(repo: Path, out: Path, example: str | None = None) -> str:
    """Write `examples/<example>.yaml` with `target.repo` pointing at `repo`; returns the example's name."""
    if not (repo / ".git").exists():
        raise ValueError(f"REPO: {str(repo)!r} is not a git repository (no .git)")
    name = example or pick_example(repo)
    source = examples_dir() / f"{name}.yaml"
    if not source.is_file():
        valid = sorted(p.stem for p in examples_dir().glob("*.yaml"))
        raise ValueError(f"--example: {name!r} is not an example; valid: {', '.join(valid)}")
    lines = source.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.lstrip().startswith("repo:"))
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines[at] = f"{indent}repo: {repo.resolve()}\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(lines))
    return name
