"""The pipeline flows one way (DESIGN.md, README "Where things live"): no module imports a later
stage, lazily or not. Pairs still waiting for issue 11's moves are listed, and the list can only
shrink: a pair that no longer occurs must be removed from it."""
from __future__ import annotations

import ast
from pathlib import Path

ARCHDSL = Path(__file__).resolve().parent.parent / "archdsl"

# earliest first; a package may import its own stage and earlier ones
STAGES = [
    {"nn"},  # torch only: the modules and functions ops build, importing nothing else of archdsl
    {"errors", "_version"},
    {"syntax"},
    {"ops"},
    {"ir"},
    {"semantics"},
    {"lower"},
    {"topology"},
    {"viz", "export", "report", "testing"},
    {"api"},
    {"cli", "__main__", "docs", "editor", "__init__"},
]

# issue 11's moves are done: no pair waits (a new backward import fails the test below)
WAITING: set[tuple[str, str]] = set()


def _stage(package: str) -> int:
    for i, names in enumerate(STAGES):
        if package in names:
            return i
    raise AssertionError(f"archdsl/{package} is in no stage: add it to STAGES")


def _package(path: Path) -> str:
    rel = path.relative_to(ARCHDSL)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
            else [a.name for a in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "archdsl":
                yield (parts[1] if len(parts) > 1 else "__init__"), node.lineno


def _backward_imports() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(ARCHDSL.rglob("*.py")):
        src = _package(path)
        for dst, line in _imports(path):
            if _stage(dst) > _stage(src):
                found.setdefault((src, dst), []).append(f"{path.relative_to(ARCHDSL.parent)}:{line}")
    return found


def test_no_stage_imports_a_later_one():
    new = {pair: where for pair, where in _backward_imports().items() if pair not in WAITING}
    assert not new, "imports of a later stage:\n" + "\n".join(
        f"  {a} -> {b}: {', '.join(w)}" for (a, b), w in sorted(new.items()))


def test_the_waiting_list_only_shrinks():
    assert WAITING <= set(_backward_imports()), \
        f"no longer imported, remove from WAITING: {sorted(WAITING - set(_backward_imports()))}"


def test_the_stage_check_sees_lazy_imports(tmp_path):
    """A function-level import counts: the check would catch ops/ importing lower/ lazily."""
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def build():\n    from archdsl.lower.build import lower\n    import archdsl.topology.module\n")
    assert list(_imports(lazy)) == [("lower", 2), ("topology", 3)]


def _package_graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in sorted(ARCHDSL.rglob("*.py")):
        src = _package(path)
        edges.setdefault(src, set()).update(dst for dst, _ in _imports(path) if dst != src)
    return edges


def test_no_two_packages_import_each_other_in_a_circle():
    """Stages order the packages; within one stage (viz, export, report, testing) a circle could
    still hide, as api <-> semantics once did."""
    import networkx as nx
    cycles = list(nx.simple_cycles(nx.DiGraph([(a, b) for a, bs in _package_graph().items() for b in bs])))
    assert not cycles, f"import circles between packages: {cycles}"
