"""Per-node activation statistics from the model alone (no task data): what tells the heads of one
layer apart for the features map (`map_features: stats`, `dfa.core.feature_map`).

Measured on the role texts (`dfa.core.roles.repeated_tokens`: `[BOS] r r`, `r` distinct random
tokens, repeated once), at every position after BOS, for each head (its output `z_h @ W_O[h]`, the
part of the residual stream it writes; patching `hook_z` replaces exactly this) and each MLP
(`hook_mlp_out`):

- `log_norm`: log of the mean `||out||`: how much the node writes at all.
- `log_spread`: log of the mean `||out(x) - out(x')||` over pairs of sequences at the same
  position: what patching the node with another input's output changes (a node that writes the
  same vector whatever the input is removed by patching at no cost, however large its norm).
- `entropy` (heads): the mean entropy of the attention of the queries after BOS, each divided by
  `log(q + 1)`, its maximum for query `q`: 1 = uniform, 0 = one key.
- `bos` (heads): the mean attention to the first position (BOS): a resting head.

MLPs have no attention: their `entropy` and `bos` are 0. `NodeStats.table` z-scores each column
within the model over the nodes of one kind (heads among heads, MLPs among MLPs), so that a head
is placed among its own model's heads and the values compare across model sizes (raw norms grow
with width and depth). A column that is constant within a kind (a one-head model) is 0.

`node_stats` measures a model; `dfa.store.cached_node_stats` caches the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float

from dfa.core.errors import DfaError
from dfa.core.interventions import model_device
from dfa.core.io import read_named_tensor, save_named_tensor
from dfa.core.roles import candidate_tokens, model_name, repeated_tokens

STATS: tuple[str, ...] = ("log_norm", "log_spread", "entropy", "bos")
HEAD_ONLY: tuple[str, ...] = ("entropy", "bos")
N_STATS = len(STATS)
VERSION = 1
STATS_KEY = "stats"
EPS = 1e-8


class NodeStatsError(DfaError, ValueError):
    """Node statistics that cannot be computed or read."""


# --- pure statistics on tensors -------------------------------------------------------------------
def output_stats(out: Float[torch.Tensor, "batch pos *node d_model"]) -> tuple[torch.Tensor, torch.Tensor]:
    """`(log_norm, log_spread)` per node of outputs `[batch, pos, *node, d_model]` (module docstring);
    the spread pairs sequence `b` with `b - 1` (cyclically), so it needs two sequences or more."""
    if out.shape[0] < 2:
        raise NodeStatsError("The spread of a node's output needs at least two sequences.")
    out = out.float()
    norm = out.norm(dim=-1).mean(dim=(0, 1))
    spread = (out - out.roll(1, 0)).norm(dim=-1).mean(dim=(0, 1))
    return (norm + EPS).log(), (spread + EPS).log()


def attention_stats(
    patterns: Float[torch.Tensor, "batch head q k"], start: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(entropy, bos)` per head from causal attention patterns, over the queries `q >= max(start, 1)`
    (the query at 0 has one key: no entropy to measure)."""
    q0 = max(start, 1)
    p = patterns[:, :, q0:, :].float()
    n_keys = torch.arange(q0, patterns.shape[-2], device=p.device, dtype=torch.float32) + 1
    ent = -(p * p.clamp_min(1e-12).log()).sum(-1) / n_keys.log()
    return ent.mean(dim=(0, 2)), p[..., 0].mean(dim=(0, 2))


def zscore(x: torch.Tensor) -> torch.Tensor:
    """`x` z-scored along dim 0 per column; a constant column (or a single row) is 0."""
    if len(x) < 2:
        return torch.zeros_like(x)
    std = x.std(0, keepdim=True)
    return torch.where(std > 1e-6, (x - x.mean(0, keepdim=True)) / std.clamp_min(1e-6), torch.zeros_like(x))


