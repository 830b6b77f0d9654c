"""Direct effects on the target: how much each node's output, patched from the corrupt prompt,
moves the answer logits by its direct path alone (through the final norm, into the unembedding),
from forward passes only (no gradients, no circuits).

For prompt `b`, node `n` (a head's `z_h @ W_O[h]`, or an MLP's output) at the answer position:

    DE_bn = ((out_bn(clean) - out_bn(corrupt)) |> centre (LayerNorm) |> * w_final) / scale_b
            . (mean_a W_U[:, a] - mean_w W_U[:, w])

with `scale_b` the final norm's scale on the clean residual (the norm frozen at the clean run;
`w_final` its gain, `1 + w` where the model stores offsets from 1),
`a` the prompt's answers and `w` its wrong answers (the mean unembedding when it has none).
It is cheap (two forward passes per batch) and task-conditioned, but it sees only what a node
writes straight into the logits: a head that acts through later layers has a small direct effect
however much the task needs it. `dfa.methods` ranks targets by it (`direct`) and by it added to
the depth prior (`depth-direct`), references for what a pass through the target buys a map.

`direct_effects` computes them for a task's prompts (from `direct_effect` and `logit_direction`); a
method reads them through `dfa.experiments.transfer.method_inputs` (`Inputs.direct`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from jaxtyping import Float

from dfa.core.errors import DfaError
from dfa.core.graph import NodeGraph
from dfa.core.interventions import capture, model_device
from dfa.core.tasks import Batch


def direct_effect(
    diff: Float[torch.Tensor, "batch node d_model"],
    gain: Float[torch.Tensor, " d_model"] | None,
    scale: Float[torch.Tensor, " batch"],
    direction: Float[torch.Tensor, "batch d_model"],
    centre: bool = True,
) -> Float[torch.Tensor, "batch node"]:
    """`DE` of the module docstring from the output differences `diff`, the final norm's gain,
    the clean scale per prompt and the logit direction per prompt."""
    if centre:
        diff = diff - diff.mean(-1, keepdim=True)
    if gain is not None:
        diff = diff * gain
    return torch.einsum("bnm,bm->bn", diff / scale[:, None, None], direction)


def logit_direction(model: Any, batch: Batch) -> Float[torch.Tensor, "batch d_model"]:
    """Mean unembedding of each prompt's answers minus that of its wrong answers (of the whole
    vocabulary where a prompt lists none)."""
    w_u = model.W_U  # [d_model, vocab]
    dev = w_u.device

    def mean_rows(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ids, mask = ids.to(dev), mask.to(dev)
        cols = w_u.T[torch.where(mask, ids, 0)] * mask[..., None]  # [batch, k, d_model]
        return cols.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)

    answers = mean_rows(batch["answers"], batch["answers_mask"])
    wrongs = mean_rows(batch["wrongs"], batch["wrongs_mask"])
    none = ~batch["wrongs_mask"].to(dev).any(1)
    wrongs[none] = w_u.mean(1)
    return answers - wrongs


def direct_effects(
    model: Any, graph: NodeGraph, batches: Iterable[Batch], ablation: str = "patching"
) -> Float[torch.Tensor, "prompt node"]:
    """`DE` of every prompt (rows) and mapped node (`graph.mapped` order: per layer its heads,
    then its MLP), from one clean and one corrupt forward pass per batch."""
    if ablation != "patching":
        raise DfaError(
            f"Direct effects read each prompt's corrupt run (ablation 'patching'), not {ablation!r}."
        )
    cfg = model.cfg
    n_layers, n_heads = int(cfg.n_layers), int(cfg.n_heads)
    if (graph.n_layers, graph.n_heads) != (n_layers, n_heads):
        raise DfaError(
            f"A graph of {graph.n_layers} x {graph.n_heads} for a model of {n_layers} x {n_heads}."
        )
    norm = getattr(cfg, "normalization_type", "LN")
    centre = norm in ("LN", "LNPre")
    eps = float(getattr(cfg, "eps", 1e-5))
    ln_final = getattr(model, "ln_final", None)
    gain = getattr(ln_final, "w", None) if ln_final is not None else None
    gain = gain.detach().float() if isinstance(gain, torch.Tensor) else None
    if gain is not None and bool(getattr(cfg, "rmsnorm_uses_offset", False)):
        gain = 1 + gain  # Gemma stores its RMSNorm gains as offsets from 1 (as dfa.core.roles reads them)
    resid = f"blocks.{n_layers - 1}.hook_resid_post"
    hooks = [resid] + [f"blocks.{l}.attn.hook_z" for l in range(n_layers)]
    hooks += [f"blocks.{l}.hook_mlp_out" for l in range(n_layers)]
    dev = model_device(model)
    gain = gain.to(dev) if gain is not None else None
    out = []
    with torch.no_grad():
        for batch in batches:
            last = batch["last"].to(dev)
            rows = torch.arange(len(last), device=dev)
            _, clean = capture(model, batch["clean"].to(dev), hooks, last)
            _, corrupt = capture(model, batch["corrupt"].to(dev), hooks, last)
            x = clean[resid][rows, last].float()
            if centre:
                x = x - x.mean(-1, keepdim=True)
            scale = (x.pow(2).mean(-1) + eps).sqrt()
            diffs = []
            for layer in range(n_layers):
                z = f"blocks.{layer}.attn.hook_z"
                dz = (clean[z][rows, last] - corrupt[z][rows, last]).float()  # [batch, head, d_head]
                diffs.append(torch.einsum("bhd,hdm->bhm", dz, model.blocks[layer].attn.W_O.float()))
                m = f"blocks.{layer}.hook_mlp_out"
                diffs.append((clean[m][rows, last] - corrupt[m][rows, last]).float()[:, None])
            direction = logit_direction(model, batch).float()
            out.append(direct_effect(torch.cat(diffs, 1), gain, scale, direction, centre).cpu())
    if not out:
        raise DfaError("Direct effects need at least one batch of prompts.")
    return torch.cat(out)
