"""`dfa sweep`: pairs, the orchestration of maps and evaluations, resuming, and the tables."""

from __future__ import annotations

import json

import pytest

import dfa.experiments.sweep_cell as cell_module
from dfa.cli import main as dfa_main
from dfa.experiments.configs import SweepConfig
from dfa.core.errors import DfaError
from dfa.experiments.sweep import ladder_models, run_sweep, sweep_pairs
from dfa.report.tables import sweep_markdown as markdown
from dfa.store import ModelPool


def main(argv):
    return dfa_main(["sweep", *argv])


def test_ladders_and_pairs():
    assert ladder_models("toy-gpt2") == ["toy-gpt2-s", "toy-gpt2-m", "toy-gpt2-l"]
    assert ladder_models("gpt2") == ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"]
    assert ladder_models("pythia")[:2] == ["pythia-14m", "pythia-70m"]
    with pytest.raises(DfaError, match="Unknown ladder 'opt'"):
        ladder_models("opt")
    pairs = sweep_pairs("toy-gpt2")
    assert pairs[:3] == [
        ("toy-gpt2-s", "toy-gpt2-m", "forward"),
        ("toy-gpt2-s", "toy-gpt2-l", "forward"),
        ("toy-gpt2-m", "toy-gpt2-l", "forward"),
    ]
    assert ("toy-gpt2-l", "toy-gpt2-s", "reverse") in pairs and pairs[-1] == (
        "toy-neox-s",
        "toy-gpt2-l",
        "cross",
    )
    assert len(sweep_pairs("toy-gpt2", reverse=False, cross=[])) == 3
    with pytest.raises(DfaError, match="SRC:TGT"):
        sweep_pairs("toy-gpt2", cross=["toy-neox-s"])


@pytest.fixture
def fake(monkeypatch):
    """train() and evaluate_run() replaced by fakes that record their calls (no models run)."""
    calls = {"train": [], "eval": []}

    def train(c, overwrite=False, progress=True, pool=None):
        calls["train"].append((c.src, c.tgt, c.run_name(), tuple(c.train_tasks), tuple(c.holdout)))
        run = c.run_dir()
        run.mkdir(parents=True, exist_ok=True)
        (run / "map.json").write_text("{}")
        return run

    def evaluate_run(run, pool, tasks, methods, split, n, boot, draws=5, progress=False):
        calls["eval"].append((run.name, tuple(tasks), tuple(methods)))
        cpr = {"gold": 0.9, "dfa": 0.6 if run.name.startswith("loto") else 0.8, "depth": 0.5}
        rows = [
            {"task": t, "setting": "x", "method": m, "cpr": cpr.get(m, 0.3), "cpr_ci": [0, 1], "curve": []}
            | {"n_prompts": n, "n_distinct": 7 if t == "sva" else n}
            for t in tasks
            for m in methods
        ]
        return {"results": rows}, {}

    monkeypatch.setattr(cell_module, "train", train)
    monkeypatch.setattr(cell_module, "evaluate_run", evaluate_run)
    monkeypatch.setattr(cell_module, "Run", lambda folder: folder)  # the fake runs hold no map
    return calls


def test_sweep_trains_each_map_once_and_resumes(tmp_path, fake):
    cfg = SweepConfig(ladder="toy-gpt2", tasks=["sva", "gender"], out=str(tmp_path), reverse=False, cross=[])
    pool = ModelPool("cpu")
    result = run_sweep(cfg, pool)
    # 3 forward pairs x (all + 2 loto) maps, plus 2 one-task maps for the first pair.
    assert len(fake["train"]) == 3 * 3 + 2
    assert ("toy-gpt2-s", "toy-gpt2-m", "loto-sva", ("gender",), ("sva",)) in fake["train"]
    assert ("toy-gpt2-s", "toy-gpt2-m", "only-gender", ("gender",), ()) in fake["train"]
    assert ("loto-sva", ("sva",), ("dfa", "random", "permuted", "scrambled")) in fake["eval"]
    assert ("all", ("gender",), ("dfa", "gold", "depth", "depth-order", "role", "role-assign")) in fake[
        "eval"
    ]
    n_rows = len(result["rows"])
    saved = json.loads((tmp_path / "sweep_toy-gpt2.json").read_text())
    assert len(saved["rows"]) == n_rows
    fake["train"].clear()
    fake["eval"].clear()
    again = run_sweep(cfg, pool)  # everything done: nothing recomputed
    assert fake["train"] == [] and fake["eval"] == [] and len(again["rows"]) == n_rows
    text = markdown(again)
    assert "| sva | 50/7 | 0.900 | 0.800 | 0.600 | 0.300 | 0.300 | 0.500 | 0.300 | 0.300 | 0.300 |" in text
    assert "| gender | 50/50 | 0.900 |" in text and "| mean | | 0.900 |" in text
    assert "| toy-gpt2-s -> toy-gpt2-l | 0.500 | 0.600 | 0.900 | 67 |" in text
    assert "DFA zero-shot beats soft role alignment on 6 of 6" in text
    assert "| gender | 0.800 | 0.800 |" in text  # the heatmap row of the one-task map


