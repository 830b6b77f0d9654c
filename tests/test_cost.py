"""The cost accounting (`dfa.core.cost`): rows, backward rows and tokens of tiny runs against counts
made by hand; what cached scores carry; the pay-off arithmetic."""

from __future__ import annotations

import pytest
import torch

from dfa.core.cost import Cost, ModelCost, pays_off_after, ratio


@pytest.fixture(scope="module")
def toy():
    from dfa.core.circuits import task_prompts
    from dfa.core.graph import NodeGraph
    from dfa.core.models import load_model

    model = load_model("toy-gpt2-s", device="cpu")
    prompts = task_prompts(model, "ioi", "train", 6, 0, batch_size=3)  # two batches of 3
    return model, NodeGraph.from_model(model), prompts


def _tokens(prompts, passes_per_batch: int) -> int:
    return sum(passes_per_batch * b["clean"].numel() for b in prompts.batches)


def test_eap_ig_counts_its_passes_by_hand(toy):
    from dfa.core.attribution import attribute, attribution_rows

    model, graph, prompts = toy
    cost = Cost()
    with cost.watch(model, "m"):
        attribute(model, graph, prompts.batches, prompts.data.metric, "eap-ig-inputs", ig_steps=5)
    m = cost.models["m"]
    # Per batch of 3: the corrupt pass (the donor), then 5 IG steps forward and backward.
    assert (m.forward_rows, m.backward_rows) == (2 * (3 + 5 * 3), 2 * 5 * 3) == (36, 30)
    assert m.rows == 36 + 2 * 30
    assert m.tokens == _tokens(prompts, 6)  # clean and corrupt rows have one length
    assert attribution_rows("eap-ig-inputs", 6, 5) == (36, 30)
    assert m.memory == "rss" and m.peak_mb > 0 and m.seconds > 0


def test_exact_and_eap_counts(toy):
    from dfa.core.attribution import attribute, attribution_rows

    model, graph, prompts = toy
    for method, want in (("exact", (6 * (2 + len(graph)), 0)), ("eap", (12, 6))):
        cost = Cost()
        with cost.watch(model):
            attribute(model, graph, prompts.batches, prompts.data.metric, method)
        m = cost.models["toy-gpt2-s"]  # named after the loaded model by default
        assert (m.forward_rows, m.backward_rows) == want == attribution_rows(method, 6, 5, len(graph))


def test_the_judge_counts_each_distinct_circuit_once(toy):
    from dfa.core.evaluate import distinct_circuits, evaluate_circuits

    model, graph, prompts = toy
    a = torch.arange(len(graph), dtype=torch.float32)
    rankings = {"a": a, "same": a.clone(), "b": -a}
    ev = evaluate_circuits(model, graph, prompts.batches, prompts.data.metric, rankings, n_boot=10)
    unique, _ = distinct_circuits(list(rankings.values()), graph)
    m = ev.judge_cost["toy-gpt2-s"]
    # Per prompt: the corrupt pass, the clean pass, one row per distinct circuit; no backward.
    assert m["forward_rows"] == 6 * (2 + len(unique)) and m["backward_rows"] == 0
    assert len(unique) < 1 + 3 * 10  # "same" ran no pass of its own


def test_cached_scores_carry_what_they_cost(tmp_path):
    from dfa.store import ModelPool, ScoreSpec, cached_scores

    pool = ModelPool("cpu")
    spec = ScoreSpec(n=4, ig_steps=2)
    made = cached_scores(pool, tmp_path, "toy-gpt2-s", "ioi", spec)
    again = cached_scores(ModelPool("cpu"), tmp_path, "toy-gpt2-s", "ioi", spec)  # from the file
    cost = Cost.from_json(again.meta["cost"])
    assert made.meta["cost"] == again.meta["cost"]
    assert (cost.models["toy-gpt2-s"].forward_rows, cost.models["toy-gpt2-s"].backward_rows) == (12, 8)


def test_costs_add_and_compare():
    a = Cost({"t": ModelCost(forward_rows=10, backward_rows=5, tokens=100, seconds=1.0, peak_mb=50)})
    b = Cost.from_json({"t": {"forward_rows": 3, "peak_mb": 80, "rows": 3}, "s": {"forward_rows": 7}})
    total = a + b
    assert total.rows("t") == 13 + 2 * 5 and total.rows("s") == 7 and total.rows() == 30
    assert total.models["t"].peak_mb == 80  # a peak is a maximum, not a sum
    assert a.rows("t") == 20  # `+` leaves its operands alone
    assert ratio(30, 120) == 0.25 and ratio(30, 0) is None and ratio(None, 5) is None
    assert pays_off_after(1000, 20, 120) == 10.0  # 1000 rows of training / 100 saved per task
    assert pays_off_after(1000, 120, 120) is None


