"""Using a trained map: predicted target circuits for a task, and their evaluation against every
method of `dfa.methods` (gold, depth, role, the controls), on the same prompts with the same
intervention. The run read back (`Run`: its map, config, and which map a task gets) is
`dfa.experiments.runs`."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dfa.core.circuits import task_prompts
from dfa.core.cost import Cost
from dfa.core.direct import direct_effects
from dfa.core.errors import DfaError
from dfa.core.evaluate import FRACTIONS, Evaluation, circuit_masks, evaluate_circuits
from dfa.core.graph import NodeGraph
from dfa.core.mapping import mask_probabilities
from dfa.core.names import CIRCUIT_FRACTION
from dfa.core.scores import SIGN, NodeScores, graph_cfg, scores_graph
from dfa.core.tasks import check_files, get_task, task_label, task_sources
from dfa.experiments.costs import method_cost, predicted_gold_rows, with_ratios
from dfa.experiments.runs import Run
from dfa.experiments.val_check import checked_map
from dfa.methods import DEFAULT_METHODS, DRAWS, Inputs, map_logits, prior_scores, score_methods
from dfa.store import ModelPool, cached_roles


def method_inputs(run: Run, pool: ModelPool, task: str, draws: int = DRAWS) -> Inputs:
    """What every method reads for `task`: the map bound to the pair, both graphs, the source's
    scores, and lazily the target's own scores and both models' role profiles."""
    tgt_graph = NodeGraph.from_model(pool.get(run.tgt, run.config.model_seed))
    s = run.scores(pool, run.src, task)
    src_graph = scores_graph(s)
    amap = run.map_for(task)
    run.bind(pool, src_graph, tgt_graph, amap)
    source = src_graph.mapped_scores(s.for_graph(src_graph, f"{run.src} scores on {task}"))
    cache = run.config.cache_dir
    parts: dict[str, dict | None] = {"source": s.meta.get("cost")}  # what each input cost where made

    @functools.cache
    def gold() -> torch.Tensor:
        own = run.scores(pool, run.tgt, task)
        parts["gold"] = own.meta.get("cost")
        return own.for_graph(tgt_graph, f"{run.tgt} scores on {task}")

    @functools.cache
    def profiles() -> tuple[torch.Tensor, torch.Tensor]:
        both = cached_roles(pool, cache, run.src), cached_roles(pool, cache, run.tgt)
        known = all(r.meta.get("cost") is not None for r in both)
        spent = Cost().add(both[0].meta.get("cost")).add(both[1].meta.get("cost"))
        parts["profiles"] = spent.to_json() if known else None
        return both[0].profile(), both[1].profile()

    @functools.cache
    def direct() -> torch.Tensor:
        c = run.config
        target = pool.get(run.tgt, c.model_seed)
        prompts = task_prompts(target, task, "train", c.n_src, c.data_seed)
        with (cost := Cost()).watch(target, run.tgt):
            effects = direct_effects(target, tgt_graph, prompts.batches, c.ablation).mean(0)
        parts["direct"] = cost.to_json()
        return tgt_graph.with_input(effects.abs())

    seed = run.config.seed
    x = Inputs(
        amap, src_graph, tgt_graph, source, seed, draws, gold, profiles, direct, run.prior_for(task), run.fallback
    )
    x.costs = parts
    x.checked = functools.partial(checked_map, run, pool, task, x)
    return x


def method_rankings(
    run: Run,
    pool: ModelPool,
    task: str,
    methods: Sequence[str] = DEFAULT_METHODS,
    draws: int = DRAWS,
    costs: dict[str, Any] | None = None,
) -> dict[str, torch.Tensor | list[torch.Tensor]]:
    """Whole-target-graph scores (or seeded draws) for each method on `task`; each method's cost
    (`dfa.experiments.costs.method_cost`) into `costs` when given."""
    x = method_inputs(run, pool, task, draws)
    out = {}
    for m in methods:  # one at a time: which inputs each method needs is its cost
        x.used.clear()
        out.update(score_methods(x, [m]))
        if costs is not None:
            if "checked" in x.used:  # a training task is not checked: nothing spent
                x.costs["checked"] = (run.checks.get(task) or {}).get("cost", {})
            costs[m] = method_cost(m, x.costs, sorted(x.used), run.src, run.tgt)
    return out


def evaluate_task(
    run: Run,
    pool: ModelPool,
    task: str,
    methods: Sequence[str] = DEFAULT_METHODS,
    split: str = "test",
    n: int = 200,
    n_boot: int = 1000,
    fractions: Sequence[float] = FRACTIONS,
    progress: bool = False,
    draws: int = DRAWS,
    max_rows: int | None = None,
) -> Evaluation:
    """Every method's curve on `task`; `max_rows` prompt rows per stacked pass (default: the run's
    own `max_rows`, the memory budget it trained with; None there too: all of a batch's circuits
    in one pass)."""
    get_task(task)
    c = run.config
    target = pool.get(run.tgt, c.model_seed)
    costs: dict[str, Any] = {}
    rankings = method_rankings(run, pool, task, methods, draws, costs)
    prompts = task_prompts(target, task, split, n, c.data_seed)
    ev = evaluate_circuits(
        target,
        NodeGraph.from_model(target),
        prompts.batches,
        prompts.data.metric,
        rankings,
        fractions,
        ablation=c.ablation,  # type: ignore[arg-type]
        n_boot=n_boot,
        seed=c.seed,
        families=prompts.families,
        prompts=prompts.texts,
        progress=progress,
        max_rows=max_rows if max_rows is not None else c.max_rows,
    )
    n_nodes = len(NodeGraph.from_model(target))
    ev.method_costs = with_ratios(costs, predicted_gold_rows(c.method, c.n_src, c.ig_steps, n_nodes))
    return ev


def result_rows(run: Run, task: str, ev: Evaluation) -> list[dict[str, Any]]:
    """One row per method, in the JSON schema of `scripts/evaluate.py`."""
    rows = []
    for label, curve in ev.curves.items():
        rows.append(
            {
                "task": task,
                "setting": run.setting(task),
                "method": label,
                "cpr": curve.cpr,
                "cpr_ci": list(curve.cpr_ci),
                "cmd": curve.cmd,
                "cpr_log": curve.cpr_log,
                "curve": [[f, v] for f, v in zip(curve.fractions, curve.faithfulness, strict=True)],
                "n_prompts": ev.n_prompts,
                "n_distinct": ev.n_distinct,
                "n_draws": curve.n_draws,
                "cost": (ev.method_costs or {}).get("methods", {}).get(label),  # `dfa.experiments.costs`
                "judge_cost": ev.judge_cost,  # the passes that drew these curves: no method's cost
            }
        )
        if label == "dfa-val":
            rows[-1]["val_check"] = run.checks.get(task)
        if label in ("dfa", "dfa-val"):  # the map against every other method, on the same prompts
            rows[-1]["map_used"] = run.map_note(task) if label == "dfa" else run.checks[task]["chosen"]
            rows[-1]["paired"] = {other: ev.paired(label, other) for other in ev.curves if other != label}
    return rows


def evaluate_run(
    run: Run,
    pool: ModelPool,
    tasks: Sequence[str] | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    split: str = "test",
    n: int = 200,
    n_boot: int = 1000,
    progress: bool = False,
    draws: int = DRAWS,
    max_rows: int | None = None,
) -> tuple[dict[str, Any], dict[str, Evaluation]]:
    """Every task's evaluation (default: the run's training tasks and hold-outs); `max_rows` as
    for `evaluate_task`."""
    from dfa.experiments.real_models import cannot_do

    asked = bool(tasks)
    tasks = list(tasks) if tasks else run.config.eval_tasks
    for t in tasks:
        get_task(t)
    # A real model's tasks it cannot do (`dfa capabilities`): left out unless named, else noted.
    unable = cannot_do([run.src, run.tgt], tasks)
    for task, why in unable.items():
        print(f"{'note' if asked else 'left out'}: {task}: {why}", flush=True)
    if not asked:
        tasks = [t for t in tasks if t not in unable]
    check_files(tasks, [run.src, run.tgt])  # before any model loads
    evals: dict[str, Evaluation] = {}
    rows: list[dict[str, Any]] = []
    for i, task in enumerate(tasks, 1):
        start = time.perf_counter()
        ev = evals[task] = evaluate_task(
            run, pool, task, methods, split, n, n_boot, progress=progress, draws=draws, max_rows=max_rows
        )
        rows += result_rows(run, task, ev)
        if progress:  # one line per task: readable in a log, where the per-batch bars are off
            print(
                f"evaluated {task} ({i}/{len(tasks)}): {len(ev.curves)} methods on {ev.n_prompts} {split} "
                f"prompts ({ev.n_distinct} distinct) in {time.perf_counter() - start:.0f}s",
                flush=True,
            )
    return report_of(run, split, rows), evals


def report_of(run: Run, split: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """An evaluation's JSON (`dfa evaluate --json`; `dfa transfer` keeps it in its circuit's
    metadata): what was evaluated and how, and `rows` (`result_rows`)."""
    c = run.config
    return {
        "src": run.src,
        "tgt": run.tgt,
        "map": str(run.folder),
        "split": split,
        "input_node": "kept",
        "ablation": c.ablation,
        "attribution": c.method,
        "holdout": c.holdout,
        "map_kind": c.map_kind,
        "trained_pairs": [list(p) for p in run.pairs],
        "pair_seen": run.seen_pair,
        "zero_shot": zero_shot_summary(run.zero_shot),
        "training_cost": run.meta.get("training_cost"),  # `dfa.core.cost` of training the map
        "source_cost": run.meta.get("source_cost"),  # of the source scores its training read
        # each task file's path and sha256: a number names its data
        "task_files": task_sources(list(dict.fromkeys(r["task"] for r in rows))),
        "results": rows,
    }


def zero_shot_summary(zs: dict[str, Any] | None) -> dict[str, Any] | None:
    """The zero-shot map's choice and estimate (`dfa.training.zero_shot`), without the candidates."""
    if not zs:
        return None
    keys = ("epoch", "alpha", "mean", "ci", "range", "n_tasks", "folds", "why", "against")
    out = {k: zs[k] for k in keys if k in zs}
    if zs.get("fallback"):  # what an unseen task got, without the per-task values
        out["fallback"] = {k: v for k, v in zs["fallback"].items() if k != "per_task"}
    return out


