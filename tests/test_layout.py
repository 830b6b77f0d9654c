"""The house plan, checked: layers import only downwards, imports run one way (no cycle, even
through an import inside a function), argument parsing lives in `dfa.cli`, modules and functions
stay small, and ARCHITECTURE.md's rows stay short (`dfa --help` and its flags: tests/test_cli.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dfa"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_the_core_never_imports_lightning():
    code = (
        "import sys, dfa.core.evaluate, dfa.core.roles, dfa.core.attribution, dfa.core.mapping, "
        "dfa.methods, dfa.store, dfa.config, dfa.report.tables; "
        "assert 'lightning' not in sys.modules, 'lightning imported'; "
        "assert 'torchmetrics' not in sys.modules, 'torchmetrics imported'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


def _imports(path: Path) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
        elif isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
    return mods


@pytest.mark.parametrize(
    "layer, forbidden",
    [
        (
            "core",
            (
                "dfa.config",
                "dfa.store",
                "dfa.methods",
                "dfa.training",
                "dfa.experiments",
                "dfa.cli",
                "dfa.report",
            ),
        ),
        ("training", ("dfa.experiments", "dfa.cli", "lightning.fabric")),
        ("experiments", ("dfa.cli",)),
        ("report", ("dfa.training", "dfa.experiments", "dfa.cli")),
    ],
)
def test_layers_import_only_downwards(layer, forbidden):
    bad = [
        f"{p.relative_to(PACKAGE)} imports {m}"
        for p in (PACKAGE / layer).rglob("*.py")
        for m in _imports(p)
        if m.startswith(forbidden)
    ]
    assert bad == []


def test_argparse_only_in_the_cli():
    bad = [
        str(p.relative_to(PACKAGE)) for p in SOURCES if "argparse" in _imports(p) and p.parent.name != "cli"
    ]
    assert bad == []


def test_modules_and_functions_stay_small():
    long_modules = [f"{p.name} {n}" for p in SOURCES if (n := len(p.read_text().splitlines())) > 450]
    long_functions = [
        f"{p.relative_to(PACKAGE)}:{node.name} {node.end_lineno - node.lineno + 1}"
        for p in SOURCES
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 80
    ]
    assert long_modules == [] and long_functions == []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SOURCES}


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _runtime_imports(name: str, path: Path) -> dict[str, int]:
    """The dfa modules `name` imports when it runs (top-level and inside functions; an import
    under `if TYPE_CHECKING:` is for annotations only) -> the line of the first such import."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}
    todo: list[ast.AST] = [ast.parse(path.read_text())]
    while todo:
        node = todo.pop()
        children = node.orelse if _type_checking(node) else list(ast.iter_child_nodes(node))
        todo.extend(children)
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # a relative import, from the package it is in
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            if t in MODULES and t != name:
                found[t] = min(found.get(t, node.lineno), node.lineno)
    return found


def test_no_import_cycles_between_dfa_modules():
    """Imports run one way: no dfa module reaches itself through the modules it imports, counting
    imports inside functions (a lazy import may save start-up time, never dodge a cycle)."""
    graph = {name: _runtime_imports(name, path) for name, path in MODULES.items()}
    cycles, done = set(), set()

    def visit(name: str, path: list[str]) -> None:
        for t in graph[name]:
            if t in path:
                loop = path[path.index(t) :]
                i = loop.index(min(loop))
                cycles.add(tuple(loop[i:] + loop[:i]))
            elif t not in done:
                visit(t, [*path, t])
        done.add(name)

    for name in graph:
        if name not in done:
            visit(name, [name])
    bad = [
        " -> ".join(f"{m} line {graph[m][n]}" for m, n in zip(c, [*c[1:], c[0]], strict=True)) + f" -> {c[0]}"
        for c in sorted(cycles)
    ]
    assert not bad, "\n".join(bad)


def test_architecture_rows_are_short():
    """ARCHITECTURE.md gives each concept a place in one short row; the details live in the
    docstrings of the modules it names."""
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    rows = [row for row in text.splitlines() if row.startswith("|")]
    long_rows = [f"{len(row)}: {row[:60]}" for row in rows if len(row) > 200]
    assert long_rows == []
