"""The house plan, checked: layers import only downwards, argument parsing lives in `dfa.cli`,
and modules and functions stay small (`dfa --help` and its flags: tests/test_cli.py)."""

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