# --- the result -----------------------------------------------------------------------------------
@dataclass
class NodeStats:
    """Raw `STATS` per node: `[n_layers, n_heads + 1, N_STATS]`, index `n_heads` the layer's MLP."""

    model: str
    values: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.values = self.values.detach().float().cpu()
        if self.values.ndim != 3 or self.values.shape[-1] != N_STATS or self.values.shape[1] < 2:
            raise NodeStatsError(
                f"Node statistics must be [n_layers, n_heads + 1, {N_STATS}], got {tuple(self.values.shape)}."
            )
        if not bool(torch.isfinite(self.values).all()):
            raise NodeStatsError(f"Node statistics of {self.model} are not all finite.")

    @property
    def n_layers(self) -> int:
        return self.values.shape[0]

    @property
    def n_heads(self) -> int:
        return self.values.shape[1] - 1

    def table(self) -> Float[torch.Tensor, "n_mapped stat"]:
        """One row per mapped node in `NodeGraph.mapped` order (per layer its heads, then its MLP),
        each column z-scored within the model over the nodes of one kind (module docstring)."""
        heads = zscore(self.values[:, :-1].reshape(-1, N_STATS))
        mlps = zscore(self.values[:, -1])
        mlps[:, [STATS.index(s) for s in HEAD_ONLY]] = 0.0
        out = torch.cat([heads.view(self.n_layers, self.n_heads, N_STATS), mlps[:, None]], 1)
        return out.reshape(-1, N_STATS)

    def save(self, path: str | Path) -> Path:
        return save_named_tensor(path, STATS_KEY, self.values, self.model, STATS, self.meta)

    @classmethod
    def load(cls, path: str | Path) -> NodeStats:
        model, tensor, names, meta = read_named_tensor(path, STATS_KEY, NodeStatsError, "node-statistics")
        if names != STATS:
            raise NodeStatsError(f"{path} holds statistics {names}, not this version's {STATS}.")
        return cls(model, tensor, meta)


# --- from a model ---------------------------------------------------------------------------------
def node_stats(model: Any, n_seqs: int = 32, seq_len: int = 20, seed: int = 0) -> NodeStats:
    """`STATS` of every head and MLP of a loaded `TransformerBridge` (deterministic for a seed), on
    the role texts (`[BOS] r r`; `seq_len` capped to the context)."""
    cfg = model.cfg
    n_layers, n_heads = int(cfg.n_layers), int(cfg.n_heads)
    tokenizer = model.tokenizer
    bos = getattr(tokenizer, "bos_token_id", None) if getattr(cfg, "default_prepend_bos", True) else None
    start = 0 if bos is None else 1
    n_ctx = int(getattr(cfg, "n_ctx", 0) or 0)
    L = min(seq_len, (n_ctx - start) // 2) if n_ctx else seq_len
    generator = torch.Generator().manual_seed(seed)
    tokens = repeated_tokens(candidate_tokens(tokenizer, int(cfg.d_vocab)), n_seqs, L, bos, generator)
    values = torch.zeros(n_layers, n_heads + 1, N_STATS)
    seen: dict[str, set[int]] = {"z": set(), "pattern": set(), "mlp": set()}
    norm_i, spread_i = STATS.index("log_norm"), STATS.index("log_spread")

    def on_z(layer: int):
        def fn(z: torch.Tensor, hook: Any) -> torch.Tensor:
            w_o = model.blocks[layer].attn.W_O  # [head, d_head, d_model]
            out = torch.einsum("bphd,hdm->bphm", z[:, start:].float(), w_o.float())
            values[layer, :n_heads, norm_i], values[layer, :n_heads, spread_i] = (
                t.cpu() for t in output_stats(out)
            )
            seen["z"].add(layer)
            return z

        return fn

    def on_pattern(layer: int):
        def fn(pattern: torch.Tensor, hook: Any) -> torch.Tensor:
            ent, to_bos = attention_stats(pattern, start)
            values[layer, :n_heads, STATS.index("entropy")] = ent.cpu()
            values[layer, :n_heads, STATS.index("bos")] = to_bos.cpu()
            seen["pattern"].add(layer)
            return pattern

        return fn

    def on_mlp(layer: int):
        def fn(out: torch.Tensor, hook: Any) -> torch.Tensor:
            values[layer, n_heads, norm_i], values[layer, n_heads, spread_i] = (
                t.cpu() for t in output_stats(out[:, start:])
            )
            seen["mlp"].add(layer)
            return out

        return fn

    hooks = []
    for layer in range(n_layers):
        hooks += [
            (f"blocks.{layer}.attn.hook_z", on_z(layer)),
            (f"blocks.{layer}.attn.hook_pattern", on_pattern(layer)),
            (f"blocks.{layer}.hook_mlp_out", on_mlp(layer)),
        ]
    with torch.no_grad():
        model.run_with_hooks(tokens.to(model_device(model)), fwd_hooks=hooks)
    missing = [k for k, v in seen.items() if len(v) != n_layers]
    if missing:
        raise NodeStatsError(
            f"Hooks {', '.join(missing)} fired on fewer than {n_layers} layers; attention patterns need "
            "eager attention (load the HF model with attn_implementation='eager')."
        )
    meta = {
        "version": VERSION,
        "n_seqs": n_seqs,
        "seq_len": L,
        "bos": bos is not None,
        "seed": seed,
        "cfg": {"n_layers": n_layers, "n_heads": n_heads},
    }
    return NodeStats(model_name(model), values, meta)
