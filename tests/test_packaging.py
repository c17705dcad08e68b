"""The Docker image gets every file the wheel build needs (pyproject's force-include sources)."""

from __future__ import annotations

from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def _copied_by_dockerfile() -> set[str]:
    sources: set[str] = set()
    for line in (REPO / "Dockerfile.cpu").read_text().splitlines():
        if line.startswith("COPY "):
            sources.update(line.split()[1:-1])
    return sources


def test_dockerfile_copies_everything_the_wheel_build_reads() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", project["project"]["readme"], *wheel["packages"], *wheel["force-include"]}
    missing = needed - _copied_by_dockerfile()
    assert not missing, f"Dockerfile.cpu does not COPY {sorted(missing)}: hatchling fails without them"