def circuit_ranking(
    run: Run, pool: ModelPool, task: str, tgt_graph: NodeGraph, val_check: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The map's logits for `task` (mapped target nodes; where the task gets the prior, the scores
    of the run's fallback, or depth's where the val check chose no map) and the ranking its
    circuit reads: one draw of the `dfa` method, or of `dfa-val` with `val_check` (by logit, as
    the probabilities saturate at 1; tied nodes in one seeded random order, as the evaluation
    draws them)."""
    x = method_inputs(run, pool, task, draws=1)
    method, amap = ("dfa-val", x.need("checked", "dfa-val")) if val_check else ("dfa", x.amap)
    if (x.prior and not val_check) or amap is None:  # the fallback's scores (the check's: depth)
        z = tgt_graph.mapped_scores(prior_scores(x, "depth" if val_check else x.fallback))
    else:
        z = map_logits(amap, x.source)
    ranking = score_methods(x, [method])[method]
    return z, ranking[0] if isinstance(ranking, list) else ranking


def default_out(run: Run, task: str) -> Path:
    """Where `transfer` writes by default: RUN/transfer/TASK for the run's own models; applied to
    others, the stem names them (TASK__TGT, or TASK__SRC__TGT), so no result replaces another's."""
    import re

    def safe(name: str) -> str:
        return re.sub(r"[^\w-]+", "_", name)

    stem = task_label(task)
    if run.src != run.trained_on[0]:
        stem += f"__{safe(run.src)}__{safe(run.tgt)}"
    elif run.tgt != run.trained_on[1]:
        stem += f"__{safe(run.tgt)}"
    return run.folder / "transfer" / stem


