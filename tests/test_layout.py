"""The architecture rule, read from the source (an AST walk, no import): the core and the front ends
never import a family module (only ``lrsweep.families`` itself, for ``load()``), and no module of
lrsweep is in an import cycle.

Why an AST test and not import-linter: the rule is two short graph checks, every import counts
(also those inside functions: a lazy import is still a dependency, and the old cycles hid there),
and the test needs no extra dependency or config file. Edges are the explicit imports
(``from lrsweep.core import store`` is an edge to ``lrsweep.core.store``), as import-linter's
grimp counts them; the implicit import of a parent package is not an edge.
"""
import ast
from pathlib import Path

import pytest

import lrsweep

PACKAGE = Path(lrsweep.__file__).resolve().parent
FAMILIES = "lrsweep.families"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (anywhere in the file)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.add(sub if sub in files else base)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def family_violations(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, family module) pairs where a module outside lrsweep/families imports inside a family."""
    inside = lambda m: m.startswith(FAMILIES + ".")
    return sorted((a, b) for a, targets in graph.items() if not inside(a) and a != FAMILIES
                  for b in targets if inside(b))


def test_no_module_outside_the_families_imports_a_family():
    assert family_violations(import_graph()) == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_graph_sees_lazy_and_relative_imports(tmp_path):
    """The checker itself: an import inside a function and a relative import are edges, and the two
    checks catch what they are for (a core module importing a family, a two-module cycle)."""
    root = tmp_path / "lrsweep"
    (root / "core").mkdir(parents=True)
    (root / "families" / "paper").mkdir(parents=True)
    for init in (root, root / "core", root / "families", root / "families" / "paper"):
        (init / "__init__.py").write_text("")
    (root / "core" / "engine.py").write_text("def f():\n    from lrsweep.families.paper import hooks\n")
    (root / "families" / "paper" / "hooks.py").write_text("from ...core import engine\n")
    graph = import_graph(root)
    assert graph["lrsweep.core.engine"] == {"lrsweep.families.paper.hooks"}
    assert graph["lrsweep.families.paper.hooks"] == {"lrsweep.core.engine"}
    assert family_violations(graph) == [("lrsweep.core.engine", "lrsweep.families.paper.hooks")]
    assert cycles(graph) == [["lrsweep.core.engine", "lrsweep.families.paper.hooks"]]


@pytest.mark.parametrize("family", ["layer_balancing", "catapult", "schedules", "stackelberg"])
def test_each_paper_is_one_folder(family):
    assert (PACKAGE / "families" / family / "__init__.py").exists()
