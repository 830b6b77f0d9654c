"""Non-learned alignments between two models' node graphs, as `[n_src, n_tgt]` matrices over the mapped
nodes (heads and MLPs): relative-depth overlap, and role similarity (soft, or one-to-one).

The depth map is also the learned map's starting point; role alignment reads `dfa.core.roles` profiles."""

from __future__ import annotations

import torch

from dfa.core.graph import NodeGraph


def _layer_overlap(a: int, n_a: int, b: int, n_b: int) -> float:
    lo = max(a / n_a, b / n_b)
    hi = min((a + 1) / n_a, (b + 1) / n_b)
    return max(0.0, hi - lo)


def depth_matrix(src_graph: NodeGraph, tgt_graph: NodeGraph) -> torch.Tensor:
    """`[n_src, n_tgt]` weights: same kind, overlapping relative depth, each column summing to 1."""
    src, tgt = src_graph.mapped, tgt_graph.mapped
    D = torch.zeros(len(src), len(tgt), dtype=torch.float64)
    for j, t in enumerate(tgt):
        for i, s in enumerate(src):
            if s.kind == t.kind:
                D[i, j] = _layer_overlap(s.layer, src_graph.n_layers, t.layer, tgt_graph.n_layers)
    return D / D.sum(0, keepdim=True).clamp_min(1e-12)


def band_matrix(
    src_graph: NodeGraph, tgt_graph: NodeGraph, width: float, same_kind: bool = True
) -> torch.Tensor:
    """`[n_src, n_tgt]` of 0/1: 1 where the two nodes are of the same kind (any kinds with
    `same_kind=False`) and their layers' shares of the relative-depth axis ([l/L, (l+1)/L]) lie
    within `width` of each other (0: they overlap; with the same kind, the support of
    `depth_matrix`). Where a trained map's `W` may move from its start (`band`, `band_kinds`)."""
    src, tgt = src_graph.mapped, tgt_graph.mapped
    B = torch.zeros(len(src), len(tgt))
    eps = 1e-9  # layer edges are fractions: touching intervals count as width 0, not as a gap
    for j, t in enumerate(tgt):
        t_lo, t_hi = t.layer / tgt_graph.n_layers, (t.layer + 1) / tgt_graph.n_layers
        for i, s in enumerate(src):
            s_lo, s_hi = s.layer / src_graph.n_layers, (s.layer + 1) / src_graph.n_layers
            gap = max(s_lo - t_hi, t_lo - s_hi)  # < 0 when the intervals overlap
            if (s.kind == t.kind or not same_kind) and gap < width + eps and (width > 0 or gap < -eps):
                B[i, j] = 1.0
    return B


ROLE_WIDTH = 0.1  # profile distance scale (role scores are in [0, 1])


DEPTH_WIDTH = 0.15  # relative-depth distance scale


def role_similarity(
    src_profile: torch.Tensor,
    tgt_profile: torch.Tensor,
    src_graph: NodeGraph,
    tgt_graph: NodeGraph,
) -> torch.Tensor:
    """`[src heads, tgt heads]`: `exp(-|p_i - q_j|^2 / 2w_r^2) * exp(-(d_i - d_j)^2 / 2w_d^2)`,
    `p`, `q` the heads' role profiles (`dfa.core.roles`, `[heads, roles]`) and `d` their relative
    depths: a source head aligns with target heads of a similar role at a similar depth."""
    p, q = src_profile.double(), tgt_profile.double()
    d_src = torch.tensor([n.depth for n in src_graph.heads], dtype=torch.float64)
    d_tgt = torch.tensor([n.depth for n in tgt_graph.heads], dtype=torch.float64)
    if p.shape[0] != len(d_src) or q.shape[0] != len(d_tgt):
        raise ValueError(
            f"Role profiles of {p.shape[0]} and {q.shape[0]} heads for models with "
            f"{len(d_src)} and {len(d_tgt)} heads."
        )
    roles = torch.exp(-torch.cdist(p, q).pow(2) / (2 * ROLE_WIDTH**2))
    depth = torch.exp(-(d_src[:, None] - d_tgt[None, :]).pow(2) / (2 * DEPTH_WIDTH**2))
    return roles * depth


def _kind_index(graph: NodeGraph, kind: str) -> list[int]:
    """Positions among the mapped nodes (heads and MLPs, `input` excluded) of one kind."""
    return [i for i, n in enumerate(graph.mapped) if n.kind == kind]


def role_matrix(
    src_profile: torch.Tensor,
    tgt_profile: torch.Tensor,
    src_graph: NodeGraph,
    tgt_graph: NodeGraph,
    assign: bool = False,
) -> torch.Tensor:
    """`[n_src, n_tgt]` role alignment: heads by `role_similarity`, MLPs by relative-depth overlap
    (`depth_matrix`'s MLP block). Soft (`assign=False`): each target column sums to 1. One-to-one
    (`assign=True`): an optimal assignment (Hungarian, scipy) maximising the total similarity,
    each source node to one target node of its kind (the rest of the target gets nothing)."""
    from scipy.optimize import linear_sum_assignment

    sim_heads = role_similarity(src_profile, tgt_profile, src_graph, tgt_graph)
    D = depth_matrix(src_graph, tgt_graph)
    R = torch.zeros_like(D)
    for kind, sim in (("head", sim_heads), ("mlp", None)):
        rows, cols = _kind_index(src_graph, kind), _kind_index(tgt_graph, kind)
        block = D[rows][:, cols] if sim is None else sim
        if assign:
            r, c = linear_sum_assignment(block.numpy(), maximize=True)
            hard = torch.zeros_like(block)
            hard[r, c] = 1.0
            block = hard
        else:
            block = block / block.sum(0, keepdim=True).clamp_min(1e-300)
        R[torch.tensor(rows)[:, None], torch.tensor(cols)[None, :]] = block
    return R
