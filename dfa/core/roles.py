"""Functional head roles from the model alone (no task data), each a score in [0, 1] per head.

Attention roles, measured on `n_seqs` sequences `[BOS] r r`: `r` is `seq_len` distinct token ids
drawn uniformly (without replacement) from the vocabulary less its special tokens, repeated
once; BOS is prepended when the tokenizer has one (dfa runs every model with BOS). With `s`
the position of r's first token (1 with BOS, else 0), `L = seq_len`, and `A[q, k]` a head's
attention from query `q` to key `k`:

- `induction`: mean of `A[q, q - L + 1]` over the second copy's queries `q` in `[s+L, s+2L)`:
  attention to the token right after the previous occurrence of the current token.
- `previous_token`: mean of `A[q, q - 1]` over every query `q` in `[s+1, s+2L)` (both copies;
  the query at `s`, whose previous token is BOS, is left out: attending to BOS never counts).
- `duplicate_token`: mean of `A[q, q - L]` over the second copy's queries: attention to the
  earlier occurrence of the current token.

Each is an average of attention probabilities, so it is in [0, 1]. Uniform causal attention
puts `1/(q+1)` on each key: with BOS and the default `L = 20` it scores 0.033 on induction and
duplicate_token and 0.072 on previous_token (chance level).

OV roles, from weights. The OV row of token `t` for head `(l, h)` is the head's direct effect on
the logits when it attends only to `t`'s embedding:

    row_t = ((c(W_E[t]) * g_l) @ W_V[l, h] @ W_O[l, h]) |> c |> (* g_f) @ W_U    [vocab]

where `c` subtracts the mean over `d_model` (LayerNorm's centring; skipped for RMSNorm), `g_l` is
the gain of the LayerNorm the head reads through (`blocks.l.ln1`) and `g_f` that of the final
LayerNorm (Gemma: `1 + w`, and the gain of the norm on the attention output, `ln1_post`, after
`W_O`). Under grouped-query attention `W_V[l, h]` is the value weight of the head's key/value
group (`kv_head`); `W_O[l, h]` is always the query head's own slice. Biases (`b_V`, `b_O`, LayerNorm biases, `b_U`) are left out: they add the same vector
to every row, which says nothing about which token a head copies. The LayerNorm scales are left
out too: each multiplies a whole row by a positive number, which no rank below depends on.
Token and position are not mixed (no `W_pos`, no MLP0 "extended embedding").

With `rank(x, row)` = the number of entries of `row` that are >= x, minus 1 (ties count against
the token, so a head whose row is constant, e.g. all zeros, copies nothing):

- `copy`: fraction of `n_tokens` sampled token ids `t` (distinct, uniform over the vocabulary
  less special tokens) with `rank(row_t[t], row_t) < TOP_K`: the head raises the token it
  attends to among its top 5 of the whole vocabulary.
- `copy_suppression`: the same on `-row_t`: the token is among the head's 5 most *lowered*.
- `successor`: over the pairs `(a, b)` of consecutive items of `ORDINALS` (" 1" -> " 2", ...,
  " Monday" -> " Tuesday", " January" -> " February"; no wrap-around) where both are single
  tokens for the model's tokenizer, the fraction with `b` the top entry of `row_a` once `a`
  itself is removed (rank < `SUCCESSOR_K` = 1). Items that are not single tokens are skipped
  and counted in `meta["successor_pairs"]`; with no pair at all the score is 0 for every head
  and `meta["successor_pairs"]["total"]` is 0.

Chance levels: `TOP_K / vocab` for copy and copy suppression, `1 / (vocab - 1)` for successor.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from jaxtyping import Float, Int

from dfa.core.errors import DfaError
from dfa.core.graph import NodeGraph, relative_depth
from dfa.core.interventions import model_device
from dfa.core.io import read_named_tensor, save_named_tensor

ROLES: tuple[str, ...] = (
    "induction",
    "previous_token",
    "duplicate_token",
    "copy",
    "copy_suppression",
    "successor",
)
ATTENTION_ROLES: tuple[str, ...] = ROLES[:3]
OV_ROLES: tuple[str, ...] = ROLES[3:]
TOP_K = 5
SUCCESSOR_K = 1
SCORES_KEY = "roles"
VERSION = 1  # bump when a definition changes: cached files of another version are recomputed

ORDINALS: dict[str, tuple[str, ...]] = {
    "numbers": tuple(f" {n}" for n in range(1, 101)),
    "days": tuple(" " + d for d in "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()),
    "months": tuple(
        " " + m
        for m in (
            "January February March April May June July August September October November December"
        ).split()
    ),
}


class RolesError(DfaError, ValueError):
    """Role scores that cannot be computed, read, or do not fit a model."""


class RoleHead(NamedTuple):
    """A head in a role census: its node name, relative depth and score."""

    name: str
    depth: float
    score: float


# --- pure scoring on tensors ----------------------------------------------------------------------
def attention_role_scores(
    patterns: Float[torch.Tensor, "batch head q k"], seq_len: int, start: int = 0
) -> dict[str, Float[torch.Tensor, " head"]]:
    """`induction`, `previous_token` and `duplicate_token` per head (module docstring) from the
    attention patterns of sequences `[start tokens] r r` with `len(r) == seq_len`."""
    L = seq_len
    if L < 3:
        raise RolesError(f"seq_len must be at least 3 (got {L}): below, induction's target is i-1.")
    if patterns.ndim != 4 or patterns.shape[-2] != start + 2 * L:
        raise RolesError(
            f"Expected patterns [batch, head, q, k] over {start + 2 * L} positions (start {start} + "
            f"2 x {L}), got shape {tuple(patterns.shape)}."
        )
    device = patterns.device
    second = torch.arange(start + L, start + 2 * L, device=device)
    after_first = torch.arange(start + 1, start + 2 * L, device=device)

    def mean_at(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return patterns[:, :, queries, keys].float().mean(dim=(0, 2))

    return {
        "induction": mean_at(second, second - L + 1),
        "previous_token": mean_at(after_first, after_first - 1),
        "duplicate_token": mean_at(second, second - L),
    }


def ranks_of(rows: Float[torch.Tensor, "*rows vocab"], index: Int[torch.Tensor, "*rows"]) -> torch.Tensor:
    """For each row, how many other entries are >= the entry at `index` (ties count against it)."""
    value = rows.gather(-1, index.unsqueeze(-1))
    return (rows >= value).sum(-1) - 1


def ov_role_scores(
    ov_logits: Float[torch.Tensor, "head row vocab"],
    token_ids: Int[torch.Tensor, " row"],
    successor_pairs: Sequence[tuple[int, int]] = (),
    copy_rows: torch.Tensor | None = None,
    k: int = TOP_K,
    successor_k: int = SUCCESSOR_K,
) -> dict[str, Float[torch.Tensor, " head"]]:
    """`copy`, `copy_suppression` and `successor` per head (module docstring) from OV rows:
    `ov_logits[h, i]` is head `h`'s row for token `token_ids[i]`. Copy scores average over the
    rows `copy_rows` selects (bool mask; all rows by default); a successor pair `(a, b)` reads the
    row of token `a` (which must be among `token_ids`)."""
    n_heads, n_rows, _ = ov_logits.shape
    token_ids = token_ids.to(ov_logits.device).long()
    if token_ids.shape != (n_rows,):
        raise RolesError(f"{n_rows} OV rows but token_ids has shape {tuple(token_ids.shape)}.")
    mask = torch.ones(n_rows, dtype=torch.bool) if copy_rows is None else copy_rows.bool().cpu()
    own = token_ids.expand(n_heads, n_rows)
    rows = ov_logits[:, mask.to(ov_logits.device)]
    own = own[:, mask.to(ov_logits.device)]
    out = {
        "copy": (ranks_of(rows, own) < k).float().mean(-1),
        "copy_suppression": (ranks_of(-rows, own) < k).float().mean(-1),
    }
    if successor_pairs:
        row_of = {int(t): i for i, t in enumerate(token_ids.tolist())}
        missing = [a for a, _ in successor_pairs if a not in row_of]
        if missing:
            raise RolesError(f"Successor items {missing[:5]} have no OV row among token_ids.")
        src = torch.tensor([row_of[a] for a, _ in successor_pairs], device=ov_logits.device)
        a = torch.tensor([a for a, _ in successor_pairs], device=ov_logits.device).expand(n_heads, -1)
        b = torch.tensor([b for _, b in successor_pairs], device=ov_logits.device).expand(n_heads, -1)
        pair_rows = ov_logits[:, src]  # [head, pair, vocab]
        # Rank of b with a itself removed from the row.
        b_value = pair_rows.gather(-1, b.unsqueeze(-1)).squeeze(-1)
        a_value = pair_rows.gather(-1, a.unsqueeze(-1)).squeeze(-1)
        rank = ranks_of(pair_rows, b) - (a_value >= b_value).long()
        out["successor"] = (rank < successor_k).float().mean(-1)
    else:
        out["successor"] = torch.zeros(n_heads, device=ov_logits.device)
    return out


# --- reading a model ------------------------------------------------------------------------------
def model_name(model: Any) -> str:
    info = getattr(model, "dfa_info", None)
    if info is not None:
        return info.spec.text
    return str(getattr(model.cfg, "model_name", type(model).__name__))


def candidate_tokens(tokenizer: Any, d_vocab: int) -> torch.Tensor:
    """Every token id of the tokenizer that the model has, except special tokens (a padded
    embedding, as Pythia's 50304 rows for 50277 tokens, keeps its unused rows out)."""
    n = min(d_vocab, len(tokenizer))
    special = {int(i) for i in getattr(tokenizer, "all_special_ids", []) or []}
    keep = torch.tensor([i not in special for i in range(n)])
    return torch.arange(n)[keep]


def repeated_tokens(
    candidates: torch.Tensor, n_seqs: int, seq_len: int, bos: int | None, generator: torch.Generator
) -> torch.Tensor:
    """`[n_seqs, (1 if bos) + 2 * seq_len]`: `[BOS] r r`, `r` distinct draws from `candidates`."""
    if len(candidates) < seq_len:
        raise RolesError(f"A vocabulary of {len(candidates)} tokens cannot fill {seq_len} distinct ones.")
    r = torch.stack(
        [candidates[torch.randperm(len(candidates), generator=generator)[:seq_len]] for _ in range(n_seqs)]
    )
    parts = [r, r]
    if bos is not None:
        parts.insert(0, torch.full((n_seqs, 1), bos, dtype=r.dtype))
    return torch.cat(parts, dim=1)


def _norm_in(x: torch.Tensor, norm: Any, normalization: str | None, offset: bool = False) -> torch.Tensor:
    """A LayerNorm without its scale and bias: centre (LN only), then the gain (`1 + w` where the
    model stores its RMSNorm gains as offsets from 1, as Gemma does)."""
    if normalization in ("LN", "LNPre"):
        x = x - x.mean(-1, keepdim=True)
    w = getattr(norm, "w", None) if norm is not None else None
    if not isinstance(w, torch.Tensor):
        return x
    return x * (1 + w) if offset else x * w


def kv_head(head: int, n_heads: int, n_kv_heads: int) -> int:
    """The key/value head a query head reads under grouped-query attention: query heads come in
    `n_kv_heads` consecutive groups of `n_heads // n_kv_heads` (HF's `repeat_kv` order), so query
    head `h` reads key/value head `h // (n_heads // n_kv_heads)`; without grouping, `h` itself."""
    if n_heads % n_kv_heads:
        raise RolesError(f"{n_heads} query heads do not split into {n_kv_heads} key/value groups.")
    return head // (n_heads // n_kv_heads)


def ov_logits(model: Any, layer: int, head: int, token_ids: torch.Tensor) -> Float[torch.Tensor, "row vocab"]:
    """Query head `(layer, head)`'s OV rows (module docstring) for `token_ids`, through the bridge's
    weights (`W_E`, `blocks.l.attn.W_V/W_O` as `[kv head, d_model, d_head]`/`[head, d_head, d_model]`,
    the fused GPT-2 and GPT-NeoX QKV already split per head by TransformerLens, `W_U`). Under
    grouped-query attention the head's values are its group's (`kv_head`); where the block
    normalizes the attention output before the residual add (Gemma's `ln1_post`), that gain is
    applied too."""
    cfg = model.cfg
    norm = getattr(cfg, "normalization_type", "LN")
    offset = bool(getattr(cfg, "rmsnorm_uses_offset", False))
    block = model.blocks[layer]
    attn = block.attn
    w_v = attn.W_V[kv_head(head, int(cfg.n_heads), int(attn.W_V.shape[0]))]
    w_e = model.W_E[token_ids.to(model.W_E.device)]
    x = _norm_in(w_e, block.ln1, norm, offset)
    u = x @ w_v @ attn.W_O[head]
    post = getattr(block, "ln1_post", None) if "ln1_post" in getattr(block, "_modules", {}) else None
    if post is not None:
        u = _norm_in(u, post, norm, offset)
    y = _norm_in(u, getattr(model, "ln_final", None), norm, offset)
    return y @ model.W_U


def successor_pairs(tokenizer: Any, d_vocab: int) -> tuple[list[tuple[int, int]], dict[str, int]]:
    """Token-id pairs `(item, next item)` of `ORDINALS` where both are single tokens, and the
    pair count per sequence (plus `total`)."""
    unk = getattr(tokenizer, "unk_token_id", None)

    def single(text: str) -> int | None:
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1 or ids[0] == unk or ids[0] >= d_vocab:
            return None
        return int(ids[0])

    pairs: list[tuple[int, int]] = []
    counts: dict[str, int] = {}
    for name, items in ORDINALS.items():
        ids = [single(t) for t in items]
        found = [(a, b) for a, b in itertools.pairwise(ids) if a is not None and b is not None and a != b]
        counts[name] = len(found)
        pairs.extend(found)
    counts["total"] = len(pairs)
    return pairs, counts


def role_scores(
    model: Any,
    n_seqs: int = 32,
    seq_len: int = 20,
    n_tokens: int = 512,
    seed: int = 0,
    progress: bool = False,
) -> RoleScores:
    """Every head's `ROLES` scores for a loaded `TransformerBridge` (deterministic for a seed).
    `seq_len` is capped so that `[BOS] r r` fits the model's context."""
    cfg = model.cfg
    n_layers, n_heads, d_vocab = int(cfg.n_layers), int(cfg.n_heads), int(cfg.d_vocab)
    tokenizer = model.tokenizer
    bos = getattr(tokenizer, "bos_token_id", None) if getattr(cfg, "default_prepend_bos", True) else None
    start = 0 if bos is None else 1
    n_ctx = int(getattr(cfg, "n_ctx", 0) or 0)
    L = min(seq_len, (n_ctx - start) // 2) if n_ctx else seq_len
    generator = torch.Generator().manual_seed(seed)
    candidates = candidate_tokens(tokenizer, d_vocab)
    tokens = repeated_tokens(candidates, n_seqs, L, bos, generator)
    scores = torch.zeros(n_layers, n_heads, len(ROLES))
    seen: set[int] = set()

    def keep(layer: int):
        def fn(pattern: torch.Tensor, hook: Any) -> torch.Tensor:
            for role, s in attention_role_scores(pattern, L, start).items():
                scores[layer, :, ROLES.index(role)] = s.cpu()
            seen.add(layer)
            return pattern

        return fn

    if progress:
        print(f"roles: attention on {n_seqs} repeated sequences of {L} tokens ...", flush=True)
    with torch.no_grad():
        model.run_with_hooks(
            tokens.to(model_device(model)),
            fwd_hooks=[(f"blocks.{l}.attn.hook_pattern", keep(l)) for l in range(n_layers)],
        )
    if len(seen) != n_layers:
        raise RolesError(
            f"Attention patterns were seen for {len(seen)} of {n_layers} layers; the pattern hook "
            "needs eager attention (load the HF model with attn_implementation='eager')."
        )

    sample = candidates[
        torch.randperm(len(candidates), generator=generator)[: min(n_tokens, len(candidates))]
    ]
    pairs, pair_counts = successor_pairs(tokenizer, d_vocab)
    firsts = torch.tensor(sorted({a for a, _ in pairs}), dtype=torch.long)
    rows = torch.cat([sample, firsts])
    copy_rows = torch.arange(len(rows)) < len(sample)
    if progress:
        print(f"roles: OV circuits of {n_layers * n_heads} heads on {len(rows)} tokens ...", flush=True)
    with torch.no_grad():
        for layer in range(n_layers):
            for head in range(n_heads):
                logits = ov_logits(model, layer, head, rows).float()
                for role, s in ov_role_scores(logits[None], rows, pairs, copy_rows).items():
                    scores[layer, head, ROLES.index(role)] = s.cpu()[0]
    meta = {
        "version": VERSION,
        "n_seqs": n_seqs,
        "seq_len": L,
        "bos": bos is not None,
        "n_tokens": len(sample),
        "top_k": TOP_K,
        "successor_k": SUCCESSOR_K,
        "successor_pairs": pair_counts,
        "seed": seed,
        "d_vocab": d_vocab,
        "cfg": {"n_layers": n_layers, "n_heads": n_heads},
    }
    return RoleScores(model_name(model), scores, meta)


# --- the result -----------------------------------------------------------------------------------
@dataclass
class RoleScores:
    """Per-head role scores `[n_layers, n_heads, len(ROLES)]`, in `ROLES` order."""

    model: str
    scores: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.scores = self.scores.detach().float().cpu()
        if self.scores.ndim != 3 or self.scores.shape[-1] != len(ROLES):
            raise RolesError(
                f"Role scores must be [n_layers, n_heads, {len(ROLES)}], got {tuple(self.scores.shape)}."
            )

    @property
    def n_layers(self) -> int:
        return self.scores.shape[0]

    @property
    def n_heads(self) -> int:
        return self.scores.shape[1]

    def role(self, name: str) -> Float[torch.Tensor, "layer head"]:
        if name not in ROLES:
            raise RolesError(f"Unknown role {name!r}; choose one of {', '.join(ROLES)}.")
        return self.scores[..., ROLES.index(name)]

    def profile(self) -> Float[torch.Tensor, "n_heads_total role"]:
        """One row per head in `NodeGraph.heads` order (a0.h0, a0.h1, ..., a1.h0, ...)."""
        return self.scores.reshape(-1, len(ROLES))

    def census(self, threshold: float = 0.5) -> dict[str, list[RoleHead]]:
        """Per role, the heads scoring above `threshold`, highest first."""
        graph = NodeGraph(self.n_layers, self.n_heads, include_input=False)
        out: dict[str, list[RoleHead]] = {}
        for r, role in enumerate(ROLES):
            found = [
                RoleHead(node.name, relative_depth(node.layer, self.n_layers), float(s))
                for node, s in zip(graph.heads, self.profile()[:, r].tolist(), strict=True)
                if s > threshold
            ]
            out[role] = sorted(found, key=lambda h: -h.score)
        return out

    def save(self, path: str | Path) -> Path:
        return save_named_tensor(path, SCORES_KEY, self.scores, self.model, ROLES, self.meta)

    @classmethod
    def load(cls, path: str | Path) -> RoleScores:
        model, tensor, roles, meta = read_named_tensor(path, SCORES_KEY, RolesError, "role-scores")
        if roles != ROLES:
            raise RolesError(f"{path} holds roles {roles}, not this version's {ROLES}.")
        return cls(model, tensor, meta)
