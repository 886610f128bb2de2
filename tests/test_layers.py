"""The shape of the package, read from its source (no module is imported): the run steps never
reach the cluster, which builds on them, and no two modules import each other at module level
(an import inside a function to dodge a circle counts as one, since it only hides it)."""

from __future__ import annotations

import ast
from pathlib import Path

import visionperf

ROOT = Path(visionperf.__file__).parent


def _modules() -> dict[str, Path]:
    mods = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return mods


def _imports(mods: dict[str, Path], name: str, everywhere: bool) -> set[str]:
    """The visionperf modules NAME imports: at module level, or (EVERYWHERE) also inside functions."""
    path = mods[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree) if everywhere else (n for top in tree.body for n in ast.walk(top)
                                                if not isinstance(top, (ast.FunctionDef, ast.ClassDef)))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in found if m in mods and m != name}


def _graph(everywhere: bool) -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(mods, m, everywhere) for m in mods}


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for dep in graph[stack.pop()] - seen:
            seen.add(dep)
            stack.append(dep)
    return seen


def test_the_run_steps_never_reach_the_cluster():
    graph = _graph(everywhere=True)
    for m in (m for m in graph if m == "visionperf.run" or m.startswith("visionperf.run.")):
        assert not {d for d in _reach(graph, m) if d.startswith("visionperf.cluster")}, m


def test_no_module_level_import_cycle():
    graph = _graph(everywhere=False)
    # A submodule importing its own package is no cycle: the package is mid-import already.
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    cycles = [m for m in graph if m in _reach(graph, m)]
    assert not cycles, cycles
