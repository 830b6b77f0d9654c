"""Circuit faithfulness: curves over the MIB circuit sizes, CPR/CMD and a log-x area, bootstrap
intervals over the distinct clean prompts (a cluster bootstrap: pairs that share a clean prompt are
one unit: `cluster_weights`), per-prompt and per-family faithfulness, and overlap (figures: `dfa.report`).

`f(C) = (m(C) - m(empty)) / (m(full) - m(empty))`, each `m` the task metric averaged over the
prompts, with the intervention of `dfa.core.interventions` (nodes outside `C` ablated, by
patching by default). The circuit of size `k` is the top-`k` nodes by score,
`k = int(fraction * N)` of the `N` ranked nodes. The `input` node is kept in every circuit by
default (and then not ranked); ablating it makes `f` about 0 at every size and CPR a
meaningless 0.25.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dfa.core.cost import Cost
from dfa.core.errors import DfaError
from dfa.core.graph import NodeGraph
from dfa.core.interventions import (
    Ablation,
    Cache,
    answer_logits,
    check_ablation,
    donor_activations,
    masked_metric,
    mean_activations,
    model_device,
    to_device,
)
from dfa.core.metrics import batch_metric
from dfa.core.names import FRACTIONS, Rank, SizeWeights
from dfa.core.tasks.base import Metric


# --- circuits -------------------------------------------------------------------------------------
def circuit_size(fraction: float, n: int) -> int:
    """MIB's `k = int(fraction * n)` (with a tolerance so 0.29 * 100 is 29, not 28)."""
    return min(n, int(fraction * n + 1e-9))


def size_weights(
    n: int, fractions: Sequence[float] = FRACTIONS, how: SizeWeights = "both"
) -> tuple[list[int], list[float]]:
    """The circuit sizes `k` (of `n` ranked nodes) at `fractions` that a ranking can change
    (`0 < k < n`: the empty and the full circuit are the same for every ranking), and the weight
    of each in the score: its trapezoid weight on the linear fraction axis (`cpr`: what CPR
    sums), on the log10 axis (`log`: each decade alike, as `cpr_log`), or the mean of the two
    (`both`); sizes that several fractions share add their weights; the weights sum to 1."""
    if how not in ("cpr", "log", "both"):
        raise DfaError(f"Unknown size weighting {how!r}; choose cpr, log or both.")
    x = np.asarray(fractions, dtype=float)

    def trapezoid_weights(axis: np.ndarray) -> np.ndarray:
        w = np.zeros_like(axis)
        gaps = np.diff(axis) / 2
        w[:-1] += gaps
        w[1:] += gaps
        return w / w.sum()

    lin, log = trapezoid_weights(x), trapezoid_weights(np.log10(x))
    w = {"cpr": lin, "log": log, "both": (lin + log) / 2}[how]
    by_k: dict[int, float] = {}
    for f, wf in zip(fractions, w, strict=True):
        k = circuit_size(f, n)
        if 0 < k < n:
            by_k[k] = by_k.get(k, 0.0) + float(wf)
    total = sum(by_k.values())
    ks = sorted(by_k)
    return ks, [by_k[k] / total for k in ks]


def ranking(scores: torch.Tensor, graph: NodeGraph, keep_input: bool = True, rank: Rank = "abs"):
    """`(always, order)`: nodes in every circuit (`input` when kept, and unscored NaN nodes), and
    the other nodes best first (by |score| or by signed score; ties by node order)."""
    if scores.numel() != len(graph):
        raise DfaError(f"{scores.numel()} scores for a graph of {len(graph)} nodes.")
    scores = scores.detach().double().cpu()  # exact for float32 scores; keeps double ones distinct
    always = torch.isnan(scores)
    if keep_input and graph.include_input:
        always[0] = True
    candidates = torch.nonzero(~always).flatten()
    key = scores[candidates].abs() if rank == "abs" else scores[candidates]
    order = candidates[torch.sort(-key, stable=True).indices]
    return torch.nonzero(always).flatten(), order


