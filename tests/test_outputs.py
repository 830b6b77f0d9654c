"""Fail before the work: every path a command writes (`--out`, `--json`, `--plot`, a config's `out`,
the run folder) is checked for its kind and that it can be written right after parsing, before any
model loads; the error is one line naming the path and the fix, never a traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import fields

import pytest

from dfa.cli import build_parser, main
from dfa.config import TrainConfig
from dfa.experiments.configs import CircuitsTableConfig, CrossScaleConfig, LotoConfig, SweepConfig
from dfa.core import outputs
from dfa.core.outputs import OutputPathError, check_output
from tests.conftest import ROOT

OUTPUT_NAMES = {"out", "json", "plot"}


def _parsers(parser: argparse.ArgumentParser, name: str = "dfa"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from _parsers(p, f"{name} {sub}")


def test_every_output_option_is_checked_before_the_work():
    """The mechanism: an option named like an output is declared with `output_flag` (or comes from
    a config field marked `output`), so `dfa` checks it after parsing. A new `--json` added with a
    plain `add_argument` fails here."""
    unchecked = [
        f"{name} {max(a.option_strings, key=len)}"
        for name, p in _parsers(build_parser())
        for a in p._actions
        if a.dest in OUTPUT_NAMES and a.nargs != 0 and not getattr(a, "dfa_output", None)
    ]
    assert not unchecked, f"output options not checked before the work (use output_flag): {unchecked}"


@pytest.mark.parametrize("cls", [TrainConfig, SweepConfig, LotoConfig, CrossScaleConfig, CircuitsTableConfig])
def test_every_output_setting_is_marked(cls):
    unmarked = [f.name for f in fields(cls) if f.name in OUTPUT_NAMES | {"cache"} and not f.metadata.get("output")]
    assert not unmarked, f"{cls.__name__}: output settings without output= metadata: {unmarked}"


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any model load fails the test: the error must come before the work."""
    from dfa.core import models

    def never(*a, **k):
        raise AssertionError("a model loaded before the output path was checked")

    from dfa import store

    monkeypatch.setattr(models, "load_model", never)
    monkeypatch.setattr(store, "load_model", never)  # the pool's own name for it


def _one_line_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    return err


def test_evaluate_json_naming_a_folder(tmp_path, capsys, no_model_loads):
    argv = ["evaluate", "--map", str(tmp_path / "no-run"), "--json", str(tmp_path), "--device", "cpu"]
    assert main(argv) == 2
    _one_line_error(capsys, f"--json {tmp_path}: is a folder", f"such as {tmp_path / 'report.json'}")


def test_evaluate_plot_under_a_file(tmp_path, capsys, no_model_loads):
    (tmp_path / "f").write_text("x")
    assert main(["evaluate", "--map", "x", "--plot", str(tmp_path / "f" / "toy.png")]) == 2
    _one_line_error(capsys, "--plot", f"{tmp_path / 'f'} is a file, not a folder")


def test_train_out_that_is_a_file(tmp_path, capsys, no_model_loads):
    (tmp_path / "ck").write_text("x")
    assert main(["train", "--config", "toy", "--out", str(tmp_path / "ck")]) == 2
    _one_line_error(capsys, f"--out {tmp_path / 'ck'}: is a file, and this writes a folder")


def test_a_yaml_out_is_checked_as_the_flag_is(tmp_path, capsys, no_model_loads):
    (tmp_path / "ck").write_text("x")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"src: toy-gpt2-s\ntgt: toy-gpt2-m\ntasks: [sva]\nout: {tmp_path / 'ck'}\n")
    assert main(["train", "--config", str(cfg)]) == 2
    _one_line_error(capsys, f"`--out` {tmp_path / 'ck'}: is a file")


def test_transfer_out_stem_whose_json_is_a_folder(tmp_path, capsys, no_model_loads):
    (tmp_path / "c.json").mkdir()
    assert main(["transfer", "--map", "x", "--task", "ioi", "--out", str(tmp_path / "c")]) == 2
    _one_line_error(capsys, f"--out {tmp_path / 'c.json'}: is a folder")


def test_a_folder_that_cannot_be_written(tmp_path, capsys, no_model_loads, monkeypatch):
    """Read-only: as root the permission bits do not stop a write, so the probe is made to fail."""
    real = outputs.tempfile.mkstemp

    def refuse(*a, dir=None, **k):
        if str(dir).startswith(str(tmp_path)):
            raise PermissionError(13, "Permission denied")
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(outputs.tempfile, "mkstemp", refuse)
    assert main(["evaluate", "--map", "x", "--json", str(tmp_path / "r.json")]) == 2
    _one_line_error(capsys, f"--json {tmp_path / 'r.json'}: cannot write in {tmp_path}")
    assert main(["train", "--config", "toy", "--out", str(tmp_path / "new" / "ck")]) == 2
    _one_line_error(capsys, f"--out {tmp_path / 'new' / 'ck'}: cannot write in {tmp_path}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder (the probe test covers it)")
def test_a_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputPathError, match="cannot write in"):
            check_output(ro / "r.json", "file", "--json")
    finally:
        ro.chmod(0o755)


def test_nothing_is_created_by_the_check(tmp_path):
    check_output(tmp_path / "a" / "b" / "r.json", "file", "--json")
    check_output(tmp_path / "c" / "d", "folder", "--out")
    assert list(tmp_path.iterdir()) == []


def test_the_script_prints_one_line_and_no_traceback(tmp_path):
    """`python scripts/evaluate.py ... --json FOLDER` as a user types it: exit 2, one line, fast."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--map", "x", "--json", str(tmp_path)],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"dfa evaluate: error: --json {tmp_path}: is a folder, and this writes a file; give a file path such "
        f"as {tmp_path / 'report.json'}."
    ]
