"""One writer per run folder: a second `dfa train` / `transfer` / `evaluate` on a run that another
process holds is refused at once, naming that process; a writer killed without cleaning up leaves
nothing that blocks the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from dfa.cli import main
from dfa.core.locks import RunInProgress, lock_paths, run_lock

HOLD = (
    "import sys, time; from dfa.core.locks import run_lock\n"
    "with run_lock(sys.argv[1], 'dfa train --out X (the first)'):\n"
    "    print('held', flush=True); time.sleep(60)\n"
)


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds a run folder's lock (the first writer); yields (run, process)."""
    procs = []

    def start(run):
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "held"
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


@pytest.fixture
def no_model_loads(monkeypatch):
    from dfa.core import models

    def never(*a, **k):
        raise AssertionError("a model loaded although the run was held by another process")

    from dfa import store

    monkeypatch.setattr(models, "load_model", never)
    monkeypatch.setattr(store, "load_model", never)  # the pool's own name for it


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, holder):
    run = tmp_path / "ck" / "a__b" / "run"
    first = holder(run)
    with pytest.raises(RunInProgress, match=rf"run in progress \(pid {first.pid} since 20\d\d-.* UTC: dfa train --out X"):
        with run_lock(run, "dfa train (the second)"):
            pass


def test_the_lock_lives_beside_the_run_and_is_gone_after(tmp_path):
    run = tmp_path / "run"
    with run_lock(run, "dfa train"):
        lock, note = lock_paths(run)
        assert lock.parent == note.parent == tmp_path and note.is_file()
        with pytest.raises(RunInProgress, match=rf"pid {os.getpid()} since"):  # another writer, same process
            with run_lock(run, "again"):
                pass
    assert not note.exists() and not run.exists()  # nothing created in the run's place


def test_a_killed_writers_lock_is_taken_over(tmp_path, holder, capsys):
    run = tmp_path / "run"
    first = holder(run)
    first.send_signal(signal.SIGKILL)  # no finally, no cleanup: its note stays behind
    first.wait()
    assert lock_paths(run)[1].is_file()
    with run_lock(run, "dfa train (the next)"):
        pass
    assert f"taking over the lock of pid {first.pid}" in capsys.readouterr().err


def test_train_on_a_held_run_is_refused_before_any_model_loads(tmp_path, holder, capsys, no_model_loads):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("src: toy-gpt2-s\ntgt: toy-gpt2-m\ntasks: [sva]\nn_train: 20\nn_val: 10\n")
    out = tmp_path / "ck"
    from dfa.config import make_config

    first = holder(make_config(str(cfg), out=str(out)).run_dir())
    assert main(["train", "--config", str(cfg), "--out", str(out), "--lr", "0.2"]) == 2
    err = capsys.readouterr().err
    assert f"run in progress (pid {first.pid} since" in err and "Traceback" not in err, err


@pytest.mark.parametrize("command", ["evaluate", "transfer"])
def test_evaluate_and_transfer_on_a_held_run_are_refused(tmp_path, holder, capsys, no_model_loads, command):
    run = tmp_path / "run"
    run.mkdir()
    first = holder(run)
    argv = [command, "--map", str(run)] + (["--task", "ioi"] if command == "transfer" else [])
    assert main(argv) == 2
    assert f"run in progress (pid {first.pid} since" in capsys.readouterr().err
