"""The house plan, checked: layers import only downwards, argument parsing lives in `dfa.cli`,
modules and functions stay small, and `dfa --help` lists every subcommand."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from dfa.cli import build_parser

PACKAGE = Path(__file__).resolve().parents[1] / "dfa"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_the_core_never_imports_lightning():
    code = (
        "import sys, dfa.core.evaluate, dfa.core.roles, dfa.core.attribution, dfa.core.mapping, "
        "dfa.methods, dfa.store, dfa.config, dfa.report.tables; "
        "assert 'lightning' not in sys.modules, 'lightning imported'"
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


def test_help_lists_every_subcommand():
    parser = build_parser()
    text = parser.format_help()
    wanted = "models nodes tasks zoo attribute evaluate-circuit circuits-table bench train evaluate transfer loto sweep cross-scale"
    assert [c for c in wanted.split() if f"    {c} " not in text and f"    {c}\n" not in text] == []


def test_train_flags_cover_every_config_field():
    from dataclasses import fields

    from dfa.config import TrainConfig

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    dests = {a.dest for a in sub.choices["train"]._actions}
    assert {f.name for f in fields(TrainConfig)} <= dests
