"""`dfa loto`: one map per (pair, held-out task), evaluated zero-shot; resumed from its JSON."""

from __future__ import annotations

import json

import pytest

from dfa.cli import main
from dfa.core.errors import DfaError
from dfa.experiments import loto


class FakeRun:
    """A run folder as `loto` hands it to evaluation, with the val check's settings it was given."""

    def __init__(self, folder):
        self.name, self.check_budget, self.check_n = folder.name, None, None


def test_loto_command_trains_once_per_cell_and_resumes(tmp_path, monkeypatch, capsys):
    trained, evaluated, checks = [], [], []

    def train(c, overwrite=False, progress=True, pool=None):
        trained.append((c.src, c.tgt, tuple(c.holdout)))
        run = c.run_dir()
        run.mkdir(parents=True, exist_ok=True)
        return run

    def evaluate_run(run, pool, tasks, methods, split, n, boot, **kw):
        evaluated.append((run.name, tuple(methods), n, boot, split))
        checks.append((run.check_budget, run.check_n))
        rows = [
            {
                "task": t,
                "method": m,
                "cpr": 0.5,
                "cpr_ci": [0.4, 0.6],
                "curve": [],
                "n_prompts": n,
                "n_distinct": 5,
            }
            for t in tasks
            for m in methods
        ]
        return {"results": rows}, {}

    monkeypatch.setattr(loto, "train", train)
    monkeypatch.setattr(loto, "evaluate_run", evaluate_run)
    monkeypatch.setattr(loto, "Run", FakeRun)
    out = tmp_path / "loto.json"
    argv = ["loto", "--pairs", "toy-gpt2-s:toy-gpt2-m", "--tasks", "sva", "gender", "--n", "7"]
    argv += ["--methods", "dfa", "depth", "--out", str(tmp_path / "ck"), "--json", str(out)]
    assert main(argv) == 0
    assert trained == [("toy-gpt2-s", "toy-gpt2-m", ("sva",)), ("toy-gpt2-s", "toy-gpt2-m", ("gender",))]
    assert evaluated[0] == ("loto-sva", ("dfa", "depth"), 7, 200, "test")
    assert checks[0] == (0.2, None)  # the val check's default budget, each map's own n_val
    assert json.loads(out.read_text())["check_budget"] == 0.2
    rows = json.loads(out.read_text())["results"]
    assert [(r["task"], r["method"]) for r in rows] == [
        ("sva", "dfa"),
        ("sva", "depth"),
        ("gender", "dfa"),
        ("gender", "depth"),
    ]
    assert (
        "| toy-gpt2-s -> toy-gpt2-m | sva | 7/5 | 0.500 [0.40, 0.60] | 0.500 [0.40, 0.60] |"
        in capsys.readouterr().out
    )
    trained.clear()
    assert main(argv) == 0 and trained == []  # every cell done: nothing recomputed
    assert main([*argv[:2], "toy-gpt2-s"]) == 2 and "SRC:TGT" in capsys.readouterr().err
    # The results file is of one split: tuning on val never mixes with the test table.
    assert main([*argv, "--split", "val"]) == 2
    assert "on the test split, not val" in capsys.readouterr().err
    evaluated.clear()
    val = tmp_path / "loto_val.json"
    assert main([*argv[:-1], str(val), "--split", "val", "--check-budget", "full", "--val-n", "12"]) == 0
    assert {e[-1] for e in evaluated} == {"val"} and json.loads(val.read_text())["split"] == "val"
    assert checks[-1] == ("full", 12)
    for bad, why in (("--check-budget", "a positive share of gold's rows"), ("--val-n", "a number of val prompts")):
        assert main([*argv[:-1], str(tmp_path / "x.json"), bad, "-1"]) == 2
        assert why in capsys.readouterr().err


def test_loto_by_groups_holds_each_group_out_of_one_map(tmp_path, monkeypatch, capsys):
    trained, evaluated = [], []

    def train(c, overwrite=False, progress=True, pool=None):
        trained.append((c.run, tuple(c.holdout)))
        run = c.run_dir()
        run.mkdir(parents=True, exist_ok=True)
        return run

    def evaluate_run(run, pool, tasks, methods, split, n, boot, **kw):
        evaluated.append((run.name, tuple(tasks)))
        rows = [{"task": t, "method": m, "cpr": 0.5, "cpr_ci": [0.4, 0.6], "curve": [], "n_prompts": n,
                 "n_distinct": 5} for t in tasks for m in methods]  # fmt: skip
        return {"results": rows}, {}

    monkeypatch.setattr(loto, "train", train)
    monkeypatch.setattr(loto, "evaluate_run", evaluate_run)
    monkeypatch.setattr(loto, "Run", FakeRun)
    out = tmp_path / "loto.json"
    argv = ["loto", "--pairs", "toy-gpt2-s:toy-gpt2-m", "--groups", "agree=sva+gender", "facts=capitals"]
    argv += ["--methods", "dfa", "--n", "7", "--out", str(tmp_path / "ck"), "--json", str(out)]
    assert main(argv) == 0
    assert trained == [("loto-agree", ("sva", "gender")), ("loto-facts", ("capitals",))]
    assert [e[1] for e in evaluated] == [("sva", "gender"), ("capitals",)]
    saved = json.loads(out.read_text())
    assert saved["groups"] == {"agree": ["sva", "gender"], "facts": ["capitals"]}
    assert [(r["group"], r["task"]) for r in saved["results"]] == [
        ("agree", "sva"), ("agree", "gender"), ("facts", "capitals")
    ]  # fmt: skip
    assert "toy-gpt2-s -> toy-gpt2-m agree/gender: dfa 0.500" in capsys.readouterr().out
    trained.clear()
    assert main(argv) == 0 and trained == []  # resumed: every group's tasks are done
    for bad, why in (("agree", "NAME=TASK"), ("a=sva", "in held-out groups 'agree' and 'a'")):
        assert main([*argv[:4], "agree=sva+gender", bad, *argv[6:]]) == 2
        assert why in capsys.readouterr().err


