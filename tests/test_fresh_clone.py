"""A fresh clone is what the tests assume: it has no shared/ beside it, so no real tokenizer. The
session hides them (tests/conftest.py); a test reaches them only through `real_tokenizers` or
`require_tokenizer`, which skip where they are absent, and no test goes around that gate."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from dfa.core.hub import TOKENIZERS_ENV, shared_tokenizer_dir
from tests.conftest import REAL_TOKENIZERS

TESTS = Path(__file__).resolve().parent
GATE_NAMES = {"REAL_TOKENIZERS", "TOKENIZERS_ENV"}


def _reaches(path: Path) -> list[str]:
    """Each place in a test module that calls the lookup, sets the variable, or names the folder."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            name = getattr(func, "id", None) or getattr(func, "attr", None)
            if name == "shared_tokenizer_dir":
                found.append(f"line {node.lineno}: calls shared_tokenizer_dir")
            if name in ("setenv", "putenv", "setdefault") and any(
                isinstance(a, ast.Constant) and a.value == TOKENIZERS_ENV for a in node.args
            ):
                found.append(f"line {node.lineno}: sets {TOKENIZERS_ENV}")
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
            key = node.slice
            if isinstance(key, ast.Constant) and key.value == TOKENIZERS_ENV:
                found.append(f"line {node.lineno}: sets {TOKENIZERS_ENV}")
        elif isinstance(node, ast.Constant) and "shared/tokenizers" in str(node.value):
            found.append(f"line {node.lineno}: names shared/tokenizers")
        elif isinstance(node, ast.ImportFrom) and (names := GATE_NAMES & {a.name for a in node.names}):
            found.append(f"line {node.lineno}: imports {sorted(names)}")
    return found


def test_no_test_reaches_the_real_tokenizers_around_the_gate():
    here = Path(__file__).name
    bad = {
        p.name: hits
        for p in sorted(TESTS.glob("*.py"))
        if p.name not in ("conftest.py", here) and (hits := _reaches(p))
    }
    assert not bad, (
        "these tests reach the real tokenizers without the gate (a fresh clone has none): take the "
        f"`real_tokenizers` fixture or call `require_tokenizer(name)` from tests/conftest.py instead: {bad}"
    )


def test_the_session_runs_as_a_fresh_clone():
    """Without the fixture, the lookup finds nothing, wherever the real tokenizers are."""
    assert os.environ[TOKENIZERS_ENV] and not any(Path(os.environ[TOKENIZERS_ENV]).iterdir())
    assert shared_tokenizer_dir("gpt2") is None and shared_tokenizer_dir("gpt-neox-20b") is None


def test_the_fixture_gives_them_back(real_tokenizers):
    assert shared_tokenizer_dir("gpt2") == real_tokenizers / "gpt2"
    assert REAL_TOKENIZERS == real_tokenizers


def test_the_variable_is_the_only_place_looked_at_when_set(tmp_path, monkeypatch):
    """$DFA_TOKENIZERS, when set, is where dfa looks, and nowhere else (shared/ beside a checkout is
    what it is not set to): pointing it at an empty folder is a fresh clone."""
    (tmp_path / "shared" / "tokenizers" / "gpt2").mkdir(parents=True)
    (tmp_path / "shared" / "tokenizers" / "gpt2" / "tokenizer.json").write_text("{}")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv(TOKENIZERS_ENV, str(tmp_path / "elsewhere"))
    assert shared_tokenizer_dir("gpt2") is None
    monkeypatch.delenv(TOKENIZERS_ENV)  # then shared/ beside the checkout (where there is one) or here
    beside = [REAL_TOKENIZERS / "gpt2"] if REAL_TOKENIZERS else []
    assert shared_tokenizer_dir("gpt2") in [*beside, tmp_path / "shared/tokenizers/gpt2"]


@pytest.mark.parametrize("name", ["gpt2", "gpt-neox-20b"])
def test_a_test_that_asks_skips_without_them(name):
    """`require_tokenizer` skips (never fails) where the folder is absent, saying where to put it."""
    import tests.conftest as conftest

    saved = conftest.REAL_TOKENIZERS
    conftest.REAL_TOKENIZERS = None
    try:
        with pytest.raises(pytest.skip.Exception, match=rf"the real {name} tokenizer is not here .*DFA_"):
            conftest.require_tokenizer(name)
    finally:
        conftest.REAL_TOKENIZERS = saved


def test_the_offline_hint_names_commands_that_work_offline(capsys, monkeypatch):
    """Without the real tokenizers, the error's suggestions run (they once said `--tokenizer gpt2`,
    which fails the same way)."""
    import re

    from dfa.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["nodes", "--model", "pythia-14m:random"]) == 2
    err = capsys.readouterr().err
    assert "is not here" in err and "--tokenizer gpt2" not in err, err
    hint = re.search(r"`(--tokenizer [\w-]+)`", err)
    survey = re.search(r"`dfa (tasks --model [\w-]+)`", err)
    assert hint and survey, err
    assert main(["nodes", "--model", "pythia-14m:random", *hint.group(1).split()]) == 0
    assert main([*survey.group(1).split(), "--task", "ioi", "--draws", "20"]) == 0
    assert main(["tasks", "--model", "gpt2", "--task", "ioi"]) == 2  # the docs' old command: the same hint
    assert survey.group(0) in capsys.readouterr().err
