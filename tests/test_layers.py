"""The layers of docs/architecture.md, checked on the source tree.

Every import counts, module level or inside a function (only ``if TYPE_CHECKING:`` blocks are
left out: they never run). Two rules:

- no import cycle between modules of the project;
- a module imports only from its own layer or a lower one:

  0 base       archive/<leaf>.py   errors, findings, progress, files and time helpers
  1 formats    tsm/, meta/         codecs, TSM/WAL/tombstone/tsi1, metastores
  2 sources    archive/sources/    the Source model and one module per kind of input
  3 operations archive/ops/        restore, convert, export, inspect, verify, dump, pack
  4 cli        cli/                parse, call, render
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("archive", "tsm", "meta", "cli")
PACKAGE = "influx_archive"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for top in CODE_DIRS:
        for path in sorted((ROOT / top).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Project modules that ``name`` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    out: set[str] = set()

    def target(base: str, names: list[str]) -> None:
        for n in names:
            if f"{base}.{n}" in modules:
                out.add(f"{base}.{n}")
            elif base in modules:
                out.add(base)
            else:  # a package without an __init__ of its own (namespace) or a missing module
                out.add(base)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base_parts = here[: len(here) - (child.level - 1)] if child.level > 1 else here
                    base = ".".join(base_parts + ([child.module] if child.module else []))
                elif child.module and child.module.startswith(PACKAGE + "."):
                    base = child.module[len(PACKAGE) + 1 :]
                else:
                    base = ""
                if base:
                    target(base, [a.name for a in child.names])
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith(PACKAGE + "."):
                        out.add(alias.name[len(PACKAGE) + 1 :])
            visit(child)

    visit(tree)
    out.discard(name)
    return {m for m in out if m in modules}


def _layer(name: str) -> int:
    if name.startswith("cli"):
        return 4
    if name.startswith("archive.ops"):
        return 3
    if name.startswith("archive.sources"):
        return 2
    if name.startswith(("tsm", "meta")):
        return 1
    return 0  # archive/<leaf>.py


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def test_the_tree_has_the_layers():
    modules = _modules()
    for name in ("archive.errors", "archive.sources", "archive.ops", "archive.ops.restore", "tsm.reader", "meta.files"):
        assert name in modules, name


def test_no_module_imports_a_higher_layer():
    wrong = [
        f"{name} (layer {_layer(name)}) imports {dep} (layer {_layer(dep)})"
        for name, deps in sorted(_graph().items())
        for dep in sorted(deps)
        if _layer(dep) > _layer(name)
    ]
    assert wrong == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
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
            strong(v)
    return out


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_module_is_over_600_lines(name):
    path = _modules()[name]
    lines = len(path.read_text().splitlines())
    # format modules: one definition per format, kept whole
    limit = 700 if name.startswith(("tsm.tsi1", "tsm", "meta")) else 600
    assert lines <= limit, f"{path.relative_to(ROOT)}: {lines} lines"
