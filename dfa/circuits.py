"""Task-level pipelines behind `dfa attribute` and `dfa evaluate-circuit`: load prompts for a
model, score its nodes, evaluate circuits from scores against random rankings."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dfa.attribution import IG_METHODS, attribute, check_method
from dfa.evaluate import FRACTIONS, Evaluation, Rank, evaluate_circuits, random_scores
from dfa.graph import NodeGraph
from dfa.interventions import Ablation, check_ablation, mean_activations
from dfa.scores import SIGN, NodeScores, graph_cfg
from dfa.tasks import make_batches, make_dataset
from dfa.tasks.base import TaskDataset

DEFAULT_PROMPTS = 200
DEFAULT_BATCH = 50


@dataclass
class Prompts:
    """A task's prompts for one model, batched."""

    data: TaskDataset
    batches: list[dict[str, torch.Tensor]]

    @property
    def families(self) -> list[str]:
        return [e.family for e in self.data.examples]

    @property
    def texts(self) -> list[str]:
        return [e.clean for e in self.data.examples]


def task_prompts(
    model: Any,
    task: str,
    split: str,
    n: int = DEFAULT_PROMPTS,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
) -> Prompts:
    """Up to `n` pairs of `task`'s `split` (fewer when the split has fewer distinct prompts)."""
    data = make_dataset(task, model.tokenizer, n, split, seed, allow_fewer=True)
    return Prompts(data, make_batches(data.examples, model.tokenizer, batch_size))


def model_name(model: Any) -> str:
    info = getattr(model, "dfa_info", None)
    return info.spec.text if info is not None else type(model).__name__


def score_nodes(
    model: Any,
    task: str,
    method: str = "eap-ig-inputs",
    split: str = "train",
    n: int = DEFAULT_PROMPTS,
    seed: int = 0,
    ablation: Ablation = "patching",
    ig_steps: int = 5,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = False,
) -> NodeScores:
    """Score every node of `model` (the `input` node too) on `task` with `method`."""
    check_method(method)
    check_ablation(ablation)
    graph = NodeGraph.from_model(model)
    prompts = task_prompts(model, task, split, n, seed, batch_size)
    means = mean_activations(model, graph, prompts.batches) if ablation == "mean" else None
    start = time.perf_counter()
    scores = attribute(
        model, graph, prompts.batches, prompts.data.metric, method, ablation, ig_steps, means, progress
    )
    meta = {
        "model": model_name(model),
        "task": task,
        "method": method,
        "split": split,
        "n_prompts": len(prompts.data),
        "seed": seed,
        "metric": prompts.data.metric,
        "ablation": ablation,
        "ig_steps": ig_steps if method in IG_METHODS else None,
        "sign": SIGN,
        "seconds": round(time.perf_counter() - start, 3),
        "cfg": graph_cfg(model, graph),
    }
    return NodeScores(graph.names, scores, meta)


def evaluate_scores(
    model: Any,
    task: str,
    scores: dict[str, NodeScores],
    split: str = "test",
    n: int = DEFAULT_PROMPTS,
    seed: int = 0,
    ablation: Ablation = "patching",
    keep_input: bool = True,
    rank: Rank = "abs",
    n_random: int = 5,
    n_boot: int = 1000,
    fractions=FRACTIONS,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = False,
) -> Evaluation:
    """Faithfulness curves of each scored ranking and of `n_random` random rankings (their mean
    curve, labelled `random`), all on the same prompts of `split`."""
    check_ablation(ablation)
    graph = NodeGraph.from_model(model)
    rankings: dict[str, Any] = {label: s.for_graph(graph, label) for label, s in scores.items()}
    if n_random > 0:
        rankings["random"] = [random_scores(len(graph), seed + i) for i in range(n_random)]
    prompts = task_prompts(model, task, split, n, seed, batch_size)
    means = mean_activations(model, graph, prompts.batches) if ablation == "mean" else None
    return evaluate_circuits(
        model,
        graph,
        prompts.batches,
        prompts.data.metric,
        rankings,
        fractions,
        ablation,
        keep_input,
        rank,
        n_boot,
        seed,
        means,
        prompts.families,
        prompts.texts,
        progress,
    )


def compare_methods(
    model: Any,
    task: str,
    methods: Sequence[str] = ("exact", "eap-ig-inputs"),
    n_attr: int = 100,
    n_eval: int = DEFAULT_PROMPTS,
    ig_steps: int = 5,
    n_random: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Score `model` on `task`'s train split with each method and evaluate every ranking, and
    `n_random` random ones, on the same test prompts: one cell of the methods table."""
    scores = {m: score_nodes(model, task, m, "train", n_attr, seed, ig_steps=ig_steps) for m in methods}
    ev = evaluate_scores(model, task, scores, "test", n_eval, seed, n_random=n_random)
    return {
        "model": model_name(model),
        "task": task,
        "n_attr": scores[methods[0]].meta["n_prompts"],
        "seconds": {m: s.meta["seconds"] for m, s in scores.items()},
        **ev.to_json(),
    }


def _cell(result: dict[str, Any], label: str) -> str:
    c = result["curves"][label]
    return f"{c['cpr']:.3f} [{c['cpr_ci'][0]:.2f}, {c['cpr_ci'][1]:.2f}]"


def markdown_table(results: list[dict[str, Any]], methods: Sequence[str]) -> str:
    """Rows of model x task: each method's CPR [95% CI], random's, and each method's margin."""
    head = ["model", "task", *methods, "random", *[f"{m} - random" for m in methods]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        rand = r["curves"]["random"]["cpr"]
        margins = [f"{r['curves'][m]['cpr'] - rand:+.3f}" for m in methods]
        cells = [r["model"], r["task"], *[_cell(r, m) for m in methods], _cell(r, "random"), *margins]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import json
    from pathlib import Path

    from dfa.io import write_json
    from dfa.models import load_model
    from dfa.tasks import TASKS
    from dfa.zoo.spec import TOY_SPECS

    p = argparse.ArgumentParser(
        description="CPR of exact and EAP-IG circuits against random, per model and task."
    )
    p.add_argument("--models", nargs="+", default=list(TOY_SPECS))
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--methods", nargs="+", default=["exact", "eap-ig-inputs"])
    p.add_argument("--n-attr", type=int, default=100, help="train prompts to score on (default 100)")
    p.add_argument("--n-eval", type=int, default=DEFAULT_PROMPTS, help="test prompts (default 200)")
    p.add_argument("--out", default="results/circuits_toy.json")
    args = p.parse_args(argv)
    out = Path(args.out)
    done: list[dict[str, Any]] = json.loads(out.read_text())["results"] if out.is_file() else []
    have = {(r["model"], r["task"]) for r in done}
    for name in args.models:
        todo = [t for t in args.tasks if (name, t) not in have]
        if not todo:
            continue
        model = load_model(name)
        for task in todo:
            start = time.perf_counter()
            done.append(compare_methods(model, task, args.methods, args.n_attr, args.n_eval))
            r = done[-1]
            print(
                f"{name} {task}: "
                + ", ".join(f"{m} {r['curves'][m]['cpr']:.3f}" for m in [*args.methods, "random"])
                + f" ({time.perf_counter() - start:.0f}s)",
                flush=True,
            )
            write_json(
                out, {"methods": args.methods, "input_node": "kept", "ablation": "patching", "results": done}
            )
    wanted = [r for r in done if r["model"] in args.models and r["task"] in args.tasks]
    print(markdown_table(wanted, args.methods))
    return 0