def circuit_masks(
    scores: torch.Tensor,
    graph: NodeGraph,
    fractions: Sequence[float] = FRACTIONS,
    keep_input: bool = True,
    rank: Rank = "abs",
) -> tuple[torch.Tensor, list[int]]:
    """Hard masks `[n_fractions, n_nodes]` (1 = in the circuit) and the sizes `k`."""
    always, order = ranking(scores, graph, keep_input, rank)
    ks = [circuit_size(f, len(order)) for f in fractions]
    masks = torch.zeros(len(fractions), len(graph))
    masks[:, always] = 1
    for i, k in enumerate(ks):
        masks[i, order[:k]] = 1
    return masks, ks


def circuit_nodes(
    scores: torch.Tensor, graph: NodeGraph, fraction: float, keep_input=True, rank: Rank = "abs"
):
    """Names of the top-`fraction` circuit (the always-kept nodes not included)."""
    _, order = ranking(scores, graph, keep_input, rank)
    return [graph[int(i)].name for i in order[: circuit_size(fraction, len(order))]]


def overlap(
    scores_a: torch.Tensor,
    scores_b: torch.Tensor,
    graph: NodeGraph,
    fraction: float,
    keep_input: bool = True,
    rank: Rank = "abs",
) -> dict[str, Any]:
    """How much two circuits of the same size share: `shared / k` and the Jaccard index."""
    a = set(circuit_nodes(scores_a, graph, fraction, keep_input, rank))
    b = set(circuit_nodes(scores_b, graph, fraction, keep_input, rank))
    k = len(a)
    union = len(a | b)
    return {
        "fraction": fraction,
        "k": k,
        "shared": len(a & b),
        "share": len(a & b) / k if k else float("nan"),
        "jaccard": len(a & b) / union if union else float("nan"),
        "nodes": sorted(a & b, key=graph.index),
    }


def random_scores(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=g)