def test_each_methods_cost_on_a_tiny_run_by_hand(tmp_path):
    from dfa.experiments.transfer import Run, evaluate_run
    from dfa.report.tables import evaluation_text
    from dfa.store import ModelPool
    from dfa.training import train
    from tests.test_training import small_config

    c = small_config(tmp_path, holdout=["ioi"], max_epochs=1)  # n_src 12, ig_steps 2
    run = train(c, progress=False)
    trained = Run(run).meta["training_cost"]["toy-neox-s"]
    assert trained["backward_rows"] > 0 and trained["forward_rows"] > trained["backward_rows"]
    # Its source scores, on the two training tasks and the held-out one: 84 source rows each.
    source = Run(run).meta["source_cost"]["toy-gpt2-s"]
    assert (source["forward_rows"], source["backward_rows"]) == (3 * 36, 3 * 24)
    report, _ = evaluate_run(Run(run), ModelPool("cpu"), ["ioi"], ["dfa", "gold", "depth"], "test", 10, 20)
    rows = {r["method"]: r for r in report["results"]}
    # gold: EAP-IG on 12 prompts, 2 steps: 12 corrupt rows + 2 x 12 forward, 2 x 12 backward.
    gold = rows["gold"]["cost"]
    assert (gold["target"]["forward_rows"], gold["target"]["backward_rows"]) == (36, 24)
    assert gold["target_rows"] == 36 + 2 * 24 == gold["gold_rows"] and gold["vs_gold"] == 1.0
    assert gold["source_rows"] == 0 and gold["reads"] == ["gold"]
    for method in ("dfa", "depth"):  # the source's scores alone: the same count on the source
        cost = rows[method]["cost"]
        assert cost["target_rows"] == 0 and cost["vs_gold"] == 0.0 and cost["source_rows"] == 84
    judge = rows["dfa"]["judge_cost"]["toy-neox-s"]
    assert judge["backward_rows"] == 0 and judge["forward_rows"] % 10 == 0  # whole passes of 10 prompts
    text = evaluation_text(report, ["dfa", "gold", "depth"])
    assert "| ioi | 0 (0.00) | 84 (1.00) | 0 (0.00) | 84 |" in text
    assert f"dfa: training {trained['rows']} target rows + 0 a task against gold's 84" in text
    assert "training's source scores (every task it read, once each; cached): 252 source rows" in text


def test_check_cost_reads_each_budget_against_gold(tmp_path, capsys):
    import json

    from dfa.cli import main
    from dfa.training import train
    from tests.test_training import small_config

    c = small_config(tmp_path, holdout=["ioi"], max_epochs=2, zero_shot_epochs=1, n_src=100, n_val=30)
    run = train(c, progress=False)
    out = tmp_path / "cc.json"
    assert main(["check-cost", "--maps", str(run), "--budgets", "0.2", "full", "--n", "10", "--boot", "20",
                 "--json", str(out), "--plot", str(tmp_path / "cc.png"), "--device", "cpu"]) == 0  # fmt: skip
    assert (tmp_path / "cc.png").read_bytes()[:4] == b"\x89PNG"
    cell = json.loads(out.read_text())["cells"][0]
    # gold: EAP-IG, 100 prompts, 2 steps: 300 forward rows and 200 backward, 700 forward-equivalent.
    assert cell["gold_rows"] == 700 and cell["gold_cost"]["toy-neox-s"]["backward_rows"] == 200
    small, full = cell["checks"]["dfa-val@0.2"], cell["checks"]["dfa-val@full"]
    assert small["target_rows"] <= 140 and small["vs_gold"] == small["target_rows"] / 700
    assert full["target_rows"] > small["target_rows"] and full["cost"]["toy-neox-s"]["backward_rows"] == 0
    assert full["n_prompts"] == 30 and small["vs_full"] is not None and full["vs_full"] is None
    assert "dfa-val@0.2: target rows x gold" in capsys.readouterr().out


def test_a_blocks_working_memory_is_its_rise_over_what_was_held(toy):
    model, graph, prompts = toy
    cost = Cost()
    with cost.watch(model, "m"):
        big = torch.ones(64 * 2**20 // 4)  # 64 MB held while the pass runs
        model.run_with_hooks(prompts.batches[0]["clean"], fwd_hooks=[])
        del big
    m = cost.models["m"]
    assert m.added_mb >= 60 and m.peak_mb >= m.added_mb and m.forward_rows == 3
