# `opt(...)` returns a `dataclasses.field` (lists copied per instance), not a shared default.
# ruff: noqa: RUF009
"""The experiments' configs: `dfa sweep`, `dfa loto`, `dfa cross-scale` and `dfa circuits-table`,
each setting with its type, its one default and its help (flags are generated from them, as for
`dfa.config.TrainConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

from dfa.config import Backend, Dtype, Split, opt
from dfa.core.names import Method
from dfa.core.tasks import TASKS
from dfa.methods import DEFAULT_METHODS


@dataclass
class SweepConfig:
    """`dfa sweep`: every pair of a ladder, leave-one-task-out maps, and the comparison tables."""

    ladder: str = opt("toy-gpt2", "toy-gpt2, toy-neox, gpt2 or pythia", required=True)
    tasks: list[str] = opt(list(TASKS), "tasks (one is held out of each zero-shot map)")
    config: str = opt("configs/toy.yaml", "training config of every map (a path, or a shipped name)")
    max_epochs: int | None = opt(None, "override the config's epochs")
    n: int = opt(50, "test prompts per task")
    boot: int = opt(200, "bootstrap resamples")
    draws: int = opt(2, "draws per control")
    reverse: bool = opt(True, "also the large -> small pairs (a sanity check)")
    cross: list[str] | None = opt(
        None, "cross-family pairs SRC:TGT (default: the other toy family's smallest -> this ladder's largest)"
    )
    heatmap: bool = opt(True, "the one-task maps of the first pair (train x eval task heatmap)")
    out: str = opt("results/sweep", "output folder (maps under OUT/maps)", output="folder")
    device: str = opt("auto", "cpu, cuda, cuda:N, or auto (CUDA when visible)")
    dtype: Dtype = opt("float32", "the models' dtype")
    backend: Backend = opt(
        "local", "local: one cell after another here; ray: each cell a Ray task (pip install 'dfa[ray]')"
    )
    address: str | None = opt(
        None, "with backend ray: the Ray cluster's address (default: a local Ray instance)"
    )


@dataclass
class LotoConfig:
    """`dfa loto`: leave-one-task-out maps per model pair, evaluated zero-shot on the held-out task."""

    pairs: list[str] = opt(["toy-gpt2-s:toy-gpt2-l", "toy-neox-s:toy-neox-l"], "model pairs SRC:TGT")
    tasks: list[str] = opt(list(TASKS), "tasks, each held out in turn")
    groups: list[str] = opt(
        [],
        "held-out groups instead of single tasks, each NAME=TASK+TASK+...: one map per group, trained "
        "without the group's tasks and evaluated zero-shot on each of them (`tasks` is then unused)",
    )
    config: str = opt("configs/toy.yaml", "training config of every map (a path, or a shipped name)")
    n: int = opt(100, "prompts per held-out task")
    split: Split = opt("test", "the held-out task's split evaluated (val: to tune on, never test)")
    boot: int = opt(200, "bootstrap resamples")
    methods: list[str] = opt(list(DEFAULT_METHODS), "methods compared")
    check_budget: str = opt(
        "0.2", "the val check's (dfa-val) target rows, a share of gold's on the task, or 'full'"
    )
    val_n: int = opt(0, "val prompts the val check may read (0: each map's n_val)")
    out: str = opt("checkpoints", "checkpoint root of the maps", output="folder")
    json: str = opt("results/loto_toy.json", "results file (resumed when present)", output="file")
    device: str = opt("auto", "cpu, cuda, cuda:N, or auto (CUDA when visible)")
    dtype: Dtype = opt("float32", "the models' dtype")


@dataclass
class CrossScaleConfig:
    """`dfa cross-scale`: each model's circuit found independently, aligned by roles, overlaps read."""

    models: list[str] = opt(["toy-gpt2-s", "toy-gpt2-m", "toy-gpt2-l"], "a ladder, small to large")
    tasks: list[str] = opt(["ioi", "sva"], "tasks")
    method: Method = opt("eap-ig-inputs", "attribution method of discovery")
    fraction: float = opt(0.1, "circuit size as a share of nodes")
    n: int = opt(100, "train prompts per model for discovery")
    n_eval: int = opt(50, "test prompts for each circuit's faithfulness")
    cache: str = opt("checkpoints/cache", "score and role cache", output="folder")
    out: str = opt("results/cross_scale", "output folder", output="folder")
    device: str = opt("auto", "cpu, cuda, cuda:N, or auto (CUDA when visible)")
    dtype: Dtype = opt("float32", "the models' dtype")


@dataclass
class CircuitsTableConfig:
    """`dfa circuits-table`: CPR of exact and EAP-IG circuits against random, per model and task."""

    models: list[str] = opt(
        ["toy-gpt2-s", "toy-gpt2-m", "toy-gpt2-l", "toy-neox-s", "toy-neox-m", "toy-neox-l"], "models"
    )
    tasks: list[str] = opt(list(TASKS), "tasks")
    methods: list[str] = opt(["exact", "eap-ig-inputs"], "attribution methods")
    n_attr: int = opt(100, "train prompts to score on")
    n_eval: int = opt(200, "test prompts")
    out: str = opt("results/circuits_toy.json", "results file (resumed when present)", output="file")
    device: str = opt("auto", "cpu, cuda, cuda:N, or auto (CUDA when visible)")
    dtype: Dtype = opt("float32", "the models' dtype")
