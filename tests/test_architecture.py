"""Import rules between perfloop's subpackages, checked on the source (ast, function-level imports too).

- `perfloop.engine` imports no other perfloop subpackage (it must stand alone as a reference engine);
- `perfloop.bench` and `perfloop.profilers` never import `perfloop.loop`;
- no import cycle between subpackages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "perfloop"
# subpackage -> subpackages it must never import
FORBIDDEN = {"engine": {"*"}, "bench": {"loop"}, "profilers": {"loop"}}


def _imported_modules(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Absolute names of every module an AST imports (relative imports resolved against `module`)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base = parts[: len(parts) - node.level + (1 if is_package else 0)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.add(name)
            found |= {f"{name}.{alias.name}" for alias in node.names}
    return found


def subpackage_edges(root: Path) -> dict[tuple[str, str], str]:
    """(importing subpackage, imported subpackage) -> one file that does it, for a package at `root`."""
    package = root.name
    edges: dict[tuple[str, str], str] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        is_package = rel.name == "__init__"
        module = ".".join(rel.parts[:-1] if is_package else rel.parts)
        source = module.split(".")[1] if module.count(".") else None
        for name in _imported_modules(ast.parse(path.read_text()), module, is_package):
            parts = name.split(".")
            if parts[0] != package or len(parts) < 2 or not (root / parts[1]).is_dir():
                continue  # outside the package, or a top-level module such as perfloop.cli
            if source and (root / source).is_dir() and parts[1] != source:
                edges.setdefault((source, parts[1]), str(path.relative_to(root.parent)))
    return edges


def violations(edges: dict[tuple[str, str], str]) -> list[str]:
    """Broken rules: forbidden imports and cycles between subpackages, one line each."""
    problems = [
        f"{src} imports {dst} ({where})"
        for (src, dst), where in sorted(edges.items())
        if "*" in FORBIDDEN.get(src, set()) or dst in FORBIDDEN.get(src, set())
    ]
    graph: dict[str, set[str]] = {}
    for src, dst in edges:
        graph.setdefault(src, set()).add(dst)
    problems += [f"import cycle: {' -> '.join(c)}" for c in _cycles(graph)]
    return problems


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One path per cycle found by depth-first search (enough to fail and name it)."""
    cycles, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycles.append(path[path.index(node) :] + [node])
            return
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*path, node])
        done.add(node)

    for start in sorted(graph):
        visit(start, [])
    return cycles


def test_perfloop_keeps_its_import_rules() -> None:
    edges = subpackage_edges(ROOT)
    assert ("loop", "bench") in edges  # the checker sees real imports
    assert violations(edges) == []


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "perfloop"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for sub in ("engine", "bench", "loop", "profilers"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        (root / sub / "__init__.py").touch()
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"engine/x.py": "def f():\n    from perfloop.bench import y\n"},
            "engine imports bench (perfloop/engine/x.py)",
        ),
        ({"bench/x.py": "from ..loop import spec\n"}, "bench imports loop (perfloop/bench/x.py)"),
        (
            {"profilers/x.py": "import perfloop.loop.gates\n"},
            "profilers imports loop (perfloop/profilers/x.py)",
        ),
        (
            {
                "loop/a.py": "from perfloop.profilers import t\n",
                "profilers/b.py": "from perfloop.bench import c\n",
                "bench/c.py": "from perfloop.profilers.b import x\n",
            },  # fmt: skip
            "import cycle: bench -> profilers -> bench",
        ),
    ],
)
def test_the_checker_catches_a_new_violation(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    assert expected in violations(subpackage_edges(_package(tmp_path, files)))


def test_the_checker_allows_the_permitted_directions(tmp_path: Path) -> None:
    files = {
        "loop/a.py": "from perfloop.bench import b\nfrom perfloop import cli\n",
        "bench/b.py": "from ..engine import e\n",
        "engine/e.py": "from . import models\nfrom .models import decoder\n",
    }
    assert violations(subpackage_edges(_package(tmp_path, files))) == []
