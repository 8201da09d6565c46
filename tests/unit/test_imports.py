"""No import circle among the ``bitpredict`` modules (issue 19), read from the source.

Why read the source: a circle that only closes inside a function (a lazy ``import``) still ties two modules
together — neither can be understood, tested or moved alone, and the order they are first imported in
decides whether a name exists yet. So the graph counts every ``import`` statement, at module level or in a
function; only imports under ``if TYPE_CHECKING:`` are left out (they never run). Resolving a function by
name at run time (``importlib.import_module``, as the stage table does for the stages) is not an import.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "bitpredict"


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name → file, for every module of the package (a package is its ``__init__``)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return skipped


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source (TYPE_CHECKING blocks excepted)."""

    def known(dotted: str) -> str | None:  # the module itself, or the package that holds the imported name
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    found: set[str | None] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {known(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package, up level − 1 packages
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else known(base))
    return {module for module in found if module is not None and module != name}


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = module_files(package)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan): each is one import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _describe(circle: frozenset[str], graph: dict[str, set[str]]) -> str:
    return "; ".join(f"{m} → {sorted(graph[m] & circle)}" for m in sorted(circle))


def test_the_graph_sees_lazy_imports_and_skips_type_checking_ones() -> None:
    """The reader is the test's premise: a function-level import is an edge, a TYPE_CHECKING one is not."""
    graph = import_graph()
    assert (
        "bitpredict.operations.registry" in graph["bitpredict.evaluation.evaluate"]
    )  # evaluate imports registry inside a function
    assert "bitpredict.evaluation.evaluate" not in graph["bitpredict.evaluation.report"]  # only under TYPE_CHECKING
    assert "bitpredict.data.sources.base" in graph["bitpredict.data.sources"]  # a subpackage's modules are nodes too
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset({"a", "b", "c"})]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_among_the_package_modules() -> None:
    """Issue 19's done-when: no circle at all, so there is no list of allowed ones."""
    graph = import_graph()
    found = circles(graph)
    assert not found, "import circles: " + " | ".join(_describe(c, graph) for c in found)


def test_the_source_modules_take_their_settings_section_not_the_settings() -> None:
    """The settings import the source registry (its names), so a source module importing the settings would
    close the circle again: the registry's opener hands each source its own section instead."""
    graph = import_graph()
    sources = {m for m in graph if m.startswith("bitpredict.data.sources")}
    assert sources >= {"bitpredict.data.sources.binance", "bitpredict.data.sources.http"}
    assert not any("bitpredict.config" in graph[m] for m in sources)


def test_the_stage_table_imports_no_stage_module() -> None:
    """The stage modules import their paths from the table; the table finds their functions by name."""
    from bitpredict.pipeline.stage_table import STAGES

    graph = import_graph()
    stage_modules = {f"bitpredict.{stage.module}" for stage in STAGES.values()}
    assert not graph["bitpredict.pipeline.stage_table"] & stage_modules
    # ingest writes only the raw store, which it reaches through data_path(settings, RAW) (config reads the table)
    assert all("bitpredict.pipeline.stage_table" in graph[m] for m in stage_modules - {"bitpredict.data.ingest"})
