"""The package's layers, enforced on its import graph (module-level and function-level imports; imports under
``if TYPE_CHECKING:`` are types only and do not count): no cycle, no layer importing one above it, and a hook
spec that imports only pluggy and typing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"bilp_plugin": ROOT / "bilp_plugin", "bilp_adapters": ROOT / "adapters"}
LAYERS = ["core", "method", "runtime", "tools", "lab", "adapters", "commands"]
"""Lowest first: a module may import its own layer and those before it."""
CORE = {"bilp_plugin", "bilp_plugin.errors", "bilp_plugin.logs", "bilp_plugin.config", "bilp_plugin.hookspecs",
        "bilp_plugin.files", "bilp_plugin.manager", "bilp_plugin.hosting", "bilp_plugin.__main__", "bilp_plugin.cli"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for file in folder.rglob("*.py"):
            parts = (package, *file.relative_to(folder).with_suffix("").parts)
            name = ".".join(parts).removesuffix(".__init__")
            found[name] = file
    return found


MODULES = modules()


def layer(module: str) -> str:
    if module in ("bilp_plugin.cli", "bilp_plugin.__main__"):
        return "commands"
    if module in CORE:
        return "core"
    if module.startswith("bilp_adapters"):
        return "adapters"
    return module.split(".")[1]


def _runtime_nodes(tree: ast.Module) -> list[ast.AST]:
    """Every node, without the bodies of ``if TYPE_CHECKING:`` blocks."""
    nodes: list[ast.AST] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        nodes.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return nodes


def imports(module: str) -> set[str]:
    """Everything ``module`` imports at run time: module names, resolved to the package's own modules where they
    are (``from a.b import c`` is ``a.b.c`` when that is a module, else ``a.b``)."""
    names: set[str] = set()
    for node in _runtime_nodes(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                names.add(full if full in MODULES else node.module)
    return names


def graph() -> dict[str, set[str]]:
    return {m: {n for n in imports(m) if n in MODULES and n != m} for m in MODULES}


def test_the_graph_sees_the_layers() -> None:
    g = graph()
    assert "bilp_plugin.method.level1" in g["bilp_plugin.runtime.session"]
    assert {layer(m) for m in MODULES} == set(LAYERS)


def test_no_import_cycle() -> None:
    g = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(g[u]):
            if state.get(v) == 1:
                cycles.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_layer_imports_a_layer_above_it(module: str) -> None:
    mine = LAYERS.index(layer(module))
    above = {n: layer(n) for n in graph()[module] if LAYERS.index(layer(n)) > mine}
    assert not above, f"{module} ({layer(module)}) imports {above}"


def test_the_method_knows_no_runtime_lab_tool_command_or_adapter() -> None:
    for module in MODULES:
        if layer(module) == "method":
            assert {layer(n) for n in graph()[module]} <= {"core", "method"}, module


def test_hookspecs_imports_only_pluggy_and_typing() -> None:
    assert imports("bilp_plugin.hookspecs") <= {"__future__", "pluggy", "typing"}


def type_imports(module: str) -> set[str]:
    """The package's modules that ``module`` imports under ``if TYPE_CHECKING:`` (the types it names)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                if isinstance(inner, ast.ImportFrom) and inner.module:
                    names.update(f"{inner.module}.{a.name}" if f"{inner.module}.{a.name}" in MODULES
                                 else inner.module for a in inner.names)
    return {n for n in names if n in MODULES}


@pytest.mark.parametrize("module", ["bilp_plugin.hookspecs", "bilp_plugin.manager"])
def test_the_spec_names_no_type_above_the_method(module: str) -> None:
    """The hook spec (and the manager's typed calls) name types of the core and the method only: what a hook
    returns, a host included (:class:`bilp_plugin.hosting.Host`), is described at or below the spec's layer."""
    above = {n: layer(n) for n in type_imports(module) if layer(n) not in ("core", "method")}
    assert not above, f"{module} names types of {above}"
    assert "bilp_plugin.hosting" in type_imports(module)


def test_nothing_points_outside_the_repository() -> None:
    """Messages and docstrings name files a user who clones the project has."""
    for module, file in MODULES.items():
        text = file.read_text()
        assert "METHOD.md" not in text and "shared/data" not in text, module


def test_the_architecture_page_shows_the_layers() -> None:
    """docs/architecture.md's diagram: the layers top-down in :data:`LAYERS`' order, each layer's folder, and the
    core's modules exactly."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("<!-- layers:", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    rows = [line.split() for line in block.splitlines() if line.strip() and line.strip() != "|"]
    assert [row[0] for row in rows] == LAYERS[::-1]
    for row in rows[:-1]:
        folder = row[1].rstrip("/")
        assert (ROOT / folder).is_dir(), row
        assert {layer(m) for m in MODULES if str(MODULES[m].parent).startswith(str(ROOT / folder))} == {row[0]}
    core_row = rows[-1]
    named = {f"bilp_plugin.{w}" for w in core_row[2:]} | {"bilp_plugin", "bilp_plugin.__main__", "bilp_plugin.cli"}
    assert named == CORE
