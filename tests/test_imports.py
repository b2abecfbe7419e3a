"""The package's import graph, read from the source (ast): no cycle between step packages, no step module that
imports another step's underscore names, lower layers that never import higher ones."""

from __future__ import annotations

import ast
from pathlib import Path

import cytoatlas

SRC = Path(cytoatlas.__file__).parent
# the packages of the steps and the assembler of their report (each writes a results directory)
STEP_PACKAGES = ("_pseudobulk", "_activity", "_cells", "_validate", "_compare", "_report", "_api")


def _modules() -> dict[str, Path]:
    return {".".join(("cytoatlas", *p.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__"): p
            for p in SRC.rglob("*.py")}


def _imports(module: str, path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names imported from it) of every import statement, at any depth (lazy ones too)."""
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.append((base, [a.name for a in node.names]))
    return found


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "cytoatlas" and parts[1] in STEP_PACKAGES else None


def _step_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {p: set() for p in STEP_PACKAGES}
    for module, path in _modules().items():
        src = _package(module)
        for target, _ in _imports(module, path):
            dst = _package(target)
            if src and dst and dst != src:
                graph[src].add(dst)
    return graph


def test_the_reader_finds_the_known_edges() -> None:
    """The graph is read right: edges that exist are found (so an empty answer below means something)."""
    graph = _step_graph()
    assert "_activity" in graph["_cells"] and "_validate" in graph["_report"] and "_compare" in graph["_report"]


def test_no_import_cycle_between_step_packages() -> None:
    graph = _step_graph()
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join([*trail, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in STEP_PACKAGES:
        if node not in state:
            visit(node, [])


def test_no_step_module_imports_another_steps_underscore_names() -> None:
    bad = []
    for module, path in _modules().items():
        src = _package(module)
        for target, names in _imports(module, path):
            dst = _package(target)
            if src and dst and dst != src:
                bad += [f"{module}: {target}.{n}" for n in names if n.startswith("_")]
    assert bad == []


def test_no_step_imports_another_steps_report_module() -> None:
    bad = [f"{module}: {target}" for module, path in _modules().items() for target, _ in _imports(module, path)
           if _package(module) not in (None, "_report") and _package(target) not in (None, _package(module))
           and target.rpartition(".")[2] == "report"]
    assert bad == []


def test_lower_layers_never_import_higher_ones() -> None:
    """io and the harness are below every step: they import none."""
    bad = [f"{module}: {target}" for module, path in _modules().items()
           if module.startswith(("cytoatlas.io", "cytoatlas._harness")) for target, _ in _imports(module, path)
           if _package(target)]
    assert bad == []
