"""Node importance scores: EAP, EAP-IG over inputs or over activations, and exact patching.

Every method estimates, per node `j`, the same quantity: `metric(clean) - metric(clean with
node j ablated)` (the intervention of `dfa.core.interventions`), averaged over prompts.
Positive means the node supports the clean answer; ablating it lowers the metric.

- `eap`: `(out_j(clean) - donor_j) . d metric / d out_j` at the clean run (one forward and
  backward); the first-order estimate of that difference.
- `eap-ig-inputs`: the same product, with the gradient averaged over `ig_steps` runs whose input
  embeddings are interpolated from the donor's (alpha = 1/k ... 1, so one step is `eap`).
- `eap-ig-activations`: integrated gradients of the metric over the node mask along the path
  from every node ablated (mask 0) to none (mask 1), alpha = 1/k ... 1; by completeness the
  scores add up to about `metric(clean) - metric(everything ablated)`.
- `exact`: one masked forward per node (batched): the ground truth, for small models.

Only the answer position is unembedded (`dfa.core.interventions.answer_logits`), and the IG steps
and exact-patching masks stacked along the batch are run `max_rows` prompt rows per pass at most
(default: one step or mask per pass, the memory of one plain forward and backward).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from tqdm.auto import tqdm

from dfa.core.errors import DfaError
from dfa.core.graph import INPUT_HOOK, NodeGraph
from dfa.core.interventions import (
    Ablation,
    Cache,
    answer_logits,
    check_ablation,
    donor_activations,
    donor_at,
    hook_slots,
    masked_metric,
    mean_activations,
    model_device,
    repeat_batch,
    rows_per_pass,
    run_masked,
    to_device,
)
from dfa.core.metrics import batch_metric
from dfa.core.names import IG_METHODS, Method
from dfa.core.tasks.base import Metric


def _node_products(graph: NodeGraph, clean: Cache, donor: Cache, grads: Cache) -> torch.Tensor:
    """Per node, the sum over prompts, positions and features of `(clean - donor) * grad`, in
    float64 (a bf16 model's clean and donor activations differ in digits that a bf16 difference
    would round away), one hook at a time."""
    out = torch.zeros(len(graph), dtype=torch.float64)
    for s in hook_slots(graph):
        a = clean[s.hook].double()
        delta = a - donor_at(donor, s.hook, a)
        prod = (delta * grads[s.hook].double()).sum(1)  # over positions
        per_node = prod.sum((0, 2)) if s.heads else prod.sum().reshape(1)
        out[s.indices] += per_node.cpu()
    return out


def _grad_pass(
    model: Any,
    graph: NodeGraph,
    tokens: torch.Tensor,
    batch: dict[str, torch.Tensor],
    metric: Metric,
    edit_input: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[Cache, Cache]:
    """One forward and backward pass on `tokens`: the activations at the graph's hooks and the
    gradient of the summed metric with respect to each. The input embeddings become the leaf
    of the autograd graph (after `edit_input`, when given), as the model's weights are frozen."""
    acts: Cache = {}
    hooks = graph.hooks if INPUT_HOOK in graph.hooks else [INPUT_HOOK, *graph.hooks]

    def grab(name: str):
        def fn(act: torch.Tensor, hook: Any) -> torch.Tensor:
            if name == INPUT_HOOK:
                act = (edit_input(act) if edit_input else act).detach().requires_grad_(True)
            acts[name] = act
            return act

        return fn

    with torch.enable_grad():
        logits = answer_logits(model, tokens, batch["last"], [(h, grab(h)) for h in hooks])
        total = batch_metric(metric, logits, batch).sum()
        wanted = [acts[h] for h in graph.hooks]
        grads = torch.autograd.grad(total, wanted, allow_unused=True)
    out = {
        h: torch.zeros_like(a) if g is None else g for h, a, g in zip(graph.hooks, wanted, grads, strict=True)
    }
    return {h: acts[h].detach() for h in graph.hooks}, out


def score_eap(model, graph, batch, metric, donor, steps: int = 1, max_rows=None) -> torch.Tensor:
    acts, grads = _grad_pass(model, graph, batch["clean"], batch, metric)
    return _node_products(graph, acts, donor, grads)


def score_eap_ig_inputs(model, graph, batch, metric, donor, steps: int = 5, max_rows=None) -> torch.Tensor:
    b = batch["clean"].shape[0]
    alphas = torch.arange(1, steps + 1, dtype=torch.float64) / steps
    per_pass = rows_per_pass(max_rows, b)
    grad_sum: Cache = {}
    clean: Cache = {}
    for start in range(0, steps, per_pass):
        chunk = alphas[start : start + per_pass]
        n = len(chunk)

        def interpolate(act: torch.Tensor, chunk=chunk, n=n) -> torch.Tensor:
            a = act.reshape(n, b, *act.shape[1:])
            w = chunk.to(act.device, act.dtype).view(n, 1, 1, 1)
            d = donor_at(donor, INPUT_HOOK, act)
            # (1 - a) * donor + a * clean: exactly the clean embeddings at alpha = 1.
            return ((1 - w) * d + w * a).reshape(act.shape)

        acts, grads = _grad_pass(
            model, graph, batch["clean"].repeat(n, 1), repeat_batch(batch, n), metric, interpolate
        )
        for h, g in grads.items():
            # Summed over the steps in float32 at least (a bf16 model's gradients are bf16).
            g = g.view(n, b, *g.shape[1:]).to(torch.promote_types(g.dtype, torch.float32)).sum(0)
            grad_sum[h] = grad_sum[h] + g if h in grad_sum else g
        if start + n == steps:  # the last alpha is 1: these are the clean activations
            clean = {h: a.view(n, b, *a.shape[1:])[-1] for h, a in acts.items()}
    mean_grad = {h: g / steps for h, g in grad_sum.items()}
    return _node_products(graph, clean, donor, mean_grad)


