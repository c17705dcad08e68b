"""The Jinja2 prompt and report templates under `prompts/` (shipped in the wheel as _data/prompts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

import perfloop

_PKG = Path(perfloop.__file__).resolve().parent


def prompts_dir() -> Path:
    """`prompts/` of a source checkout, else the copy inside the installed wheel."""
    for candidate in (_PKG.parent / "prompts", _PKG / "_data" / "prompts"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("prompts/ not found next to the perfloop package")


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
