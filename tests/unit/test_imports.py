"""The package's import graph, read from the source: no circle of any kind, and imports point one way (issue 26).

Why read the source: a circle that only closes inside a function (a lazy ``import``) or only for the type checker
(an ``if TYPE_CHECKING:`` import) still ties two modules together — neither can be understood, tested or moved
alone. So the graph counts every ``import`` statement: at module level, in a function, or under
``TYPE_CHECKING``. Resolving a function by name at run time (``importlib.import_module``, as the stage table does
for the stages) is not an import.

The order: the core modules (config, errors, log, runtime, storage, docs_blocks) → ``pipeline/`` (plumbing every
stage may use) → ``data/`` → ``features/`` → ``forecast/`` → ``evaluation/`` → ``operations/`` →
``orchestration/`` → the CLI. A module may import its own package and any lower one, never a higher one.
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


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source, ``TYPE_CHECKING`` blocks included."""

    def known(dotted: str) -> str | None:  # the module itself, or the package that holds the imported name
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str | None] = set()
    for node in ast.walk(tree):
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


# Lowest first. A top-level module of the package is its own entry; a subpackage's modules take its rank.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"bitpredict", "errors", "log", "runtime", "storage", "config", "docs_blocks"}),
    frozenset({"pipeline"}),
    frozenset({"data"}),
    frozenset({"features"}),
    frozenset({"forecast"}),
    frozenset({"evaluation"}),
    frozenset({"operations"}),
    frozenset({"orchestration"}),
    frozenset({"cli"}),
)


def layer_of(module: str) -> int:
    """The rank of a dotted module: its first name below ``bitpredict`` (the package itself is the core)."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else parts[0]
    for rank, members in enumerate(LAYERS):
        if head in members:
            return rank
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS (and to the design's order)")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a higher layer by a lower one, as 'importer → imported' lines."""
    return [
        f"{module} → {target}"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]


def test_the_graph_sees_lazy_and_type_checking_imports() -> None:
    """The reader is the test's premise: a function-level import is an edge, and so is a TYPE_CHECKING one."""
    graph = import_graph()
    assert "bitpredict.pipeline.tracking" in graph["bitpredict.evaluation.evaluate"]  # inside a function
    assert "bitpredict.evaluation.backtest" in graph["bitpredict.evaluation.report"]  # only under TYPE_CHECKING
    assert "bitpredict.data.sources.base" in graph["bitpredict.data.sources"]  # a subpackage's modules are nodes too
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset({"a", "b", "c"})]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_among_the_package_modules() -> None:
    """No circle at all, TYPE_CHECKING imports included, so there is no list of allowed ones."""
    graph = import_graph()
    found = circles(graph)
    assert not found, "import circles: " + " | ".join(_describe(c, graph) for c in found)


def test_imports_point_one_way_through_the_layers() -> None:
    """data → features → forecast → evaluation → operations, plumbing below and orchestration above: nothing lower
    imports anything higher, so a layer can be read, tested and replaced with only what is below it."""
    graph = import_graph()
    assert {layer_of(m) for m in graph} == set(range(len(LAYERS)))  # every layer has modules: the order is real
    wrong = upward_imports(graph)
    assert not wrong, "imports against the package order:\n" + "\n".join(wrong)


def test_the_order_check_fails_on_a_lower_module_importing_a_higher_one() -> None:
    """The check itself can fail: a features module importing evaluation, or the core importing data, is caught."""
    graph = {
        "bitpredict.features.merge": {"bitpredict.evaluation.scores", "bitpredict.data.clean"},
        "bitpredict.config": {"bitpredict.data.sources"},
        "bitpredict.operations.registry": {"bitpredict.evaluation.scores", "bitpredict.pipeline.tracking"},
    }
    assert upward_imports(graph) == [
        "bitpredict.config → bitpredict.data.sources",
        "bitpredict.features.merge → bitpredict.evaluation.scores",
    ]


def test_the_settings_import_no_source_and_no_stage_path() -> None:
    """The sources and the stage table read the settings, never the other way round. (``bitpredict.log``, a leaf that
    imports nothing of ours, is allowed: the settings register the keys it redacts.)"""
    graph = import_graph()
    assert graph["bitpredict.config"] <= {"bitpredict", "bitpredict.errors", "bitpredict.storage", "bitpredict.log"}
    assert graph["bitpredict.log"] <= {"bitpredict"}


def test_the_source_modules_take_their_settings_section_not_the_settings() -> None:
    """A source module is handed its URL, key and the shared ``http`` section; only the registry's opener, which
    picks those out of the settings, names the whole settings object."""
    sources = {m: p for m, p in module_files().items() if m.startswith("bitpredict.data.sources.")}
    assert {"bitpredict.data.sources.binance", "bitpredict.data.sources.http"} <= set(sources)
    for module, path in sources.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        named = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "bitpredict.config"
            for alias in node.names
        }
        assert named <= {"HttpSettings"}, f"{module} imports {named - {'HttpSettings'}} from the settings"


def test_the_stage_table_imports_no_stage_module() -> None:
    """The stage modules import their paths from the table; the table finds their functions by name."""
    from bitpredict.pipeline.stage_table import STAGES

    graph = import_graph()
    stage_modules = {f"bitpredict.{stage.module}" for stage in STAGES.values()}
    assert not graph["bitpredict.pipeline.stage_table"] & stage_modules
    assert all("bitpredict.pipeline.stage_table" in graph[m] for m in stage_modules)
