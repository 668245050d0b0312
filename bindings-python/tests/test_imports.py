"""The package's modules import one another without a circle: read from the source
(``ast``), so a circle hidden behind ``from __future__ import annotations`` or an
``if TYPE_CHECKING:`` import is caught too, before anything runs."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "keyleash"


def module_name(path: Path) -> str:
    return "keyleash" if path.name == "__init__.py" else f"keyleash.{path.stem}"


def module_level(tree: ast.Module) -> list[ast.stmt]:
    """The statements that run when the module is imported: the body and what
    ``if``/``try``/``with`` blocks hold, never the body of a function or class."""
    found: list[ast.stmt] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        found.append(node)
        if isinstance(node, ast.If | ast.With | ast.For | ast.While):
            pending.extend(node.body + getattr(node, "orelse", []))
        elif isinstance(node, ast.Try):
            pending.extend(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                pending.extend(handler.body)
    return found


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports at module level. ``from keyleash
    import client`` names the submodule; a name that is no submodule (``from
    keyleash import KeyLeash``) is the package's ``__init__``. The parent package
    that Python initializes before any submodule is no edge: it is not an import
    of the module's own."""
    own = module_name(path)
    edges: set[str] = set()
    for node in module_level(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.level:  # relative: resolve against this package
                node_module = f"keyleash.{node.module}" if node.module else "keyleash"
            else:
                node_module = node.module
            for alias in node.names:
                sub = f"{node_module}.{alias.name}"
                if sub in modules:
                    edges.add(sub)
                elif node_module in modules:
                    edges.add(node_module)
    edges.discard(own)
    return edges


def import_graph() -> dict[str, set[str]]:
    """Each module of the package and the package's modules it imports; the native
    module (known by its ``.pyi`` stub) imports none of them."""
    paths = sorted(PACKAGE.glob("*.py"))
    native = {module_name(p) for p in PACKAGE.glob("*.pyi")}
    modules = {module_name(p) for p in paths} | native
    return {module_name(p): imports_of(p, modules) for p in paths} | {n: set() for n in native}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import path that leads a module back to itself (depth-first search)."""
    found: list[list[str]] = []

    def walk(start: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt == start:
                found.append([*path, start])
            elif nxt not in path:
                walk(start, [*path, nxt])

    for module in sorted(graph):
        walk(module, [module])
    return found


# Pins the layering: no module of the package imports, directly or through others,
# a module that imports it back.
def test_no_import_circle() -> None:
    graph = import_graph()
    assert graph["keyleash.results"] == {
        "keyleash._check",
        "keyleash._native",
        "keyleash.exceptions",
    }
    assert circles(graph) == []


# Pins the checker itself: a circle it is shown is found.
def test_the_checker_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert ["a", "b", "c", "a"] in circles(graph)
    assert not any(path[0] == "d" for path in circles(graph))


# Pins where GrantedKey lives: one class, importable from the package and from the
# FastAPI module as before.
def test_granted_key_is_one_class() -> None:
    import keyleash.fastapi

    assert keyleash.GrantedKey is keyleash.fastapi.GrantedKey is keyleash.granted.GrantedKey
    assert "GrantedKey" in keyleash.__all__ and "GrantedKey" in keyleash.fastapi.__all__
