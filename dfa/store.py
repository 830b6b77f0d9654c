"""Where models and cached results live: a `ModelPool` passed explicitly (never a global), and the
on-disk caches of node scores, head roles and node statistics.

A pool places every model it loads on one device with one dtype, resolved once (`auto`: CUDA when
visible); `release` drops a model a caller is done with (a sweep keeps only the pair it runs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from dfa.config import safe_name
from dfa.core.bos import pinned_bos
from dfa.core.circuits import score_nodes, score_resamples
from dfa.core.cost import Cost
from dfa.core.models import load_model, resolve_device, resolve_dtype, weights_fingerprint
from dfa.core.node_stats import VERSION as STATS_VERSION
from dfa.core.node_stats import NodeStats, NodeStatsError, node_stats
from dfa.core.roles import VERSION, RoleScores, RolesError, role_scores
from dfa.core.scores import NodeScores


class ModelPool:
    """Frozen models by (name, weight seed), loaded once on `device` in `dtype`."""

    def __init__(self, device: str | torch.device = "auto", dtype: str = "float32"):
        self.device = resolve_device(device)
        self.dtype = dtype
        resolve_dtype(dtype)  # an unknown dtype fails here
        self._models: dict[tuple[str, int], Any] = {}

    def __repr__(self) -> str:
        return f"ModelPool({self.device}, {self.dtype}; {', '.join(n for n, _ in self._models) or 'empty'})"

    def get(self, name: str, seed: int = 0) -> Any:
        key = (name, seed)
        if key not in self._models:
            self._models[key] = load_model(name, device=self.device, dtype=self.dtype, seed=seed)
        return self._models[key]

    def release(self, *names: str) -> None:
        """Forget these models (all of them when none is named) and free their memory."""
        for key in [k for k in self._models if not names or k[0] in names]:
            del self._models[key]
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def cache_name(model: str) -> str:
    """A model's folder name in a cache: its name, and for a local or toy model a hash of its
    weights, so that a rebuilt model (another seed, `DFA_ZOO` elsewhere) never reads the scores
    of the model it replaced; where dfa pins the token its prompts start with (`dfa.core.bos`),
    that token too, so that scores made with the tokenizer's own BOS are never read."""
    fingerprint = weights_fingerprint(model)
    bos = pinned_bos(model)
    return (
        safe_name(model)
        + (f"__w{fingerprint}" if fingerprint else "")
        + (f"__bos-{safe_name(bos.strip('<|>'))}" if bos else "")
    )


@dataclass(frozen=True)
class ScoreSpec:
    """What a cached score file depends on besides the model and the task."""

    method: str = "eap-ig-inputs"
    split: str = "train"
    n: int = 100
    seed: int = 0  # the tasks' data seed
    ablation: str = "patching"
    ig_steps: int = 5

    def file_name(self, task: str) -> str:
        from dfa.core.tasks import task_label  # a task file: its label and sha256, never its path

        return (
            f"{task_label(task)}__{self.method}__{self.ablation}__ig{self.ig_steps}__{self.split}"
            f"__n{self.n}__s{self.seed}.safetensors"
        )


def score_path(cache: Path, model: str, task: str, spec: ScoreSpec) -> Path:
    return Path(cache) / "scores" / cache_name(model) / spec.file_name(task)


def cached_scores(
    pool: ModelPool, cache: Path, model_name: str, task: str, spec: ScoreSpec, model_seed: int = 0
) -> NodeScores:
    """Node scores of `model_name` on `task`, from the cache when there, else computed (the model
    taken from `pool` only then) and saved."""
    path = score_path(cache, model_name, task, spec)
    if path.is_file():
        return NodeScores.load(path)
    model = pool.get(model_name, model_seed)
    print(f"scoring {model_name} on {task} ({spec.method}, {spec.n} {spec.split} prompts) ...", flush=True)
    scores = score_nodes(model, task, **asdict(spec))
    scores.save(path)
    return scores


def cached_resamples(
    pool: ModelPool, cache: Path, model_name: str, task: str, spec: ScoreSpec, draws: int, model_seed: int = 0
) -> torch.Tensor:
    """`[draws, n_nodes]` bootstrap resamples of `cached_scores`' scores (whole graph, graph
    order; `dfa.core.circuits.score_resamples`), from the cache when there, else computed."""
    from safetensors.torch import load_file, save_file

    from dfa.core.io import atomic_write

    path = score_path(cache, model_name, task, spec).with_suffix(f".resamples{draws}.safetensors")
    if path.is_file():
        return load_file(str(path))["scores"]
    model = pool.get(model_name, model_seed)
    print(
        f"scoring {model_name} on {task}: {draws} resamples of {spec.n} {spec.split} prompts ...", flush=True
    )
    draws_t = score_resamples(model, task, draws, **asdict(spec))
    atomic_write(path, lambda tmp: save_file({"scores": draws_t.contiguous()}, str(tmp)))
    return draws_t


def role_path(cache: Path, model_name: str, seed: int = 0) -> Path:
    return Path(cache) / "roles" / f"{cache_name(model_name)}__s{seed}.safetensors"


def cached_roles(pool: ModelPool, cache: Path, model_name: str, seed: int = 0) -> RoleScores:
    """`role_scores` of `model_name` with default settings, from the cache when there (and of this
    `VERSION`), else computed (loading the model only then) and saved."""
    return _cached_per_model(
        role_path(cache, model_name, seed),
        RoleScores.load,
        RolesError,
        VERSION,
        lambda: _costed(pool.get(model_name), model_name, lambda m: role_scores(m, seed=seed)),
        model_name,
    )


def _costed(model: Any, name: str, compute):
    """`compute(model)`'s result, its `meta["cost"]` what its passes cost (`dfa.core.cost`)."""
    cost = Cost()
    with cost.watch(model, name):
        made = compute(model)
    made.meta["cost"] = cost.to_json()
    return made


def _cached_per_model(path: Path, load, error: type[Exception], version, compute, model_name: str):
    """The object `load` reads at `path` when it is there and of this `version` (its
    `meta["version"]`), else `compute()`'s, named `model_name` and saved at `path`."""
    if path.is_file():
        try:
            found = load(path)
        except error:
            found = None
        if found is not None and found.meta.get("version") == version:
            return found
    made = compute()
    made.model = model_name
    made.save(path)
    return made


def stats_path(cache: Path, model_name: str, seed: int = 0) -> Path:
    return Path(cache) / "node_stats" / f"{cache_name(model_name)}__s{seed}.safetensors"


def cached_node_stats(pool: ModelPool, cache: Path, model_name: str, seed: int = 0) -> NodeStats:
    """`node_stats` of `model_name` with default settings, from the cache when there (and of this
    `STATS_VERSION`), else computed (loading the model only then) and saved."""
    return _cached_per_model(
        stats_path(cache, model_name, seed),
        NodeStats.load,
        NodeStatsError,
        STATS_VERSION,
        lambda: _costed(pool.get(model_name), model_name, lambda m: node_stats(m, seed=seed)),
        model_name,
    )
