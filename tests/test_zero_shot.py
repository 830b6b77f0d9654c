"""The zero-shot map: inner folds, the estimate, the choice, and its use on tasks outside training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dfa.config import ConfigError, TrainConfig
from dfa.core.evaluate import FRACTIONS, capped_cpr, cpr
from dfa.core.mapping import AlignmentMap
from dfa.report.zero_shot import zero_shot_text as describe
from dfa.training.module import MapTrainer
from dfa.training.zero_shot import estimate, fold_config, fold_gains, fold_tasks, summarise


def test_tasks_are_dealt_into_folds_in_turn():
    assert fold_tasks(["a", "b", "c", "d", "e", "f", "g"], 3) == [["a", "d", "g"], ["b", "e"], ["c", "f"]]
    assert fold_tasks(["a", "b"], 3) == [["a"], ["b"]]  # never an empty fold


def test_a_fold_trains_without_its_tasks_nor_the_runs_hold_outs(tmp_path):
    c = TrainConfig(tasks=["sva", "gender", "ioi"], holdout=["capitals"], n_train=200, out=str(tmp_path))
    fc = fold_config(c, ["gender"], 2, tmp_path / "folds")
    assert fc.train_tasks == ["sva", "ioi"] and fc.holdout == ["gender"]
    assert "capitals" not in fc.eval_tasks  # the run's own hold-out is never seen by a fold
    assert (fc.max_epochs, fc.n_train, fc.zero_shot_folds) == (2, 100, 0)
    assert fc.validate == "holdout"  # its estimate reads the held-out group alone: nothing else validated
    with pytest.raises(ConfigError, match="validate: holdout scores only the held-out tasks"):
        TrainConfig(validate="holdout").check()
    assert fc.cache_dir == c.cache_dir  # the source scores are shared
    assert fc.run_dir() == tmp_path / "folds" / "toy-gpt2-s__toy-gpt2-l" / "fold-2"
    with pytest.raises(ConfigError, match=r"zero_shot_train in \(0, 1\]"):
        TrainConfig(zero_shot_train=0.0).check()


def _history(start: dict[str, float], epochs: list[dict[float, dict[str, float]]]) -> list[dict]:
    """A fold's val history: the start, then per epoch {alpha: held-out capped CPR per task}."""
    out = [{"epoch": 0, "zero_shot_select_cpr": start}]
    for e, by_alpha in enumerate(epochs, 1):
        h = {"epoch": e, "zero_shot_select_cpr": by_alpha[1.0]}
        h["blends"] = [{"alpha": a, "zero_shot_select_cpr": v} for a, v in by_alpha.items() if a != 1.0]
        out.append(h)
    return out


def test_with_fewer_tasks_than_zero_shot_min_tasks_no_fold_runs_and_unseen_tasks_get_the_prior(tmp_path):
    from dfa.report.zero_shot import zero_shot_text
    from dfa.training.run import run_folds

    c = TrainConfig(tasks=["sva", "gender", "ioi", "capitals"], holdout=["capitals"], out=str(tmp_path))
    zs = run_folds(c, tmp_path / "run", pool=None)  # no pool: nothing may load or train
    assert (zs["epoch"], zs["alpha"], zs["folds"], zs["candidates"], zs["n_tasks"]) == (0, 0.0, [], [], 3)
    assert zs["per_task"] == {"sva": 0.0, "gender": 0.0, "ioi": 0.0} and not (tmp_path / "run").exists()
    text = zero_shot_text(zs)
    assert "the fallback: the depth baseline's ranking" in text
    assert "3 training tasks, fewer than zero_shot_min_tasks (5)" in text and "by chance: 0.12" in text
    with pytest.raises(ConfigError, match=r"zero_shot_min_tasks >= 2 .*got \(3, 2, 0.5, 1\)"):
        TrainConfig(zero_shot_min_tasks=1).check()


