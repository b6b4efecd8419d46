"""The layer's dependencies flow one way: no import loop between its modules, nor between its folders.

Every ``import such_market…`` counts, also the lazy ones inside functions and those under
``TYPE_CHECKING``: a loop that only exists lazily still means two modules each need the other, and
the next edit turns it into an import-time failure.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "shared" / "such_market"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, known: Iterable[str]) -> set[str]:
    """The such_market modules ``path`` imports (``from a import b`` counts ``a.b`` when it is a module)."""
    names = set(known)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("such_market"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("such_market"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in names else node.module)
    return {name for name in found if name in names}


def module_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _room(module: str) -> str:
    """A module's room: its folder (``such_market.cache``) or, for a top-level module, itself."""
    return ".".join(module.split(".")[:2])


def folder_graph(modules: Mapping[str, set[str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for source, targets in modules.items():
        edges = graph.setdefault(_room(source), set())
        edges.update(_room(target) for target in targets if _room(target) != _room(source))
    graph.pop("such_market", None)  # the package's own __init__ imports nothing
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_package() -> None:
    modules = module_graph()
    assert "such_market.cache.store" in modules
    assert "such_market.cache.client" in modules["such_market.cache.store"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_loop_between_modules() -> None:
    assert cycles(module_graph()) == []


def test_no_import_loop_between_folders() -> None:
    assert cycles(folder_graph(module_graph())) == []


def test_domain_modules_do_not_import_http() -> None:
    domains = ("such_market.collections", "such_market.users", "such_market.ownership", "such_market.events")
    offenders = {
        source: sorted(target for target in targets if target.startswith("such_market.http"))
        for source, targets in module_graph().items()
        if source.startswith(domains)
    }
    assert {source: targets for source, targets in offenders.items() if targets} == {}