def transfer(
    run: Run,
    pool: ModelPool,
    task: str,
    out: str | Path | None = None,
    evaluate: bool = True,
    methods: Sequence[str] = ("dfa", "dfa-val", "depth", "random", "permuted", "scrambled"),
    split: str = "test",
    n: int = 200,
    n_boot: int = 1000,
    draws: int = DRAWS,
    fraction: float = CIRCUIT_FRACTION,
    val_check: bool = True,
) -> tuple[NodeScores, list[Path], Evaluation | None]:
    """Reuse a saved map on `task` without training: source scores -> predicted target circuit
    (written as EAP-IG/MIB `importances.json`, where `in_graph` marks the circuit of `fraction`
    of the ranked nodes, and `.safetensors`), and its evaluation. With `val_check`, a task outside
    training gets the map the val check chose on its val prompts (`dfa.experiments.val_check`)."""
    get_task(task)
    if not 0 < fraction <= 1:
        raise DfaError(f"The circuit fraction must be in (0, 1], got {fraction}.")
    check_files([task], [run.src, run.tgt])  # before any model loads
    from dfa.experiments.real_models import cannot_do

    for why in cannot_do([run.src, run.tgt], [task]).values():  # a real model's (`dfa capabilities`)
        print(f"note: {task}: {why}", flush=True)
    c = run.config
    target = pool.get(run.tgt, c.model_seed)
    tgt_graph = NodeGraph.from_model(target)
    check = val_check and run.setting(task) == "zero-shot"
    z, ranking = circuit_ranking(run, pool, task, tgt_graph, check)
    scores = tgt_graph.with_input(mask_probabilities(z))
    masks, ks = circuit_masks(ranking, tgt_graph, [fraction])
    in_graph = [tgt_graph[i].name for i in torch.nonzero(masks[0]).flatten().tolist()]
    meta = {
        "model": run.tgt, "task": task, "method": "dfa-val" if check else "dfa", "map": str(run.folder),
        "src": run.src, "source_method": c.method, "setting": run.setting(task),
        "map_used": f"val check: {run.checks[task]['chosen']}" if check else run.map_note(task),
        "val_check": run.checks.get(task) if check else None,
        "split": "train", "n_prompts": c.n_src, "seed": c.data_seed, "ablation": c.ablation,
        "score": (
            f"sigmoid of the {'depth' if check else run.fallback} baseline's score (`logits`): nothing "
            "the map learned was shown to carry"
            if (run.checked_maps.get(task) is None if check else run.prior_for(task))
            else "mask probability sigmoid(z), z = (s @ W + b) / T (`logits`); input kept at 1"
        ),
        "logits": dict(zip(tgt_graph.mapped_names, z.tolist(), strict=True)),
        "map_kind": c.map_kind,
        "pair_seen": run.seen_pair,
        "task_files": task_sources([task]),
        "sign": SIGN,
        "cfg": graph_cfg(target, tgt_graph),
        "circuit": {
            "fraction": fraction,
            "k": ks[0],
            "nodes": len(in_graph),
            "rule": "in_graph: the top int(fraction * N) of the N ranked nodes by logit (ties in a "
            "seeded random order), and input",
        },
    }  # fmt: skip
    predicted = NodeScores(tgt_graph.names, scores, meta)
    out = Path(out) if out else default_out(run, task)

    def save() -> list[Path]:
        return [
            predicted.save(out.with_suffix(".json"), in_graph),
            predicted.save(out.with_suffix(".safetensors")),
        ]

    paths = save()  # the circuit first: an evaluation that fails leaves it written
    ev = None
    if evaluate:  # the written circuit is evaluated: dfa-val's where the check chose it
        methods = list(dict.fromkeys(["dfa-val", *methods] if check else methods))
        ev = evaluate_task(run, pool, task, methods, split, n, n_boot, draws=draws)
        meta["evaluation"] = report_of(run, split, result_rows(run, task, ev))
        paths = save()
    return predicted, paths, ev