def test_gains_are_each_candidates_held_out_cpr_minus_the_starts():
    h = _history({"a": 0.5, "b": 0.4}, [{1.0: {"a": 0.7, "b": 0.3}, 0.5: {"a": 0.6, "b": 0.45}}])
    g = fold_gains(h)
    assert g[(1, 1.0)] == pytest.approx({"a": 0.2, "b": -0.1})
    assert g[(1, 0.5)] == pytest.approx({"a": 0.1, "b": 0.05})


def test_the_choice_is_the_highest_lower_bound_and_the_start_when_none_is_above_zero():
    # Two folds, one task each. Epoch 1's map: +0.3 and -0.1 (mean +0.1, interval reaching below
    # 0); its blend 0.5: +0.1 and +0.05 (mean +0.075, interval above 0): the blend is chosen.
    f1 = _history({"a": 0.5}, [{1.0: {"a": 0.8}, 0.5: {"a": 0.6}}])
    f2 = _history({"b": 0.4}, [{1.0: {"b": 0.3}, 0.5: {"b": 0.45}}])
    est = estimate([f1, f2])
    assert (est["epoch"], est["alpha"]) == (1, 0.5)
    assert est["mean"] == pytest.approx(0.075) and est["range"] == pytest.approx([0.05, 0.1])
    assert est["ci"][0] == pytest.approx(0.05) and est["ci"][1] == pytest.approx(0.1)
    assert {(c["epoch"], c["alpha"]) for c in est["candidates"]} == {(1, 0.5), (1, 1.0)}
    # When every candidate loses on some task, nothing is shown to carry: the start.
    f2 = _history({"b": 0.4}, [{1.0: {"b": 0.3}, 0.5: {"b": 0.35}}])
    est = estimate([f1, f2])
    assert (est["epoch"], est["alpha"], est["mean"]) == (0, 0.0, 0.0)
    assert "unseen tasks get the prior" in est["why"] and "epoch 1 x 0.5" in est["why"]
    assert "the fallback: the depth baseline's ranking" in describe(
        {**est, "folds": [["a"], ["b"]], "n_val": 50}
    )
    # Only epochs the run holds the map of may be chosen.
    f1 = _history({"a": 0.5}, [{1.0: {"a": 0.6}}, {1.0: {"a": 0.9}}])
    f2 = _history({"b": 0.4}, [{1.0: {"b": 0.5}}, {1.0: {"b": 0.8}}])
    assert estimate([f1, f2])["epoch"] == 2 and estimate([f1, f2], epochs={1})["epoch"] == 1