def test_sweep_command_errors(tmp_path, capsys):
    assert main(["--ladder", "toy-gpt2", "--tasks", "sva", "--out", str(tmp_path)]) == 2
    assert "at least two tasks" in capsys.readouterr().err
    assert main(["--ladder", "toy-gpt2", "--tasks", "sva", "nope", "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err


def _tiny_sweep(tmp_path, out: str, backend: str) -> SweepConfig:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "n_src: 12\nn_train: 20\nn_val: 10\nbatch_size: 10\nmax_epochs: 1\nig_steps: 2\nlog_every_n_steps: 1\n"
    )
    return SweepConfig(
        ladder="toy-gpt2",
        tasks=["sva", "gender"],
        config=str(config),
        reverse=False,
        cross=[],
        heatmap=False,
        n=10,
        boot=20,
        draws=1,
        out=str(tmp_path / out),
        device="cpu",
        backend=backend,
    )


MEASURED = {"seconds", "peak_mb", "added_mb"}  # a cost's wall time and memory: they vary run to run


def _counted(rows):
    """Rows with each cost's measured time and memory left out (its row and token counts kept)."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in MEASURED}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(rows)


def test_ray_backend_gives_the_local_tables_and_resumes(tmp_path, capsys):
    """A tiny real toy sweep (3 pairs x 3 maps) on a local Ray instance: the same rows and
    tables as the local backend; with some cells and one map gone (as a killed sweep leaves
    it), only those cells run again, and the result is the same."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'dfa[ray]' (the test extra has it)")
    from dfa.experiments.sweep import write_sweep

    local = run_sweep(_tiny_sweep(tmp_path, "local", "local"), ModelPool("cpu"))
    cfg = _tiny_sweep(tmp_path, "ray", "ray")
    remote = run_sweep(cfg, ModelPool("cpu"))
    assert _counted(remote["rows"]) == _counted(local["rows"]) and len(local["rows"]) == 3 * (
        2 * 6 + 2 * 4
    )  # all: 2 tasks x 6 methods; 2 loto maps x 4
    assert write_sweep(remote, tmp_path / "ray")[0] == write_sweep(local, tmp_path / "local")[0]
    assert "9 cells as Ray tasks" in capsys.readouterr().out

    path = tmp_path / "ray" / "sweep_toy-gpt2.json"
    saved = json.loads(path.read_text())
    lost = {("toy-gpt2-s", "toy-gpt2-l", "all"), ("toy-gpt2-m", "toy-gpt2-l", "loto-sva")}
    saved["rows"] = [r for r in saved["rows"] if (r["src"], r["tgt"], r["map"]) not in lost]
    path.write_text(json.dumps(saved))
    killed = tmp_path / "ray" / "maps" / "toy-gpt2-m__toy-gpt2-l" / "loto-sva"
    assert (killed / "map.json").is_file()
    import shutil

    shutil.rmtree(killed)
    again = run_sweep(cfg, ModelPool("cpu"))
    assert "2 cells as Ray tasks" in capsys.readouterr().out
    assert _counted(again["rows"]) == _counted(local["rows"]) and (killed / "map.json").is_file()


def test_ray_backend_without_ray_says_how_to_get_it(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(DfaError, match=r"The ray backend needs Ray: pip install 'dfa\[ray\]'"):
        run_sweep(_tiny_sweep(tmp_path, "none", "ray"), ModelPool("cpu"))