# --- areas ----------------------------------------------------------------------------------------
def _trapezoid(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Trapezoid area along the last axis."""
    return ((y[..., 1:] + y[..., :-1]) / 2 * np.diff(x)).sum(-1)


def cpr(fractions: Sequence[float], f) -> float:
    """Area under the faithfulness curve over the linear fraction axis."""
    return float(_trapezoid(np.asarray(f, dtype=float), np.asarray(fractions, dtype=float)))


def capped_cpr(f, fractions: Sequence[float] = FRACTIONS) -> float:
    """CPR of `min(f, 1)`: past the full model is faithful, not better (what selection reads)."""
    return cpr(fractions, np.minimum(np.asarray(f, dtype=float), 1.0))


def cmd(fractions: Sequence[float], f) -> float:
    """Area of `|1 - f|` over the linear fraction axis (0 is a perfect circuit)."""
    return float(_trapezoid(np.abs(1 - np.asarray(f, dtype=float)), np.asarray(fractions, dtype=float)))


def cpr_log(fractions: Sequence[float], f) -> float:
    """Area under `f` over log10(fraction), divided by the axis length: the mean faithfulness
    with each decade of circuit size weighed alike, so small circuits count."""
    x = np.log10(np.asarray(fractions, dtype=float))
    return float(_trapezoid(np.asarray(f, dtype=float), x) / (x[-1] - x[0]))


# --- evaluation -----------------------------------------------------------------------------------
@dataclass
class Curve:
    """One ranking's faithfulness curve (or the mean of several, for `random`)."""

    label: str
    fractions: list[float]
    ks: list[int]
    n_ranked: int
    faithfulness: list[float]
    cpr: float
    cmd: float
    cpr_log: float
    cpr_ci: tuple[float, float]
    n_draws: int = 1
    per_prompt_cpr: list[float] = field(default_factory=list)
    family_cpr: dict[str, float] = field(default_factory=dict)
    # Each bootstrap resample's CPR and faithfulness curve `[fractions, B]` (the same resamples for
    # every curve of an `Evaluation`, so differences are paired); not written to JSON.
    boot_cpr: np.ndarray | None = field(default=None, repr=False)
    boot_faith: np.ndarray | None = field(default=None, repr=False)

    def to_json(self, per_prompt: bool = False) -> dict[str, Any]:
        out = {
            "label": self.label,
            "cpr": self.cpr,
            "cpr_ci": list(self.cpr_ci),
            "cmd": self.cmd,
            "cpr_log": self.cpr_log,
            "curve": [[f, v] for f, v in zip(self.fractions, self.faithfulness, strict=True)],
            "ks": self.ks, "n_ranked": self.n_ranked, "n_draws": self.n_draws,
            "family_cpr": self.family_cpr,
        }  # fmt: skip
        if per_prompt:
            out["per_prompt_cpr"] = self.per_prompt_cpr
        return out


@dataclass
class Evaluation:
    """Curves of several rankings measured on the same prompts with the same intervention."""

    curves: dict[str, Curve]
    n_prompts: int
    n_distinct: int  # distinct clean prompts among them: the units the bootstrap resamples
    clean: float  # mean metric of the full model
    empty: float  # mean metric with every ranked node ablated
    input_node: str  # "kept" or "ranked"
    ablation: str
    families: list[str]
    prompts: list[str]
    clean_per_prompt: list[float]
    empty_per_prompt: list[float]
    judge_cost: dict[str, Any] | None = None  # these passes' `dfa.core.cost`: no method's cost
    method_costs: dict[str, Any] | None = None  # what each ranking cost (`dfa.experiments.costs`)

    def failures(self, label: str, n: int = 10) -> list[dict[str, Any]]:
        """The prompts whose own faithfulness (normalised by their own clean-minus-empty gap)
        is lowest, leaving out prompts whose gap is under a tenth of the median gap."""
        curve = self.curves[label]
        gaps = np.abs(np.asarray(self.clean_per_prompt) - np.asarray(self.empty_per_prompt))
        floor = 0.1 * float(np.median(gaps)) if len(gaps) else 0.0
        rows = [
            {
                "prompt": self.prompts[i],
                "family": self.families[i],
                "cpr": curve.per_prompt_cpr[i],
                "clean": self.clean_per_prompt[i],
                "empty": self.empty_per_prompt[i],
            }
            for i in range(self.n_prompts)
            if gaps[i] >= floor and math.isfinite(curve.per_prompt_cpr[i])
        ]
        return sorted(rows, key=lambda r: r["cpr"])[:n]

    def paired(self, a: str, b: str) -> dict[str, Any]:
        """`CPR(a) - CPR(b)` on these prompts and its paired 95% bootstrap interval (the same
        resamples for both; NaN without a bootstrap)."""
        ca, cb = self.curves[a], self.curves[b]
        ci = [float("nan"), float("nan")]
        if ca.boot_cpr is not None and cb.boot_cpr is not None:
            ci = [float(x) for x in np.nanpercentile(ca.boot_cpr - cb.boot_cpr, [2.5, 97.5])]
        return {"diff": ca.cpr - cb.cpr, "ci": ci}

    def to_json(self, per_prompt: bool = False) -> dict[str, Any]:
        return {
            "n_prompts": self.n_prompts,
            "n_distinct_prompts": self.n_distinct,
            "clean_metric": self.clean,
            "empty_metric": self.empty,
            "input_node": self.input_node,
            "ablation": self.ablation,
            "curves": {k: c.to_json(per_prompt) for k, c in self.curves.items()},
            "judge_cost": self.judge_cost, "method_costs": self.method_costs,
        }  # fmt: skip


def cluster_weights(units: Sequence[Hashable], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap weights `[n, n_boot]` that resample the distinct `units` (one per prompt; equal
    units are one cluster) with replacement: a prompt's weight is its unit's draw count over the
    prompts drawn, so a resample's mean is `values @ w`. With every unit distinct this is the
    ordinary bootstrap over prompts (the same draws as `rng.multinomial(n, 1/n)`)."""
    first = {u: i for i, u in enumerate(dict.fromkeys(units))}
    idx = np.asarray([first[u] for u in units], dtype=np.int64)
    g = len(first)
    counts = rng.multinomial(g, np.full(g, 1 / g), size=n_boot).T[idx].astype(np.float64)  # [n, B]
    return counts / counts.sum(0, keepdims=True)


def _faithfulness(m_c: np.ndarray, full: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """`f` from mean metrics: `m_c` `[..., k]` against `full` and `empty` `[k]` (k: one value per
    prompt sample, or a single sample)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (m_c - empty) / (full - empty)


def distinct_circuits(
    score_list: Sequence[torch.Tensor],
    graph: NodeGraph,
    fractions: Sequence[float] = FRACTIONS,
    keep_input: bool = True,
    rank: Rank = "abs",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct masks `[n_distinct, n_nodes]` a curve evaluation runs, and for each row of
    `[empty; circuits of score 0 at every fraction; circuits of score 1 ...]` its index among them.
    The empty circuit, one for every ranking, holds nothing but the input node (when kept)."""
    empty = torch.zeros(1, len(graph))
    if keep_input and graph.include_input:
        empty[0, 0] = 1
    blocks = [circuit_masks(s, graph, fractions, keep_input, rank)[0] for s in score_list]
    return torch.unique(torch.cat([empty, *blocks]), dim=0, return_inverse=True)


def circuit_values(
    model: Any,
    graph: NodeGraph,
    batches: Iterable[dict[str, torch.Tensor]],
    metric: Metric,
    masks: torch.Tensor,
    ablation: Ablation = "patching",
    means: Cache | None = None,
    progress: bool = False,
    max_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt, the metric under each of `masks` `[n_masks, n]` and the clean metric `[n]` (the
    masks stacked along the batch, `max_rows` prompt rows per pass: `masked_metric`). Mean
    ablation's dataset means are computed from `batches` when not given."""
    check_ablation(ablation)
    batches = list(batches)
    if ablation == "mean" and means is None:
        means = mean_activations(model, graph, batches)
    device = model_device(model)
    values, full = [], []
    for batch in tqdm(batches, desc="circuits", disable=None if progress else True, leave=False):
        batch = to_device(batch, device)
        donor = donor_activations(model, graph, batch, ablation, means)
        with torch.inference_mode():
            full.append(
                batch_metric(metric, answer_logits(model, batch["clean"], batch["last"]), batch).cpu()
            )
            values.append(
                masked_metric(model, graph, batch, donor, masks.to(device), metric, max_rows=max_rows).cpu()
            )
    return torch.cat(values, 1).numpy().astype(np.float64), torch.cat(full).numpy().astype(np.float64)


def curve(
    label: str,
    m_c: np.ndarray,
    full: np.ndarray,
    empty: np.ndarray,
    fractions: Sequence[float],
    counts: np.ndarray | None = None,
    families: Sequence[str] | None = None,
) -> Curve:
    """A ranking's `Curve` from its metrics `m_c` `[draws, fractions, n]` against the clean `full`
    and `empty`-circuit metrics `[n]`; `counts` `[n, B]` are bootstrap weights for the interval."""
    d, _, n = m_c.shape
    fractions = list(fractions)
    f = _faithfulness(m_c.mean(-1), full.mean(), empty.mean()).mean(0)
    ci = (float("nan"), float("nan"))
    areas = fb = None
    if counts is not None:
        fb = _faithfulness(m_c @ counts, full @ counts, empty @ counts).mean(0)  # [nf, B]
        areas = _trapezoid(fb.T, np.asarray(fractions))
        ci = tuple(float(x) for x in np.nanpercentile(areas, [2.5, 97.5]))
    own = _faithfulness(m_c, full, empty)  # each prompt against its own gap
    per_prompt = _trapezoid(own.mean(0).T, np.asarray(fractions))
    fams = list(families) if families is not None else ["all"] * n
    family_cpr = {}
    for fam in dict.fromkeys(fams):
        idx = [i for i, x in enumerate(fams) if x == fam]
        ff = _faithfulness(m_c[:, :, idx].mean(-1), full[idx].mean(), empty[idx].mean()).mean(0)
        family_cpr[fam] = cpr(fractions, ff)
    return Curve(
        label=label,
        fractions=fractions,
        ks=[],
        n_ranked=0,
        faithfulness=[float(x) for x in f],
        cpr=cpr(fractions, f),
        cmd=cmd(fractions, f),
        cpr_log=cpr_log(fractions, f),
        cpr_ci=ci,  # type: ignore[arg-type]
        n_draws=d,
        per_prompt_cpr=[float(x) for x in per_prompt],
        family_cpr=family_cpr,
        boot_cpr=areas,
        boot_faith=fb,
    )


def evaluate_circuits(
    model: Any,
    graph: NodeGraph,
    batches: Iterable[dict[str, torch.Tensor]],
    metric: Metric,
    rankings: dict[str, torch.Tensor | Sequence[torch.Tensor]],
    fractions: Sequence[float] = FRACTIONS,
    ablation: Ablation = "patching",
    keep_input: bool = True,
    rank: Rank = "abs",
    n_boot: int = 1000,
    seed: int = 0,
    means: Cache | None = None,
    families: Sequence[str] | None = None,
    prompts: Sequence[str] | None = None,
    progress: bool = False,
    max_rows: int | None = None,
    cost: Cost | None = None,
) -> Evaluation:
    """The faithfulness curve of every ranking (scores in graph order; a list of several score
    vectors gives their mean curve, as for random rankings), all from one set of masked passes:
    every distinct circuit of every ranking, plus the empty one, is stacked along the batch.
    The intervals resample the distinct clean `prompts` (every prompt its own unit when not
    given), the same resamples for every ranking. Passes counted in `cost`: `judge_cost`."""
    check_ablation(ablation)
    fractions = list(fractions)
    if sorted(fractions) != fractions or not fractions or fractions[0] <= 0 or fractions[-1] > 1:
        raise DfaError(f"Circuit fractions must rise within (0, 1], got {fractions}.")
    draws = {k: [v] if isinstance(v, torch.Tensor) else list(v) for k, v in rankings.items()}
    unique, inverse = distinct_circuits(
        [s for score_list in draws.values() for s in score_list], graph, fractions, keep_input, rank
    )
    with (cost := Cost() if cost is None else cost).watch(model):
        values, full_np = circuit_values(
            model, graph, batches, metric, unique, ablation, means, progress, max_rows
        )
    per_mask = values[inverse.numpy()]  # [1 + masks, n]
    empty_np = per_mask[0]
    n = full_np.shape[0]
    fams = list(families) if families is not None else ["all"] * n
    units = list(prompts) if prompts is not None else list(range(n))
    counts = cluster_weights(units, n_boot, np.random.default_rng(seed)) if n_boot > 0 else None  # [n, B]
    curves: dict[str, Curve] = {}
    row = 1
    for label, score_list in draws.items():
        d, nf = len(score_list), len(fractions)
        m_c = per_mask[row : row + d * nf].reshape(d, nf, n)
        row += d * nf
        c = curves[label] = curve(label, m_c, full_np, empty_np, fractions, counts, fams)
        c.ks = circuit_masks(score_list[0], graph, fractions, keep_input, rank)[1]
        c.n_ranked = len(ranking(score_list[0], graph, keep_input, rank)[1])
    return Evaluation(
        curves=curves,
        n_prompts=n,
        n_distinct=len(set(units)), clean=float(full_np.mean()), empty=float(empty_np.mean()),
        input_node="kept" if keep_input else "ranked",
        ablation=ablation,
        families=fams,
        prompts=list(prompts) if prompts is not None else [""] * n,
        clean_per_prompt=[float(x) for x in full_np],
        empty_per_prompt=[float(x) for x in empty_np],
        judge_cost=cost.to_json(),
    )
