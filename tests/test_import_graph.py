"""No import cycle inside the cxpulse package (issue 20, step 4).

Walks the AST of every module under agent/, collector/ and proto/cxpulse/, maps files to their
``cxpulse.*`` names by pyproject's package-dir, and fails on any cycle among them, printed.
Imports inside functions count too: a lazy import is still a dependency edge, and a cycle hidden
behind one still means two modules cannot be read or moved apart. Only ``if TYPE_CHECKING:``
blocks are left out, because they never run.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Cycles known and owned by a pending step; every other cycle fails the test.
KNOWN_CYCLES: set[frozenset[str]] = set()


def package_dirs() -> dict[str, Path]:
    """Top-level package name -> folder, from pyproject's [tool.setuptools] package-dir."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {name: ROOT / folder for name, folder in data["tool"]["setuptools"]["package-dir"].items()}


def modules() -> dict[str, Path]:
    """Every module's dotted name -> its file. A deeper package-dir entry wins over its parent."""
    found: dict[str, Path] = {}
    for pkg, folder in sorted(package_dirs().items(), key=lambda kv: kv[0].count(".")):
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if any(not p.isidentifier() for p in parts):
                continue
            found[".".join([pkg, *parts])] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports, at module level or inside functions."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    edges: set[str] = set()

    def add(target: str) -> None:
        # "from a.b import c" may name module a.b.c or an attribute of a.b; take the longest module.
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            edges.add(target)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join(anchor + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                add(f"{prefix}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return edges


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(g.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def one_loop(g: dict[str, set[str]], comp: list[str]) -> list[str]:
    """A concrete import loop inside a component, for the failure message."""
    members = set(comp)
    start = comp[0]
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for dep in sorted(g[node] & members):
                if dep == start:
                    path = [start]
                    while node != start:
                        path.append(node)
                        node = prev[node]
                    return [start, *reversed(path[1:]), start]
                if dep not in prev:
                    prev[dep] = node
                    nxt_frontier.append(dep)
        frontier = nxt_frontier
    return comp


def test_walker_sees_the_package() -> None:
    g = graph()
    assert "cxpulse.cli" in g and "cxpulse.agent.runner" in g and "cxpulse.collector.server" in g
    assert "cxpulse.v1.payload" in g
    # A function-level import is an edge: cxpulse.cli dispatches to the agent and collector lazily.
    assert any(dep.startswith("cxpulse.collector") for dep in g["cxpulse.cli"])


def test_cycle_finder_finds_a_cycle() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    assert one_loop(g, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_no_import_cycle() -> None:
    g = graph()
    new = [comp for comp in cycles(g) if frozenset(comp) not in KNOWN_CYCLES]
    message = "\n".join(" -> ".join(one_loop(g, comp)) + f"   (all of: {', '.join(comp)})" for comp in new)
    assert not new, f"import cycles in the package:\n{message}"


def test_known_cycles_still_exist() -> None:
    """When a pending step lands, its exception must go too, so it cannot hide a new cycle."""
    found = {frozenset(comp) for comp in cycles(graph())}
    stale = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert not stale, f"known cycle gone, remove it from KNOWN_CYCLES: {stale}"
