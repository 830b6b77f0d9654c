"""The fallback: what a task outside training gets when the run's inner folds found nothing of the
map that carries to tasks they never saw (`dfa.training.zero_shot`: the zero-shot choice is the
start), or when the run has too few training tasks for folds.

Such a task is ranked by a non-learned alignment of the source's scores instead: `depth`
(relative depth) or `role` (role profile x relative depth, `dfa.core.alignment`; both in
`dfa.methods`). Neither learns from any task, so what each scores on the run's own training tasks
is a fair estimate of what it scores on a new one. With `fallback: auto` (the default) the run
scores both on every training task's val prompts (forward passes of the target; the same prompts,
intervention and circuit sizes for both; faithfulness capped at 1, as selection reads it; depth's
ties in `DEPTH_DRAWS` random orders) and keeps the one with the higher mean, depth on a tie.
`fallback: depth` or `fallback: role` fixes it without scoring.

The record, `zero_shot.fallback` in `map.json`: the method, why, and with `auto` each task's capped
val CPR under both, role's mean gain over depth with its 95% bootstrap interval over the tasks
(`zero_shot.summarise`), and the target's passes it cost (added to the run's `training_cost`).
A run trained before the fallback existed gets it the next time its training command finds it
finished, or LOTO reuses it (`ensure_fallback`); until then it falls back to depth, as it was
evaluated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dfa.config import TrainConfig
from dfa.core.cost import Cost
from dfa.core.evaluate import capped_cpr, evaluate_circuits
from dfa.core.graph import NodeGraph
from dfa.core.scores import scores_graph
from dfa.core.io import write_json
from dfa.core.tasks import task_label
from dfa.training.data import source_spec
from dfa.training.zero_shot import FOLDER, summarise

CANDIDATES = ("depth", "role")
DEPTH_DRAWS = 2  # depth's tie orders read per task (each is a circuit per size per prompt)


def fixed(method: str) -> dict[str, Any]:
    """The record of a fallback the config names."""
    return {"method": method, "why": f"set by the config (fallback: {method})"}


def choose_fallback(config: TrainConfig, pool: Any, progress: bool = False) -> dict[str, Any]:
    """The fallback of a run with `config` (module docstring), its models from `pool`."""
    if config.fallback != "auto":
        return fixed(config.fallback)
    from dfa.core.circuits import task_prompts
    from dfa.methods import Inputs, score_methods
    from dfa.store import cached_roles, cached_scores

    cpr: dict[str, dict[str, float]] = {m: {} for m in CANDIDATES}
    cost, cache, several = Cost(), config.cache_dir, len(config.pair_list) > 1
    for src, tgt in config.pair_list:
        target = pool.get(tgt, config.model_seed)
        tgt_graph = NodeGraph.from_model(target)
        roles = cached_roles(pool, cache, src), cached_roles(pool, cache, tgt)
        profiles = roles[0].profile(), roles[1].profile()
        for task in config.train_tasks:
            label = f"{src}:{tgt}/{task_label(task)}" if several else task_label(task)
            if progress:
                print(f"fallback: depth and role on {label}'s val prompts ...", flush=True)
            s = cached_scores(pool, cache, src, task, source_spec(config), config.model_seed)
            src_graph = scores_graph(s)
            source = src_graph.mapped_scores(s.for_graph(src_graph, f"{src} scores on {task}"))
            x = Inputs(None, src_graph, tgt_graph, source, config.seed, DEPTH_DRAWS)  # type: ignore[arg-type]
            x.profiles = lambda: profiles  # no map: depth and role read none
            rankings = score_methods(x, CANDIDATES)
            prompts = task_prompts(target, task, "val", config.n_val, config.data_seed)
            with cost.watch(target, tgt):
                ev = evaluate_circuits(
                    target, tgt_graph, prompts.batches, prompts.data.metric, rankings,
                    ablation=config.ablation, n_boot=0, seed=config.seed, families=prompts.families,
                    prompts=prompts.texts,
                    max_rows=config.max_rows,
                )  # fmt: skip
            for m in CANDIDATES:
                cpr[m][label] = capped_cpr(ev.curves[m].faithfulness, ev.curves[m].fractions)
    gains = {t: cpr["role"][t] - cpr["depth"][t] for t in cpr["depth"]}
    gain = summarise(gains, config.seed)
    method = "role" if gain["mean"] > 0 else "depth"
    mean = {m: sum(v.values()) / len(v) for m, v in cpr.items()}
    why = (
        f"{method} has the higher mean capped val CPR on the {len(gains)} training tasks "
        f"(role {mean['role']:.3f}, depth {mean['depth']:.3f}; role - depth {gain['mean']:+.3f} "
        f"[{gain['ci'][0]:+.3f}, {gain['ci'][1]:+.3f}], higher on {sum(g > 0 for g in gains.values())} "
        f"of {len(gains)} tasks)"
    )
    per_task = {t: {m: cpr[m][t] for m in CANDIDATES} for t in gains}
    gain = {k: v for k, v in gain.items() if k != "per_task"}
    return {
        "method": method, "why": why, "split": "val", "n_val": config.n_val, "mean": mean,
        "role_gain": gain, "per_task": per_task, "capped": True, "cost": cost.to_json(),
    }  # fmt: skip


def needs_fallback(info: dict[str, Any]) -> bool:
    """Whether a finished run's `map.json` record gives unseen tasks the prior with no fallback
    recorded (a run trained before the fallback existed)."""
    zs = info.get("zero_shot")
    return bool(zs) and zs.get("epoch") == 0 and "fallback" not in zs


def add_fallback(record: dict[str, Any], fallback: dict[str, Any]) -> dict[str, Any]:
    """`record` (a run's `map.json`) with the fallback in its `zero_shot` and its passes in the
    run's `training_cost`."""
    out = {**record, "zero_shot": {**record["zero_shot"], "fallback": fallback}}
    out["training_cost"] = Cost().add(record.get("training_cost")).add(fallback.get("cost")).to_json()
    return out


def ensure_fallback(run: Path, pool: Any) -> dict[str, Any]:
    """A finished run's `map.json` record, with its fallback chosen now (`add_to_finished`) when it
    needs one, under the settings it was trained with."""
    from dfa.config import upgrade

    info = json.loads((run / "map.json").read_text())
    if needs_fallback(info):
        info = add_to_finished(TrainConfig(**upgrade(dict(info["hyperparameters"]))), run, info, pool)
    return info


def add_to_finished(config: TrainConfig, run: Path, info: dict[str, Any], pool: Any) -> dict[str, Any]:
    """Choose the fallback of a finished run that has none (`needs_fallback`) and write it into
    its `map.json` and its zero-shot map's (atomically); returns the new record."""
    fallback = choose_fallback(config, pool, progress=True)
    print(f"fallback for unseen tasks: {fallback['method']} ({fallback['why']})", flush=True)
    for path in (run / "map.json", run / FOLDER / "map.json"):
        if path.is_file():
            write_json(path, add_fallback(json.loads(path.read_text()), fallback))
    return add_fallback(info, fallback)