def score_eap_ig_activations(
    model, graph, batch, metric, donor, steps: int = 5, max_rows=None
) -> torch.Tensor:
    b = batch["clean"].shape[0]
    alphas = torch.arange(1, steps + 1, dtype=torch.float32) / steps
    per_pass = rows_per_pass(max_rows, b)
    total = torch.zeros(len(graph), dtype=torch.float64)
    device = batch["clean"].device
    for start in range(0, steps, per_pass):
        chunk = alphas[start : start + per_pass].to(device)
        masks = (chunk[:, None] * torch.ones(len(graph), device=device)).requires_grad_(True)
        with torch.enable_grad():
            logits = run_masked(model, graph, batch["clean"], donor, masks, last=batch["last"])
            flat = logits.reshape(-1, logits.shape[-1])
            value = batch_metric(metric, flat, repeat_batch(batch, len(chunk))).sum()
            (grad,) = torch.autograd.grad(value, masks)
        total += grad.sum(0).double().cpu()
    return total / steps


def score_exact(model, graph, batch, metric, donor, steps: int = 1, max_rows=None) -> torch.Tensor:
    n = len(graph)
    device = batch["clean"].device
    with torch.inference_mode():
        full = batch_metric(metric, answer_logits(model, batch["clean"], batch["last"]), batch)
        without = 1 - torch.eye(n, device=device)  # row j: every node but j
        patched = masked_metric(model, graph, batch, donor, without, metric, hard=True, max_rows=max_rows)
    return (full[None, :] - patched).sum(1).double().cpu()


METHODS: dict[str, Callable[..., torch.Tensor]] = {
    "eap": score_eap,
    "eap-ig-inputs": score_eap_ig_inputs,
    "eap-ig-activations": score_eap_ig_activations,
    "exact": score_exact,
}


def check_method(method: str) -> str:
    if method not in METHODS:
        raise DfaError(f"Unknown attribution method {method!r}; choose one of {', '.join(METHODS)}.")
    return method


def attribution_rows(method: str, n: int, ig_steps: int = 5, n_nodes: int = 0) -> tuple[int, int]:
    """The (forward, backward) prompt rows `attribute` runs on `n` prompts with patching (what
    `dfa.core.cost.Cost` counts): the corrupt pass every method caches as the donor, then
    `eap`: one forward and backward; the IG methods: `ig_steps` of each; `exact`: the clean pass
    and one masked pass per node. What gold costs before it runs (the val check's budget)."""
    check_method(method)
    if method == "exact":
        return n * (2 + n_nodes), 0
    steps = 1 if method == "eap" else ig_steps
    return n * (1 + steps), n * steps


def attribute_parts(
    model: Any,
    graph: NodeGraph,
    batches: Iterable[dict[str, torch.Tensor]],
    metric: Metric,
    method: str = "eap-ig-inputs",
    ablation: Ablation = "patching",
    ig_steps: int = 5,
    means: Cache | None = None,
    progress: bool = False,
    max_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per batch, the summed scores `[n_batches, n_nodes]` (float64) and the prompt counts
    `[n_batches]`: `attribute` is their total over the total count; resampling the batches gives
    noisy versions of it (`dfa.core.circuits.score_resamples`). `max_rows`: prompt rows per
    stacked pass (module docstring)."""
    fn = METHODS[check_method(method)]
    check_ablation(ablation)
    if ig_steps < 1:
        raise DfaError(f"The `ig_steps` setting must be at least 1, got {ig_steps}.")
    rows_per_pass(max_rows, 1)  # a bad budget fails before any pass
    device = model_device(model)
    batches = list(batches)
    if not batches:
        raise DfaError("Attribution needs at least one prompt.")
    if ablation == "mean" and means is None:  # mean ablation's donor: the means over every batch
        means = mean_activations(model, graph, batches)
    sums, counts = [], []
    for batch in tqdm(batches, desc=method, disable=None if progress else True, leave=False):
        batch = to_device(batch, device)
        donor = donor_activations(model, graph, batch, ablation, means)
        sums.append(fn(model, graph, batch, metric, donor, steps=ig_steps, max_rows=max_rows).double().cpu())
        counts.append(batch["clean"].shape[0])
    return torch.stack(sums), torch.tensor(counts, dtype=torch.float64)


def attribute(
    model: Any,
    graph: NodeGraph,
    batches: Iterable[dict[str, torch.Tensor]],
    metric: Metric,
    method: str = "eap-ig-inputs",
    ablation: Ablation = "patching",
    ig_steps: int = 5,
    means: Cache | None = None,
    progress: bool = False,
    max_rows: int | None = None,
) -> torch.Tensor:
    """Scores `[n_nodes]` (graph order, float32): per node, the mean over every prompt of
    `batches` of the estimated metric drop when the node alone is ablated."""
    sums, counts = attribute_parts(
        model, graph, batches, metric, method, ablation, ig_steps, means, progress, max_rows
    )
    if counts.sum() == 0:
        raise DfaError("Attribution needs at least one prompt.")
    return (sums.sum(0) / counts.sum()).float()


__all__ = [
    "IG_METHODS",
    "METHODS",
    "Method",
    "attribute",
    "attribute_parts",
    "attribution_rows",
    "check_method",
]
