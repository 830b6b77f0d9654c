"""Circuit evaluation: areas on hand-made curves, circuit sizes, faithfulness from masked runs,
intervals and overlap (the plots: tests/test_report.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dfa.core.errors import DfaError
from dfa.core.evaluate import (
    FRACTIONS,
    circuit_masks,
    circuit_size,
    cluster_weights,
    cmd,
    cpr,
    cpr_log,
    curve,
    evaluate_circuits,
    overlap,
    random_scores,
    size_weights,
)
from dfa.core.graph import NodeGraph
from dfa.core.interventions import donor_activations, run_masked
from dfa.core.metrics import task_metric
from tests.micro import micro_batch


def test_areas_of_hand_made_curves():
    step = [0.0] * 8 + [0.0, 1.0]  # f = 0 up to 50%, 1 at 100%: the input-ablated artifact
    assert cpr(FRACTIONS, step) == pytest.approx(0.25)
    assert cmd(FRACTIONS, step) == pytest.approx(0.999 - 0.25)
    perfect = [1.0] * 10
    assert cpr(FRACTIONS, perfect) == pytest.approx(0.999)
    assert cmd(FRACTIONS, perfect) == 0
    assert cpr_log(FRACTIONS, perfect) == pytest.approx(1.0)
    # log-x: f = 1 from 1% on covers two of the three decades, plus half the 0.5% -> 1% step
    late = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert cpr_log(FRACTIONS, late) == pytest.approx((2 + 0.5 * 0.30103) / 3, abs=1e-4)
    over = [0.0] * 5 + [2.0] * 4 + [1.0]  # overshooting counts in CMD both ways
    assert cmd(FRACTIONS, over) > cmd(FRACTIONS, [0.0] * 5 + [1.0] * 5)


def test_circuit_sizes_follow_mib():
    assert [circuit_size(f, 52) for f in FRACTIONS] == [0, 0, 0, 0, 1, 2, 5, 10, 26, 52]
    assert circuit_size(0.29, 100) == 29  # not 28 from 0.29 * 100 = 28.999...


def test_circuit_masks_keep_input_and_unscored_nodes_and_rank_by_abs():
    g = NodeGraph(1, 3)  # input, a0.h0, a0.h1, a0.h2, m0
    scores = torch.tensor([9.0, 0.5, -3.0, float("nan"), 1.0])
    masks, ks = circuit_masks(scores, g, [0.34, 0.67, 1.0])
    assert ks == [1, 2, 3]  # three ranked nodes: a0.h0, a0.h1, m0
    assert masks.tolist() == [[1, 0, 1, 1, 0], [1, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    signed, _ = circuit_masks(scores, g, [0.34], rank="signed")
    assert signed.tolist() == [[1, 0, 0, 1, 1]]
    ranked_input, ks = circuit_masks(scores, g, [0.25], keep_input=False)
    assert ks == [1] and ranked_input.tolist() == [[1, 0, 0, 1, 0]]


def test_overlap_of_two_rankings():
    g = NodeGraph(1, 3)
    a = torch.tensor([0.0, 4.0, 3.0, 2.0, 1.0])
    b = torch.tensor([0.0, 4.0, 1.0, 3.0, 2.0])
    o = overlap(a, b, g, 0.5)
    assert (o["k"], o["shared"], o["share"], o["nodes"]) == (2, 1, 0.5, ["a0.h0"])
    assert o["jaccard"] == pytest.approx(1 / 3)


def test_curve_points_are_masked_runs_and_the_ends_are_exact(tiny_model):
    g = NodeGraph.from_model(tiny_model)
    batches = [micro_batch(n=6, pos=6, vocab=18, seed=s) for s in (0, 1)]
    scores = random_scores(len(g), 3)
    fractions = [0.25, 0.5, 1.0]
    ev = evaluate_circuits(tiny_model, g, batches, "logit_diff", {"r": scores}, fractions, n_boot=200)
    curve = ev.curves["r"]
    assert curve.faithfulness[-1] == 1.0  # the whole graph is the clean model, bit for bit
    masks, ks = circuit_masks(scores, g, fractions)
    assert ks == [2, 4, 8]  # of 8 ranked nodes: 6 heads and 2 MLPs, the input kept
    full, empty, mid = [], [], []
    for b in batches:
        donor = donor_activations(tiny_model, g, b, "patching")
        with torch.no_grad():
            full.append(task_metric("logit_diff", tiny_model(b["clean"]), b))
            only_input = torch.zeros(len(g))
            only_input[0] = 1
            empty.append(
                task_metric("logit_diff", run_masked(tiny_model, g, b["clean"], donor, only_input), b)
            )
            mid.append(task_metric("logit_diff", run_masked(tiny_model, g, b["clean"], donor, masks[1]), b))
    full, empty, mid = (torch.cat(x).mean().item() for x in (full, empty, mid))
    assert ev.clean == pytest.approx(full, abs=1e-5) and ev.empty == pytest.approx(empty, abs=1e-5)
    assert curve.faithfulness[1] == pytest.approx((mid - empty) / (full - empty), rel=1e-4)
    assert curve.cpr == pytest.approx(cpr(fractions, curve.faithfulness))
    lo, hi = curve.cpr_ci
    assert lo <= curve.cpr <= hi and lo < hi


def test_random_baseline_averages_its_draws(tiny_model):
    g = NodeGraph.from_model(tiny_model)
    batches = [micro_batch(n=6, pos=6, vocab=18, seed=0)]
    draws = [random_scores(len(g), s) for s in range(3)]
    ev = evaluate_circuits(
        tiny_model,
        g,
        batches,
        "logit_diff",
        {"random": draws, **{f"d{i}": d for i, d in enumerate(draws)}},
        n_boot=0,
    )
    mean = torch.tensor([ev.curves[f"d{i}"].faithfulness for i in range(3)]).mean(0)
    torch.testing.assert_close(torch.tensor(ev.curves["random"].faithfulness), mean, rtol=1e-6, atol=1e-9)
    assert ev.curves["random"].n_draws == 3


def test_size_weights_by_hand():
    # 100 nodes: the fractions give k = 0, 0, 0, 1, 2, 5, 10, 20, 50, 100; only 1..50 can change.
    ks, w = size_weights(100, FRACTIONS, "cpr")
    assert ks == [1, 2, 5, 10, 20, 50]
    # Trapezoid weight of each point on the linear axis: half the gap on each side.
    raw = [
        (0.02 - 0.005) / 2,
        (0.05 - 0.01) / 2,
        (0.1 - 0.02) / 2,
        (0.2 - 0.05) / 2,
        (0.5 - 0.1) / 2,
        (1 - 0.2) / 2,
    ]
    assert w == pytest.approx([r / sum(raw) for r in raw])
    ks_log, w_log = size_weights(100, FRACTIONS, "log")
    assert ks_log == ks and w_log[0] > w[0] and w_log[-1] < w[-1]  # log-x weighs small circuits more
    _, both = size_weights(100, FRACTIONS, "both")
    assert sum(both) == pytest.approx(1.0)
    # Two fractions with one size add up: with 10 nodes, 0.1 and 0.15 both give k = 1.
    ks10, w10 = size_weights(10, [0.05, 0.1, 0.15, 0.5, 1.0], "cpr")
    # point weights: 0.05: 0.025, 0.1: 0.05, 0.15: 0.2, 0.5: 0.425, 1.0: 0.25 (k = 0, 1, 1, 5, 10)
    assert ks10 == [1, 5] and w10 == pytest.approx([0.25 / 0.675, 0.425 / 0.675])
    with pytest.raises(DfaError, match="Unknown size weighting"):
        size_weights(10, FRACTIONS, "area")


def test_paired_differences_use_the_same_resamples(tiny_model):
    g = NodeGraph.from_model(tiny_model)
    batches = [micro_batch(n=8, pos=6, vocab=18, seed=1)]
    a, b = random_scores(len(g), 0), random_scores(len(g), 1)
    ev = evaluate_circuits(
        tiny_model, g, batches, "logit_diff", {"a": a, "b": b, "a2": a.clone()}, n_boot=200
    )
    p = ev.paired("a", "b")
    assert p["diff"] == pytest.approx(ev.curves["a"].cpr - ev.curves["b"].cpr)
    assert p["ci"][0] <= p["diff"] <= p["ci"][1]
    assert ev.paired("a", "a2") == {"diff": 0.0, "ci": [0.0, 0.0]}  # a ranking against itself
    # Paired, the interval of a difference is no wider than the two separate intervals combined.
    width = p["ci"][1] - p["ci"][0]
    ca, cb = ev.curves["a"].cpr_ci, ev.curves["b"].cpr_ci
    assert width <= (ca[1] - ca[0]) + (cb[1] - cb[0]) + 1e-12
    unbooted = evaluate_circuits(tiny_model, g, batches, "logit_diff", {"a": a, "b": b}, n_boot=0)
    assert all(math.isnan(x) for x in unbooted.paired("a", "b")["ci"])  # NaN without a bootstrap


def test_answer_only_chunked_curves_equal_full_logits_all_at_once():
    """A toy model's curves and per-prompt metrics: the answer position alone unembedded and one
    circuit per pass (the default) against every position and every circuit in one pass."""
    from dfa.core.models import load_model
    from dfa.core.tasks import make_batches, make_dataset
    from tests.micro import FullLogits

    model = load_model("toy-gpt2-s", device="cpu")
    g = NodeGraph.from_model(model)
    data = make_dataset("ioi", model, 24, "test")
    batches = make_batches(data.examples, model, 12)
    rankings = {"a": random_scores(len(g), 5), "r": [random_scores(len(g), s) for s in (6, 7)]}
    new = evaluate_circuits(model, g, batches, data.metric, rankings, n_boot=20)
    old = evaluate_circuits(FullLogits(model), g, batches, data.metric, rankings, n_boot=20, max_rows=10**6)
    torch.testing.assert_close(torch.tensor(new.clean_per_prompt), torch.tensor(old.clean_per_prompt))
    torch.testing.assert_close(torch.tensor(new.empty_per_prompt), torch.tensor(old.empty_per_prompt))
    for label in rankings:
        a, b = torch.tensor(new.curves[label].faithfulness), torch.tensor(old.curves[label].faithfulness)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        assert new.curves[label].cpr_ci == pytest.approx(old.curves[label].cpr_ci, abs=1e-5)
    assert new.clean > new.empty + 0.5  # the toy model solves the task: the comparison has range


def test_cluster_weights_resample_units_and_reduce_to_the_pair_bootstrap():
    rng = np.random.default_rng(0)
    w = cluster_weights(["a", "b", "a", "c", "b", "a"], 50, rng)
    assert w.shape == (6, 50) and np.allclose(w.sum(0), 1)
    # prompts of one unit always carry the same weight: the unit is drawn, not the pair
    assert np.allclose(w[0], w[2]) and np.allclose(w[0], w[5]) and np.allclose(w[1], w[4])
    # every unit distinct: exactly the ordinary bootstrap over prompts, draw for draw
    n = 7
    pair = np.random.default_rng(3).multinomial(n, np.full(n, 1 / n), size=40).T / n
    assert np.allclose(cluster_weights(list(range(n)), 40, np.random.default_rng(3)), pair)


def test_duplicated_prompts_widen_the_interval():
    """Ten copies of each of six clean prompts are six observations, not sixty: the interval
    over the distinct prompts is wider than the one that treats every pair as independent."""
    rng = np.random.default_rng(0)
    fractions = [0.1, 0.5, 1.0]
    own = rng.uniform(0.2, 0.8, size=6)  # each prompt's circuit metric at the middle size
    units = np.repeat(np.arange(6), 10)  # 60 pairs, 6 distinct clean prompts
    m_c = np.stack([0.5 * own[units], own[units], np.ones(60)])[None]  # [1 draw, 3 fractions, 60]
    full, empty = np.ones(60), np.zeros(60)
    by_prompt = curve("r", m_c, full, empty, fractions, cluster_weights(list(units), 500, rng))
    by_pair = curve("r", m_c, full, empty, fractions, cluster_weights(list(range(60)), 500, rng))
    assert by_prompt.cpr == by_pair.cpr  # the same point estimate
    lo_c, hi_c = by_prompt.cpr_ci
    lo_p, hi_p = by_pair.cpr_ci
    assert hi_c - lo_c > 2 * (hi_p - lo_p)  # about sqrt(10) wider


def test_evaluation_resamples_distinct_prompts(tiny_model):
    g = NodeGraph.from_model(tiny_model)
    base = micro_batch(n=4, pos=6, vocab=18, seed=2)
    rows = torch.arange(4).repeat_interleave(3)  # 12 pairs, 4 distinct clean prompts
    batch = {k: v[rows] for k, v in base.items()}
    texts = [f"prompt {int(i)}" for i in rows]
    scores = {"r": random_scores(len(g), 1)}
    ev = evaluate_circuits(tiny_model, g, [batch], "logit_diff", scores, n_boot=50, prompts=texts)
    assert (ev.n_prompts, ev.n_distinct) == (12, 4)
    assert ev.to_json()["n_distinct_prompts"] == 4
    alone = evaluate_circuits(tiny_model, g, [batch], "logit_diff", scores, n_boot=50)
    assert alone.n_distinct == 12  # without prompt texts every pair is its own unit