def test_the_interval_resamples_tasks():
    s = summarise({"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.6}, seed=0, boot=4000)
    assert s["mean"] == pytest.approx(0.3) and s["range"] == [0.1, 0.6]
    rng = np.random.default_rng(0)  # the same draws by hand
    g = np.array([0.1, 0.2, 0.3, 0.6])
    means = g[rng.integers(0, 4, size=(4000, 4))].mean(1)
    assert s["ci"] == pytest.approx(list(np.percentile(means, [2.5, 97.5])))


def test_selection_reads_faithfulness_capped_at_one():
    f = [0.2, 0.5, 1.3, 1.1, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0][: len(FRACTIONS)]
    capped = [min(x, 1.0) for x in f]
    assert capped_cpr(f) == pytest.approx(cpr(FRACTIONS, capped)) and capped_cpr(f) < cpr(FRACTIONS, f)


def test_an_overshooting_task_does_not_win_selection():
    # Epoch 1 overshoots on "a" (CPR 1.4 uncapped, 0.9 capped); epoch 2 is better once capped.
    module = MapTrainer.__new__(MapTrainer)
    module.config = TrainConfig(keep="best")
    h = [
        {"epoch": 0, "val_cpr": {"a": 0.5, "b": 0.5}, "mean": 0.5, "below_start": []},
        {"epoch": 1, "val_cpr": {"a": 1.4, "b": 0.55}, "select_cpr": {"a": 0.9, "b": 0.55}, "mean": 0.725,
         "below_start": []},
        {"epoch": 2, "val_cpr": {"a": 0.95, "b": 0.6}, "select_cpr": {"a": 0.9, "b": 0.6}, "mean": 0.75,
         "below_start": []},
    ]  # fmt: skip
    module.history = h
    assert module.kept()["epoch"] == 2


def test_the_zero_shot_map_is_the_chosen_blend_of_an_epochs_map(tmp_path):
    from dfa.training.zero_shot import save_zero_shot

    src, tgt = ["a0.h0", "a0.h1", "m0"], ["a0.h0", "m0", "a1.h0", "m1"]
    module = MapTrainer(TrainConfig().to_dict(), src, tgt)
    W0 = module.W0.clone()
    epoch1 = {"W": W0 + torch.randn_like(W0), "b": torch.full((4,), 2.0)}
    module.epoch_params = {1: epoch1}
    with torch.no_grad():
        module.map.W.add_(3.0)  # the kept map, different from epoch 1's
    kept = module.map.W.detach().clone()
    save_zero_shot(module, tmp_path, {"note": "x"}, {"epoch": 1, "alpha": 0.25})
    zs, meta = AlignmentMap.load(tmp_path / "zero_shot")
    assert torch.allclose(zs.W, W0 + 0.25 * (epoch1["W"] - W0), atol=1e-6)
    assert torch.allclose(zs.b, torch.full((4,), 0.5)) and meta["note"] == "x"
    assert torch.equal(module.map.W, kept)  # the kept map is put back
    save_zero_shot(module, tmp_path, {}, {"epoch": 0, "alpha": 0.0})  # the fallback: the start
    zs, _ = AlignmentMap.load(tmp_path / "zero_shot")
    assert torch.equal(zs.W, W0) and not zs.b.any() and torch.equal(module.map.W, kept)


def test_a_run_estimates_its_zero_shot_gain_and_evaluation_uses_its_zero_shot_map(tmp_path):
    from dfa.experiments.transfer import Run, evaluate_run
    from dfa.store import ModelPool
    from dfa.training import train
    from tests.test_training import small_config

    c = small_config(
        tmp_path, holdout=["ioi"], zero_shot_folds=2, zero_shot_epochs=1, max_epochs=2, zero_shot_min_tasks=2
    )
    run = train(c, progress=False)
    info = json.loads((run / "map.json").read_text())
    zs = info["zero_shot"]
    assert zs["folds"] == [["sva"], ["gender"]] and zs["epochs"] == 1
    gains = {}
    for i, held in enumerate(zs["folds"], 1):
        fold = json.loads((run / "zero_shot_folds" / run.parent.name / f"fold-{i}" / "map.json").read_text())
        assert fold["holdout"] == held and "ioi" not in fold["hyperparameters"]["tasks"]
        # A fold validates its held-out group only, and keeps its last epoch.
        assert all(h["select_cpr"] == {} and list(h["zero_shot_select_cpr"]) == held for h in fold["val_history"])
        assert fold["kept"]["epoch"] == 1 and "validate: holdout" in fold["kept"]["why"]
        start = fold["val_history"][0]["zero_shot_select_cpr"][held[0]]
        gains[held[0]] = fold["val_history"][1]["zero_shot_select_cpr"][held[0]] - start
    whole = next(x for x in zs["candidates"] if (x["epoch"], x["alpha"]) == (1, 1.0))
    assert whole["per_task"] == pytest.approx(gains)  # each gain measured by the fold that never saw it
    # The saved zero-shot map is the chosen blend of the run's own epoch map (or the start).
    zmap, _ = AlignmentMap.load(run / "zero_shot")
    W0 = MapTrainer(dict(info["hyperparameters"]), zmap.src_names, zmap.tgt_names).W0
    if zs["epoch"] == 0:
        assert torch.equal(zmap.W, W0)
    else:
        params = torch.load(run / "last.ckpt", weights_only=True)["dfa_selection"]["epoch_params"]
        assert torch.allclose(zmap.W, W0 + zs["alpha"] * (params[zs["epoch"]]["W"] - W0), atol=1e-6)
    r = Run(run)
    assert r.map_for("ioi") is r.zero_shot_map and r.map_for("sva") is r.map
    pool = ModelPool("cpu")
    report, _ = evaluate_run(r, pool, ["ioi", "sva"], ["dfa", "depth"], "test", 10, 20)
    used = {row["task"]: row.get("map_used") for row in report["results"] if row["method"] == "dfa"}
    assert used["sva"] == "in-distribution" and used["ioi"].startswith("zero-shot: ")
    assert report["zero_shot"]["epoch"] == zs["epoch"] and "candidates" not in report["zero_shot"]
    # Where the folds found nothing that carries, an unseen task is ranked by the depth baseline
    # itself (its tie draws), not by the start's noise; training tasks keep the map.
    from dfa.experiments.transfer import method_rankings

    r.zero_shot = {**r.zero_shot, "epoch": 0, "alpha": 0.0, "fallback": {"method": "depth", "why": "test"}}
    ranks = method_rankings(r, pool, "ioi", ["dfa", "depth"], draws=3)
    assert len(ranks["dfa"]) == 3 and all(torch.equal(a, b) for a, b in zip(ranks["dfa"], ranks["depth"]))
    assert r.map_note("ioi").startswith("zero-shot: the depth baseline") and not r.prior_for("sva")
    # A run whose fallback is role ranks such a task as role does, and its cost reads role's profiles.
    r.zero_shot = {**r.zero_shot, "fallback": {"method": "role", "why": "set by the config (fallback: role)"}}
    costs: dict = {}
    ranks = method_rankings(r, pool, "ioi", ["dfa", "role"], draws=3, costs=costs)
    assert torch.equal(ranks["dfa"], ranks["role"]) and costs["dfa"]["reads"] == ["source", "profiles"]
    assert r.map_note("ioi").startswith("zero-shot: the role baseline")
    own = method_rankings(r, pool, "sva", ["dfa", "role"])  # a training task keeps the map
    assert not torch.equal(own["dfa"], own["role"])


def test_the_estimate_table_tells_a_run_without_folds_from_one_whose_folds_found_nothing():
    from dfa.report.zero_shot import estimate_table

    prior = {"epoch": 0, "alpha": 0.0, "mean": 0.0, "ci": [0.0, 0.0], "range": [0.0, 0.0], "n_tasks": 3}
    rows = [
        {"src": "a", "tgt": "b", "task": t, "method": "dfa", "zero_shot": {**prior, "folds": folds},
         "paired": {"depth": {"diff": 0.0, "ci": [-0.01, 0.02]}}}
        for t, folds in (("ioi", []), ("sva", [["ioi"], ["gender"]]))
    ]  # fmt: skip
    lines = estimate_table(rows).splitlines()
    assert "| a -> b | ioi | depth (no folds: 3 tasks) | +0.000 [+0.000, +0.000] |" in lines[2]
    assert "| a -> b | sva | depth (nothing carries) |" in lines[3] and lines[2].endswith("| yes | no |")


def test_a_cell_that_falls_back_to_role_reads_roles_gain_over_depth_on_the_training_tasks():
    from dfa.report.zero_shot import estimate_table, zero_shot_text

    gain = {"mean": 0.2, "ci": [0.1, 0.3], "range": [-0.05, 0.4], "n_tasks": 13}
    zs = {"epoch": 0, "alpha": 0.0, "mean": 0.0, "ci": [0.0, 0.0], "range": [0.0, 0.0], "n_tasks": 13,
          "folds": [["a"], ["b"]], "why": "nothing carries",
          "fallback": {"method": "role", "why": "role has the higher mean", "role_gain": gain}}  # fmt: skip
    row = {"src": "s", "tgt": "t", "task": "capitals", "method": "dfa", "zero_shot": zs,
           "paired": {"depth": {"diff": 0.45, "ci": [0.3, 0.6]}}}  # fmt: skip
    line = estimate_table([row]).splitlines()[2]
    assert line.startswith("| s -> t | capitals | role (nothing carries) | +0.200 [+0.100, +0.300] | -0.050 to +0.400 |")
    assert line.endswith("| no | no |")  # +0.45 lies outside role's per-task range on the training tasks
    text = zero_shot_text(zs)
    assert "the fallback: the role baseline's ranking" in text and "fallback: role: role has the higher mean" in text
