"""The package's import graph (issue 16): kernels/ is a leaf (launchers only, nothing from labcore), and no
module of labcore/ or kernels/ reaches itself through imports, counting imports deferred inside functions
and under TYPE_CHECKING: a circle that works only because one side is deferred is still a circle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("labcore", "kernels")


def module_files() -> dict[str, Path]:
    """'labcore.kda.chunk' -> its file, for every module of the two packages ('labcore.kda' is __init__)."""
    out = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that `name` imports anywhere in its file (top level or inside functions).
    `from a.b import c` counts a.b.c when c is a module, else a.b."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            for a in node.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
    return {m for m in out if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imported_modules(name, f, set(files)) for name, f in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle [a, b, ..., a] if the directed graph has any, else None (iterative DFS, three colours)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_find_cycle_finds_one():
    # the checker itself can fail: a three-module circle and a self-consistent DAG
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_graph_sees_deferred_imports():
    # kernels are imported inside functions (triton only when used): the graph must still see them
    graph = import_graph()
    assert "kernels.soft_top_p" in graph["labcore.autodeco.soft_top_p"]
    assert "kernels" in graph["labcore.autodeco.soft_top_p"]
    assert len(graph) > 50


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_kernels_import_nothing_from_labcore():
    graph = import_graph()
    bad = {m: sorted(d for d in deps if d.split(".")[0] == "labcore")
           for m, deps in graph.items() if m.split(".")[0] == "kernels"}
    assert not {m: d for m, d in bad.items() if d}, f"kernels/ must be launchers only: {bad}"
