"""The fallback: the non-learned alignment unseen tasks get when nothing of the map carries."""

from __future__ import annotations

import json

import pytest

from dfa.config import ConfigError, TrainConfig
from dfa.core.circuits import task_prompts
from dfa.core.evaluate import capped_cpr, evaluate_circuits
from dfa.core.graph import NodeGraph
from dfa.methods import depth_tie_scores
from dfa.store import ModelPool, cached_scores
from dfa.training.data import source_spec
from dfa.training.fallback import add_fallback, choose_fallback, needs_fallback
from tests.test_training import small_config


def test_a_fallback_named_in_the_config_is_taken_without_scoring_anything():
    assert choose_fallback(TrainConfig(fallback="role"), pool=None) == {
        "method": "role", "why": "set by the config (fallback: role)",
    }  # fmt: skip
    with pytest.raises(ConfigError, match="fallback"):
        TrainConfig(fallback="gold").check()  # type: ignore[arg-type]


def test_auto_keeps_the_alignment_with_the_higher_mean_val_cpr_on_the_training_tasks(tmp_path):
    c = small_config(tmp_path)
    pool = ModelPool("cpu")
    fb = choose_fallback(c, pool)
    assert set(fb["per_task"]) == {"sva", "gender"} and fb["split"] == "val" and fb["n_val"] == 10
    gains = [v["role"] - v["depth"] for v in fb["per_task"].values()]
    assert fb["role_gain"]["mean"] == pytest.approx(sum(gains) / 2)
    assert fb["method"] == ("role" if sum(gains) > 0 else "depth") and fb["method"] in fb["why"]
    assert fb["cost"][c.tgt]["forward_rows"] > 0 and c.src not in fb["cost"]
    # depth's value: its two tie orders on the task's 10 val prompts, capped at 1
    target = pool.get(c.tgt)
    graph = NodeGraph.from_model(target)
    s = cached_scores(pool, c.cache_dir, c.src, "sva", source_spec(c))
    src_graph = NodeGraph.from_model(pool.get(c.src))
    source = src_graph.mapped_scores(s.for_graph(src_graph, "sva"))
    p = task_prompts(target, "sva", "val", 10, c.data_seed)
    ranks = {"depth": depth_tie_scores(src_graph, graph, source, c.seed, 2)}
    ev = evaluate_circuits(target, graph, p.batches, p.data.metric, ranks, ablation=c.ablation, n_boot=0)
    curve = ev.curves["depth"]
    assert fb["per_task"]["sva"]["depth"] == pytest.approx(capped_cpr(curve.faithfulness, curve.fractions))


def test_a_run_without_folds_records_its_fallback_and_an_older_run_gets_it_when_found_finished(tmp_path):
    from dfa.training import train

    c = small_config(tmp_path, holdout=["ioi"], zero_shot_folds=3)  # 2 tasks: under zero_shot_min_tasks
    run = train(c, progress=False)
    info = json.loads((run / "map.json").read_text())
    fb = info["zero_shot"]["fallback"]
    rows = fb["cost"][c.tgt]["forward_rows"]
    assert fb["method"] in ("depth", "role") and info["training_cost"][c.tgt]["forward_rows"] > rows
    assert json.loads((run / "zero_shot" / "map.json").read_text())["zero_shot"]["fallback"] == fb
    # A run trained before the fallback existed: found finished, it gets one, and nothing retrains.
    old = {**info, "zero_shot": {k: v for k, v in info["zero_shot"].items() if k != "fallback"}}
    old["training_cost"] = json.loads(json.dumps(info["training_cost"]))
    old["training_cost"][c.tgt]["forward_rows"] -= rows
    (run / "map.json").write_text(json.dumps(old))
    assert needs_fallback(old) and not needs_fallback(info)
    weights = (run / "map.safetensors").stat().st_mtime_ns
    assert train(c, progress=False) == run
    again = json.loads((run / "map.json").read_text())
    flat = lambda f: [v[m] for v in f["per_task"].values() for m in ("depth", "role")]  # noqa: E731
    chosen = again["zero_shot"]["fallback"]
    assert chosen["method"] == fb["method"] and flat(chosen) == pytest.approx(flat(fb))
    assert again["training_cost"][c.tgt]["forward_rows"] == info["training_cost"][c.tgt]["forward_rows"]
    assert (run / "map.safetensors").stat().st_mtime_ns == weights
    assert add_fallback(old, {"method": "depth"})["zero_shot"]["fallback"] == {"method": "depth"}


def test_the_fallback_script_writes_a_configs_choice_without_training(tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "src: toy-gpt2-s\ntgt: toy-neox-s\ntasks: [sva, gender]\nn_src: 12\nn_val: 10\nig_steps: 2\n"
        f"out: {tmp_path / 'ck'}\n"
    )
    out = tmp_path / "fb.json"
    done = subprocess.run(
        [sys.executable, "scripts/fallback.py", "--config", str(cfg), "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    fb = json.loads(out.read_text())
    assert fb["tasks"] == ["sva", "gender"] and fb["method"] in ("depth", "role")
    assert f"fallback: {fb['method']}: " in done.stdout
    assert not (tmp_path / "ck" / "toy-gpt2-s__toy-neox-s").exists()  # nothing trained
