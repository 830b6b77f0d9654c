"""Task-level pipelines behind `dfa attribute` and `dfa evaluate-circuit`: load prompts for a
model, score its nodes, evaluate circuits from scores against random rankings."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dfa.core.attribution import IG_METHODS, attribute, attribute_parts, check_method
from dfa.core.cost import Cost, model_label
from dfa.core.evaluate import FRACTIONS, Evaluation, Rank, evaluate_circuits, random_scores
from dfa.core.graph import NodeGraph
from dfa.core.interventions import Ablation, check_ablation
from dfa.core.scores import SIGN, NodeScores, graph_cfg
from dfa.core.tasks import TaskError, make_batches, make_dataset, task_sources
from dfa.core.tasks.base import TaskDataset

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
    """`n` pairs of `task`'s `split`; a split that holds fewer is an error naming the task, the
    split and how many it holds (never a smaller set of prompts)."""
    data = make_dataset(task, model.tokenizer, n, split, seed, allow_fewer=True)
    if len(data) < n:
        raise TaskError(
            f"Task {task!r}: its {split} split holds {len(data)} usable prompts for {data.tokenizer!r} "
            f"(seed {seed}), fewer than the {n} asked for. Ask for at most {len(data)}."
        )
    return Prompts(data, make_batches(data.examples, model.tokenizer, batch_size))


def model_name(model: Any) -> str:
    return model_label(model)


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
    max_rows: int | None = None,
) -> NodeScores:
    """Score every node of `model` (the `input` node too) on `task` with `method` (`max_rows`:
    prompt rows per stacked pass, `dfa.core.attribution`; it changes memory, not the scores)."""
    check_method(method)
    check_ablation(ablation)
    graph = NodeGraph.from_model(model)
    prompts = task_prompts(model, task, split, n, seed, batch_size)
    start = time.perf_counter()
    cost = Cost()
    with cost.watch(model):
        scores = attribute(
            model,
            graph,
            prompts.batches,
            prompts.data.metric,
            method,
            ablation,
            ig_steps,
            progress=progress,
            max_rows=max_rows,
        )
    meta = {
        "model": model_name(model),
        "task": task,
        "task_files": task_sources([task]),
        "method": method,
        "split": split,
        "n_prompts": len(prompts.data),
        "seed": seed,
        "metric": prompts.data.metric,
        "ablation": ablation,
        "ig_steps": ig_steps if method in IG_METHODS else None,
        "sign": SIGN,
        "seconds": round(time.perf_counter() - start, 3),
        "cost": cost.to_json(),  # what these scores cost (`dfa.core.cost`): read back with the cache
        "cfg": graph_cfg(model, graph),
    }
    return NodeScores(graph.names, scores, meta)


def score_resamples(
    model: Any,
    task: str,
    draws: int,
    method: str = "eap-ig-inputs",
    split: str = "train",
    n: int = DEFAULT_PROMPTS,
    seed: int = 0,
    ablation: Ablation = "patching",
    ig_steps: int = 5,
    parts: int = 10,
) -> torch.Tensor:
    """`[draws, n_nodes]` noisy versions of `score_nodes`' scores: the `n` prompts are scored in
    `parts` batches, and each draw is the mean over a bootstrap resample of the batches (drawn
    with `seed`), as if the source had been scored on another sample of prompts."""
    check_method(method)
    graph = NodeGraph.from_model(model)
    prompts = task_prompts(model, task, split, n, seed, max(1, -(-n // parts)))
    sums, counts = attribute_parts(
        model, graph, prompts.batches, prompts.data.metric, method, ablation, ig_steps
    )
    g = torch.Generator().manual_seed(seed)
    k = len(counts)
    picks = torch.multinomial(torch.ones(k), draws * k, replacement=True, generator=g).view(draws, k)
    weights = torch.zeros(draws, k, dtype=torch.float64).scatter_add_(
        1, picks, torch.ones(draws, k, dtype=torch.float64)
    )
    return ((weights @ sums) / (weights @ counts)[:, None]).float()


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
    max_rows: int | None = None,
) -> Evaluation:
    """Faithfulness curves of each scored ranking and of `n_random` random rankings (their mean
    curve, labelled `random`), all on the same prompts of `split`. Nodes the scores leave
    unscored (NaN or missing) are kept in every circuit, the random ones' too: the random
    rankings rank the same scored nodes (with several scores, the nodes all of them score)."""
    check_ablation(ablation)
    graph = NodeGraph.from_model(model)
    rankings: dict[str, Any] = {label: s.for_graph(graph, label) for label, s in scores.items()}
    if n_random > 0:
        rankings["random"] = random_rankings(len(graph), n_random, seed, list(rankings.values()))
    prompts = task_prompts(model, task, split, n, seed, batch_size)
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
        families=prompts.families,
        prompts=prompts.texts,
        progress=progress,
        max_rows=max_rows,
    )


def random_rankings(
    n_nodes: int, draws: int, seed: int, scored: Sequence[torch.Tensor] = ()
) -> list[torch.Tensor]:
    """`draws` seeded random rankings of `n_nodes` nodes, unscored (NaN, so kept in every circuit)
    wherever one of the `scored` rankings leaves a node unscored: a baseline over the same set."""
    unscored = torch.zeros(n_nodes, dtype=torch.bool)
    for s in scored:
        unscored |= torch.isnan(s.detach().float().cpu())
    return [random_scores(n_nodes, seed + i).masked_fill(unscored, float("nan")) for i in range(draws)]


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
