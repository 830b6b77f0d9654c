"""The map a task outside training gets, and how much it is expected to gain there.

Selection on the training tasks' val CPR says nothing about a task the map never saw. Inner folds
do: the training tasks are dealt into `zero_shot_folds` groups, and for each group a map is
trained (same settings, `zero_shot_epochs` epochs on a `zero_shot_train` share of the prompts)
without it. Its validation scores the held-out group's val prompts after every epoch, for the
epoch's map and its blends with the start `start + a * (map - start)`, as it scores any hold-out.
Each (epoch, a) thus has one gain per training task, measured on a task that the map scoring it
never saw: val CPR (faithfulness capped at 1) minus the start's val CPR on that task. The start is
the depth prior the map begins from.

The candidate whose mean gain has the highest lower 95% bound (bootstrap over the tasks: a new
task is one more draw of a task) is the zero-shot map: that epoch of the run's own map, blended
with `a`. When no candidate's lower bound is above 0, unseen tasks get the prior: the map has
shown nothing it can offer a task it never saw, and evaluation and transfer rank those tasks by
the run's fallback, the `depth` or `role` baseline itself, whichever scored higher on the training
tasks' val prompts (`dfa.training.fallback`; the saved zero-shot map is then the start, which
reads z-scored signed source scores and breaks depth's ties by its small noise in one arbitrary
order). The estimate stored with the map is
that candidate's mean gain, its interval, and the range of the per-task gains. A run with fewer
than `zero_shot_min_tasks` training tasks runs no folds and gives unseen tasks the prior.

This module deals the tasks (`fold_tasks`), sets each fold's config (`fold_config`), and estimates
and chooses (`estimate`, `choose`); the folds are trained by the run they belong to, after its own
fit (`dfa.training.run`: `run_folds`, `add_zero_shot`).

Where it lives: the folds' run folders in `<run>/zero_shot_folds/`, the zero-shot map in
`<run>/zero_shot/`, the estimate in `map.json`'s `zero_shot`. `dfa.experiments.runs.Run.map_for`
gives a task outside training that map, `Run.prior_for` says where it is the fallback (nothing
carries). Selection's capped CPR is `dfa.core.evaluate.capped_cpr`; the text and LOTO's estimate
table are `dfa.report.zero_shot`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dfa.config import TrainConfig
from dfa.report.zero_shot import signed

if TYPE_CHECKING:
    from dfa.training.module import MapTrainer

FOLDER = "zero_shot"  # the zero-shot map, in the run folder: map.safetensors and map.json
FOLDS = "zero_shot_folds"  # the inner folds' run folders, in the run folder
BOOT = 2000
AGAINST = "the start (the depth prior the map begins from), val split, faithfulness capped at 1"


def fold_tasks(tasks: list[str], k: int) -> list[list[str]]:
    """`tasks` dealt into `min(k, len(tasks))` groups in turn (task i to group i mod k)."""
    k = min(k, len(tasks))
    return [tasks[i::k] for i in range(k)]


def fold_config(config: TrainConfig, held: list[str], index: int, root: Path) -> TrainConfig:
    """The inner fold's run: the run's training tasks with `held` held out (the run's own
    hold-outs are never seen), `zero_shot_epochs` epochs on a `zero_shot_train` share of the
    train prompts, validating only `held`, one process, the run's score cache, in
    `root/<pair>/fold-<index>`."""
    values = config.to_dict()
    n_train = max(min(config.batch_size, config.n_train), round(config.n_train * config.zero_shot_train))
    values.update(
        tasks=list(config.train_tasks),
        holdout=list(held),
        max_epochs=min(config.zero_shot_epochs, config.max_epochs),
        n_train=n_train,
        zero_shot_folds=0,
        validate="holdout",  # the estimate reads the held-out group's val CPR alone
        patience=0,
        out=str(root),
        run=f"fold-{index}",
        cache=str(config.cache_dir),
        devices=1,
        num_nodes=1,
        strategy="auto",
    )
    return TrainConfig(**values)


def fold_gains(history: list[dict[str, Any]]) -> dict[tuple[int, float], dict[str, float]]:
    """(epoch, a) -> held-out label -> gain over the start, from an inner fold's `val_history`
    (`zero_shot_select_cpr` of each epoch's map, a = 1, and of its blends)."""
    if not history or history[0]["epoch"] != 0:
        return {}
    start = history[0].get("zero_shot_select_cpr") or {}
    out: dict[tuple[int, float], dict[str, float]] = {}
    for h in history[1:]:
        for a, entry in [(1.0, h), *((b["alpha"], b) for b in h.get("blends", []))]:
            vals = entry.get("zero_shot_select_cpr") or {}
            gains = {t: vals[t] - start[t] for t in vals if t in start}
            if all(math.isfinite(g) for g in gains.values()) and gains:
                out[(h["epoch"], float(a))] = gains
    return out


def summarise(gains: dict[str, float], seed: int = 0, boot: int = BOOT) -> dict[str, Any]:
    """Mean gain over tasks, its 95% bootstrap interval (tasks resampled), and the range."""
    g = np.asarray(list(gains.values()), dtype=float)
    rng = np.random.default_rng(seed)
    means = g[rng.integers(0, len(g), size=(boot, len(g)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {
        "mean": float(g.mean()),
        "ci": [float(lo), float(hi)],
        "range": [float(g.min()), float(g.max())],
        "n_tasks": len(g),
        "per_task": {t: float(v) for t, v in gains.items()},
    }


def choose(candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """The candidate with the highest lower bound (then the higher mean, the earlier epoch, the
    smaller blend); the start (epoch 0, a = 0) when no lower bound is above 0."""
    best = max(candidates, key=lambda c: (c["ci"][0], c["mean"], -c["epoch"], -c["alpha"]), default=None)
    if best is None or best["ci"][0] <= 0:
        return {"epoch": 0, "alpha": 0.0}
    return {"epoch": best["epoch"], "alpha": best["alpha"]}


def prior_estimate(tasks: list[str]) -> dict[str, Any]:
    """The estimate of the prior (the start): no gain on any task."""
    return {
        "mean": 0.0, "ci": [0.0, 0.0], "range": [0.0, 0.0], "n_tasks": len(tasks),
        "per_task": dict.fromkeys(tasks, 0.0),
    }  # fmt: skip


def estimate(
    histories: list[list[dict[str, Any]]], seed: int = 0, epochs: set[int] | None = None
) -> dict[str, Any]:
    """Every candidate's estimate from the inner folds' val histories, and the choice among the
    candidates whose epoch is in `epochs` (the run's epochs it holds the map of; default: any)."""
    pooled: dict[tuple[int, float], dict[str, float]] = {}
    for history in histories:
        for key, gains in fold_gains(history).items():
            pooled.setdefault(key, {}).update(gains)
    n_tasks = max((len(g) for g in pooled.values()), default=0)
    candidates = [
        {"epoch": e, "alpha": a, **summarise(g, seed)}
        for (e, a), g in sorted(pooled.items())
        if len(g) == n_tasks  # every training task scored (a fold stopped early lacks epochs)
    ]
    chosen = choose([c for c in candidates if epochs is None or c["epoch"] in epochs])
    if chosen["epoch"] == 0:
        tasks = sorted({t for g in pooled.values() for t in g})
        chosen_est = prior_estimate(tasks)
        best = max(candidates, key=lambda c: c["ci"][0], default=None)
        why = (
            "no candidate's gain over the start has its interval above 0 on the tasks the inner "
            "folds never saw: unseen tasks get the prior (evaluation and transfer rank them by the run's "
            "fallback, depth or role: `dfa.training.fallback`)"
        )
        if best is not None:
            why += (
                f"; the best was epoch {best['epoch']} x {best['alpha']:g}, "
                f"{signed(best['mean'])} [{signed(best['ci'][0])}, {signed(best['ci'][1])}]"
            )
    else:
        chosen_est = next(
            c for c in candidates if (c["epoch"], c["alpha"]) == (chosen["epoch"], chosen["alpha"])
        )
        chosen_est = {k: v for k, v in chosen_est.items() if k not in ("epoch", "alpha")}
        why = "the highest lower bound of the mean gain over the start on the tasks the inner folds never saw"
    return {**chosen, **chosen_est, "why": why, "candidates": candidates}


def too_few_tasks(tasks: list[str], config: TrainConfig) -> dict[str, Any]:
    """The record of a run with fewer than `zero_shot_min_tasks` training tasks: no folds, and
    unseen tasks get the prior. A percentile bootstrap over k per-task gains lies above 0 as soon
    as all k are, which a map that carries nothing does with chance 2**-k when each gain's sign is
    a coin: 1/8 for three tasks; five bring it under 0.05."""
    k = len(tasks)
    why = (
        f"{k} training task{'s' if k > 1 else ''}, fewer than zero_shot_min_tasks ({config.zero_shot_min_tasks}): "
        f"an interval over {k} per-task gains cannot rate a map for unseen tasks (all {k} positive by "
        f"chance: {2.0**-k:.2g}), so no inner folds ran and unseen tasks get the prior (evaluation and "
        "transfer rank them by the run's fallback, depth or role; the val check can still choose a map per task)"
    )
    return {
        "folds": [], "epochs": 0, "n_train": 0, "n_val": config.n_val, "seconds": 0.0, "against": AGAINST,
        "epoch": 0, "alpha": 0.0, **prior_estimate(tasks), "why": why, "candidates": [],
    }  # fmt: skip


def save_zero_shot(module: MapTrainer, run: Path, record: dict[str, Any], zs: dict[str, Any]) -> None:
    """Write the zero-shot map (`dfa.training.zero_shot`) to `run/zero_shot/`: the chosen blend of
    the run's epoch map, or the start (a blend of 0); the kept map stays in `module.map`."""
    epoch = zs["epoch"]
    with module.blended(zs["alpha"] if epoch else 0.0, module.epoch_params.get(epoch)):
        module.map.save(run / FOLDER, {**record, "role": "zero-shot map of the run one folder up"})