def test_a_cell_whose_map_is_there_reuses_it_and_gives_it_a_fallback_when_it_has_none(tmp_path, monkeypatch):
    reused = []

    def evaluate_run(run, pool, tasks, methods, split, n, boot, **kw):
        rows = [{"task": t, "method": m, "cpr": 0.5, "cpr_ci": [0.4, 0.6], "curve": [], "n_prompts": n,
                 "n_distinct": 5} for t in tasks for m in methods]  # fmt: skip
        return {"results": rows}, {}

    def train(*a, **kw):
        raise AssertionError("a cell whose map is there trains nothing")

    monkeypatch.setattr(loto, "train", train)
    monkeypatch.setattr(loto, "ensure_fallback", lambda run, pool: reused.append(run.name))
    monkeypatch.setattr(loto, "evaluate_run", evaluate_run)
    monkeypatch.setattr(loto, "Run", FakeRun)
    run = tmp_path / "ck" / "toy-gpt2-s__toy-gpt2-m" / "loto-sva"
    run.mkdir(parents=True)
    (run / "map.json").write_text("{}")
    argv = ["loto", "--pairs", "toy-gpt2-s:toy-gpt2-m", "--tasks", "sva", "--methods", "dfa"]
    assert main([*argv, "--out", str(tmp_path / "ck"), "--json", str(tmp_path / "l.json")]) == 0
    assert reused == ["loto-sva"]


# --- the zero-shot reference: ridge maps fitted to the target's gold scores of the other tasks
def test_ridge_residual_interpolates_its_rows_and_falls_back_to_their_mean():
    import torch

    from dfa.experiments.loto_ceiling import ridge_residual

    X = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 1.0]], dtype=torch.double)
    R = torch.tensor([[1.0, 2.0], [3.0, -1.0], [-4.0, 5.0]], dtype=torch.double)
    for i in range(3):  # lam = 0: a training row gives its own residual back
        assert torch.allclose(ridge_residual(X, R, X[i], 0.0), R[i])
    # a source vector orthogonal to every training row: the mean residual (the map's offset)
    assert torch.allclose(
        ridge_residual(X, R, torch.tensor([0, 0, 1.0, -1.0], dtype=torch.double), 0.0), R.mean(0)
    )
    # a large penalty shrinks towards the mean: lam = 1 halves a unit row's deviation
    assert torch.allclose(ridge_residual(X, R, X[0], 1.0), R.mean(0) + (R[0] - R.mean(0)) / 2)


def test_ceiling_of_a_task_whose_source_scores_repeat_another_is_that_task_gold_ranking():
    import torch

    from dfa.core.graph import NodeGraph
    from dfa.experiments.loto_ceiling import ceiling_rankings

    src, tgt = NodeGraph(2, 2), NodeGraph(3, 2)  # 6 and 9 mapped nodes
    g = torch.Generator().manual_seed(0)
    source = {t: torch.rand(6, generator=g) for t in ("a", "b", "c")}
    source["held"] = source["b"].clone()
    gold = {t: torch.randn(9, generator=g) for t in source}
    out = ceiling_rankings(source, gold, src, tgt, "held", [0.0, 1e6])
    ridge = out["ridge-0"][1:]
    assert torch.equal(ridge.argsort(), gold["b"].abs().argsort())  # b's gold order, not held's own
    assert not torch.equal(ridge.argsort(), gold["held"].abs().argsort())
    assert torch.equal(out["gold"][1:], gold["held"]) and len(out["depth"]) == 5  # tie draws
    assert set(out) == {"gold", "depth", "ridge-0", "ridge-1e+06"}
    # scores are shifted to >= 0, as circuits take the largest |score| (a negative prediction is low)
    assert all(float(out[k][1:].min()) == 0.0 for k in ("ridge-0", "ridge-1e+06"))
    with pytest.raises(DfaError, match="at least two other tasks"):
        ceiling_rankings({"a": source["a"], "held": source["held"]}, gold, src, tgt, "held", [1.0])
