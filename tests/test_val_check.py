"""The val check (`dfa.experiments.val_check`): candidates, capped paired gains, the choice, the
`dfa-val` method on tasks outside training and on training tasks, and its LOTO table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfa.core.evaluate import Curve, Evaluation, capped_cpr
from dfa.core.mapping import AlignmentMap
from dfa.experiments.val_check import PRIOR, blend, capped_gain, choose, held_maps, why
from dfa.report.zero_shot import val_check_table

FR = [0.1, 0.5, 1.0]


def _curve(label: str, f: list[float], boot: np.ndarray) -> Curve:
    return Curve(label, FR, [], 0, f, 0.0, 0.0, 0.0, (0.0, 0.0), boot_faith=boot)


def test_capped_gain_caps_each_curve_and_each_resample_at_1():
    # a overshoots at the largest circuit (1.4): capped there, it is 0.9 everywhere but 1.0 at the end.
    a = _curve("a", [0.9, 0.9, 1.4], np.array([[0.9, 0.8], [0.9, 0.8], [1.4, 0.8]]))
    b = _curve("b", [0.5, 0.7, 1.0], np.array([[0.5, 0.6], [0.7, 0.6], [1.0, 0.6]]))
    ev = Evaluation({"a": a, "b": b}, 2, 2, 1.0, 0.0, "kept", "patching", [], [], [], [])
    g = capped_gain(ev, "a", "b")
    # by hand: trapezoid over [0.1, 0.5, 1]: capped a = 0.4*0.9 + 0.5*0.95 = 0.835; b = 0.4*0.6 + 0.5*0.85 = 0.665
    assert g["diff"] == pytest.approx(0.835 - 0.665)
    assert capped_cpr(a.faithfulness, FR) == pytest.approx(0.835)
    # resamples: a (capped) [0.835, 0.72], b [0.665, 0.54]: differences 0.17 and 0.18
    assert g["ci"] == pytest.approx([np.percentile([0.17, 0.18], 2.5), np.percentile([0.17, 0.18], 97.5)])


def test_the_choice_is_the_highest_lower_bound_else_depth():
    gains = {
        "epoch 1 x 1": {"diff": 0.10, "ci": [0.01, 0.19]},
        "epoch 2 x 0.5": {"diff": 0.05, "ci": [0.03, 0.07]},  # smaller gain, surer: chosen
        "kept x 1": {"diff": 0.20, "ci": [-0.01, 0.41]},
    }
    assert choose(gains) == "epoch 2 x 0.5"
    assert (
        choose({k: {"diff": v["diff"], "ci": [0.0, 1.0]} for k, v in gains.items()}) == PRIOR
    )  # 0 is not above 0
    assert choose({}) == PRIOR
    tie = {"a": {"diff": 0.1, "ci": [0.05, 0.2]}, "b": {"diff": 0.1, "ci": [0.05, 0.2]}}
    assert choose(tie) == "a"  # the earlier listed


def test_a_blend_moves_a_copy_of_the_map_from_the_start_toward_the_end():
    m = AlignmentMap(["a0.h0", "m0"], ["a0.h0", "a0.h1", "m0"])
    start = {"W": torch.zeros(2, 3), "b": torch.zeros(3)}
    end = {"W": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3)}
    out = blend(m, start, end, 0.25)
    assert torch.equal(out.W, 0.25 * end["W"]) and torch.equal(out.b, torch.full((3,), 0.25))
    assert out is not m and not torch.equal(m.W, out.W)  # the run's map is untouched


def test_held_maps_read_every_epoch_and_the_checkpoints_own_last_epoch(tmp_path):
    from dfa.config import TrainConfig

    class FakeRun:
        folder = tmp_path
        map = AlignmentMap(["a0.h0"], ["a0.h0", "m0"])
        config = TrainConfig(zero_shot_epochs=1)

    maps, read = held_maps(FakeRun())  # type: ignore[arg-type]
    assert list(maps) == ["kept"] and "no last.ckpt" in read
    e1 = {"W": torch.ones(1, 2), "b": torch.zeros(2)}
    last = {"map.W": torch.full((1, 2), 3.0), "map.b": torch.ones(2)}
    e2 = {"W": torch.full((1, 2), 2.0), "b": torch.zeros(2)}  # past zero_shot_epochs: not a candidate
    torch.save(
        {"epoch": 2, "state_dict": last, "dfa_selection": {"epoch_params": {1: e1, 2: e2}}},
        tmp_path / "last.ckpt",
    )
    maps, read = held_maps(FakeRun())  # type: ignore[arg-type]
    assert list(maps) == ["epoch 1", "epoch 3", "kept"] and read == "epochs 1, 3 and the kept map"
    assert torch.equal(maps["epoch 3"]["W"], last["map.W"]) and torch.equal(maps["epoch 1"]["W"], e1["W"])


def test_dfa_val_checks_a_task_outside_training_on_its_val_prompts(tmp_path, monkeypatch):
    import dfa.experiments.val_check as vc
    from dfa.experiments.transfer import Run, evaluate_run, evaluate_task, method_rankings
    from dfa.store import ModelPool
    from dfa.training import train
    from tests.test_training import small_config

    c = small_config(tmp_path, holdout=["ioi"], max_epochs=3, zero_shot_epochs=1)
    run = train(c, progress=False)
    ckpt = torch.load(run / "last.ckpt", weights_only=True)
    assert sorted(ckpt["dfa_selection"]["epoch_params"]) == [1]  # the folds' epochs (zero_shot_epochs)
    r, pool = Run(run), ModelPool("cpu")
    r.check_budget = "full"  # every candidate on every val prompt (the budgeted check: test_budgeted_...)
    maps = held_maps(r)[0]
    assert list(maps) == ["epoch 1", "epoch 3", "kept"]  # and the checkpoint's own, the last
    assert all(torch.equal(maps["epoch 3"][n], ckpt["state_dict"][f"map.{n}"]) for n in ("W", "b"))
    report, _ = evaluate_run(r, pool, ["ioi", "sva"], ["dfa", "dfa-val", "depth", "random"], "test", 10, 50)
    rows = {(x["task"], x["method"]): x for x in report["results"]}
    check = rows[("ioi", "dfa-val")]["val_check"]
    assert len(check["candidates"]) == 12 and check["n_prompts"] == c.n_val and check["split"] == "val"
    assert check["chosen"] == choose({k: v for k, v in check["candidates"].items()})
    assert (
        rows[("ioi", "dfa-val")]["map_used"] == check["chosen"]
        and "depth" in rows[("ioi", "dfa-val")]["paired"]
    )
    # The check's depth is the depth baseline on the task's val prompts (the same prompts, draws, cap).
    val = evaluate_task(r, pool, "ioi", ["depth"], "val", c.n_val, 0).curves["depth"]
    assert check["depth_cpr"] == pytest.approx(capped_cpr(val.faithfulness, val.fractions))
    # A training task keeps its map: dfa-val is dfa.
    assert rows[("sva", "dfa-val")]["cpr"] == rows[("sva", "dfa")]["cpr"]
    assert rows[("sva", "dfa-val")]["val_check"]["chosen"] == "kept"
    # transfer writes the checked circuit (its val check in the metadata) unless told not to check.
    from dfa.experiments.transfer import transfer

    r = Run(run)
    r.check_budget = "full"
    pred, _, _ = transfer(r, pool, "ioi", tmp_path / "t" / "ioi", evaluate=False)
    # transfer's check (one draw of its circuit) reads as evaluate's: the same interval.
    assert pred.meta["val_check"]["gain"] == check["gain"] and pred.meta["val_check"]["why"] == check["why"]
    assert (
        pred.meta["val_check"]["chosen"] == check["chosen"]
        and pred.meta["map_used"] == f"val check: {check['chosen']}"
        and pred.meta["method"] == "dfa-val"
    )
    r.check_budget = "full"
    top = method_rankings(r, pool, "ioi", ["dfa-val"], draws=1)["dfa-val"]
    top = top[0] if isinstance(top, list) else top
    k = pred.meta["circuit"]["k"]
    assert pred.meta["circuit"]["nodes"] == k + 1
    best = {pred.names[i + 1] for i in torch.argsort(top[1:], descending=True)[:k].tolist()}
    assert _in_graph(tmp_path / "t" / "ioi.json") == {"input", *best}  # the top k of dfa-val, and input
    pred, _, _ = transfer(Run(run), pool, "ioi", tmp_path / "u" / "ioi", evaluate=False, val_check=False)
    assert pred.meta["val_check"] is None and pred.meta["map_used"].startswith(
        "in-distribution (the run has no zero-shot"
    )
    assert pred.meta["method"] == "dfa"
    # Each choice ranks as it says: a candidate by its blended map's logits, the prior by depth's draws.
    for forced in ("epoch 3 x 0.5", PRIOR):
        monkeypatch.setattr(vc, "choose", lambda gains, f=forced: f)
        r = Run(run)
        ranks = method_rankings(r, pool, "ioi", ["dfa-val", "depth"], draws=3)
        assert r.checks["ioi"]["chosen"] == forced
        if forced == PRIOR:
            assert all(torch.equal(a, b) for a, b in zip(ranks["dfa-val"], ranks["depth"], strict=True))
            assert "depth is used" in r.checks["ioi"]["why"]
        else:
            chosen = r.checked_maps["ioi"]
            s0, e3 = vc.start_params(r), held_maps(r)[0]["epoch 3"]
            assert torch.allclose(chosen.W, s0["W"] + 0.5 * (e3["W"] - s0["W"]), atol=1e-6)


def _in_graph(path) -> set[str]:
    import json

    return {n for n, node in json.loads(path.read_text())["nodes"].items() if node["in_graph"]}


def test_the_loto_table_reads_each_cells_val_check():
    def row(task, chosen, gain_ci, test_ci, above_random=True):
        return {
            "src": "s", "tgt": "t", "task": task, "method": "dfa-val",
            "val_check": {
                "chosen": chosen, "gain": {"diff": sum(gain_ci) / 2, "ci": gain_ci},
                "vs_random": {"diff": 0.1, "ci": [0.05, 0.2] if above_random else [-0.1, 0.2]},
                "candidates": {chosen: {}},
            },
            "paired": {"depth": {"diff": sum(test_ci) / 2, "ci": test_ci}},
        }  # fmt: skip

    rows = [
        row("ioi", "epoch 1 x 0.5", [0.02, 0.08], [0.01, 0.05]),
        row("sva", "epoch 2 x 1", [0.01, 0.03], [-0.04, -0.01]),  # a claimed gain, a test loss
        row("gender", PRIOR, [0.0, 0.0], [-0.01, 0.01], above_random=False),
    ]
    text = val_check_table(rows)
    assert (
        "| s -> t | sva | epoch 2 x 1 | +0.020 [+0.010, +0.030] | yes | -0.025 [-0.040, -0.010] | YES |"
        in text
    )
    assert "| s -> t | gender | depth | +0.000 [+0.000, +0.000] | NO |" in text
    assert "A claimed gain where the test shows a loss: 1 of 3." in text
    assert val_check_table([{**rows[0], "method": "dfa"}]) == ""


def test_the_reading_says_when_the_chosen_circuit_is_no_better_than_random():
    r = {
        "n_prompts": 30, "chosen": PRIOR, "gain": {"diff": 0.0, "ci": [0.0, 0.0]}, "candidates": {"a": {}},
        "vs_random": {"diff": -0.1, "ci": [-0.2, -0.05]}, "cpr": 0.2, "random_cpr": 0.3,
    }  # fmt: skip
    assert why(r) == (
        "on 30 val prompts no map the run holds beats depth by its interval: depth is used; NOT above random "
        "rankings (0.200 against 0.300, -0.100 [-0.200, -0.050]): neither the map nor depth has anything to "
        "offer this task"
    )
    r.update(chosen="epoch 2 x 1", gain={"diff": 0.1, "ci": [0.05, 0.2]})
    assert why(r).startswith(
        "on 30 val prompts, epoch 2 x 1 beats depth by +0.100 [+0.050, +0.200] (the best of 1"
    )
    assert why(r).endswith("): the map has nothing to offer this task")
    r["vs_random"] = {"diff": 0.3, "ci": [0.2, 0.4]}
    assert why(r).endswith("; above random rankings by +0.300 [+0.200, +0.400]")


def test_check_sizes_are_the_largest_cpr_weights():
    from dfa.experiments.val_race import check_sizes

    # Trapezoid weights of .05 .1 .2 .5 (1: the full circuit, no ranking changes it): .04 .075 .2 .4,
    # and under .05 together .03 of the .745: .5 and .2 hold 0.805 (the default reads them), and .1
    # brings 0.905, the first over 0.9.
    assert check_sizes(100) == [0.2, 0.5]
    assert check_sizes(100, cover=0.9) == [0.1, 0.2, 0.5]
    assert check_sizes(4) == [0.5]  # k = int(f * 4) is 0 below 0.25: only 0.5 cuts


def test_budgeted_check_halves_the_candidates_within_its_budget_forward_only(tmp_path, monkeypatch):
    import dfa.experiments.val_race as race_mod
    from dfa.core.errors import DfaError
    from dfa.experiments.runs import Run
    from dfa.experiments.transfer import method_inputs
    from dfa.experiments.val_check import val_check
    from dfa.store import ModelPool
    from tests.test_training import small_config

    c = small_config(tmp_path, holdout=["ioi"], max_epochs=3, zero_shot_epochs=1, n_src=100, n_val=40)
    run = train_run(c)
    r, pool = Run(run), ModelPool("cpu")
    _, rec = val_check(r, pool, "ioi", method_inputs(r, pool, "ioi"))
    b, spent = rec["budget"], rec["cost"]["toy-neox-s"]
    # gold: EAP-IG on 100 prompts, 2 steps: 100 + 200 forward rows, 200 backward: 700 rows; 20%: 140.
    assert (b["gold_rows"], b["rows"], b["share"]) == (700, 140, 0.2)
    assert spent["backward_rows"] == 0  # forward only
    assert spent["forward_rows"] == b["spent"] == sum(x["rows"] for x in b["rounds"]) <= 140
    assert [x["candidates"] for x in b["rounds"]][:4] == [12, 6, 3, 2]  # halved each round
    survivors = {k: v for k, v in rec["candidates"].items() if "dropped_after_round" not in v}
    assert rec["chosen"] == choose(survivors) and len(survivors) == 1
    assert rec["n_prompts"] == sum(x["prompts"] for x in b["rounds"]) < c.n_val
    assert "budgeted: " in rec["why"] and f"of 140, 20% of gold's 700" in rec["why"]
    # A bigger budget reads more prompts; "full" is the unbudgeted check.
    r.check_budget = 1.0
    _, more = val_check(r, pool, "ioi", method_inputs(r, pool, "ioi"))
    assert more["n_prompts"] > rec["n_prompts"] and more["budget"]["spent"] <= 700
    # A short val split: read whole down to the floor, said; under it, an error naming the fix.
    real = race_mod.make_dataset

    def short(keep):
        def make(*a, **k):
            data = real(*a, **k)
            data.examples = data.examples[:keep]
            return data

        return make

    monkeypatch.setattr(race_mod, "make_dataset", short(12))
    r = Run(run)
    r.check_budget = "full"
    _, small = val_check(r, pool, "ioi", method_inputs(r, pool, "ioi"))
    assert small["n_prompts"] == 12 and "holds 12 usable prompts, fewer than the 40 asked for" in small["why"]
    monkeypatch.setattr(race_mod, "make_dataset", short(race_mod.VAL_FLOOR - 1))
    with pytest.raises(DfaError, match=r"holds 9 usable prompts .* under the val check's floor of 10"):
        val_check(Run(run), pool, "ioi", method_inputs(Run(run), pool, "ioi"))


def train_run(c):
    from dfa.training import train

    return train(c, progress=False)


def test_dfa_tasks_says_what_a_task_file_is_enough_for():
    from dfa.experiments.val_race import enough_for

    text = enough_for({"train": 184, "val": 26, "test": 30})
    assert "training (184 train pairs): with --n-src and --n-train at most 184 (default 100, 200)" in text
    assert "transfer's val check (26 val pairs): read whole (under its 50, over its floor of 10)" in text
    assert text.endswith("a tight test interval (30 test pairs): yes")
    text = enough_for({"train": 200, "val": 9, "test": 12})
    assert "training (200 train pairs): yes" in text and "NO: under its floor of 10" in text
    assert text.endswith("(12 test pairs): no (under 30 pairs)")
