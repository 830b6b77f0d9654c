"""Target node scores from source scores: the learned map and the baselines it is judged against.

Every function returns scores over the whole target graph (`input` first, kept at 1), ready for
`dfa.evaluate.evaluate_circuits` (circuits = top-k by score). Map-based scores are mask
probabilities `sigmoid((s @ W + b) / T)`; several seeded draws give a list (a mean curve).

- `map`: the trained map.
- `depth`: relative-depth interpolation, no learning: a target node's score is the mean |score|
  of the source nodes of its kind whose layer overlaps its layer on the relative-depth axis
  (layer `l` of `L` covers `[l/L, (l+1)/L]`), weighted by the overlap. Every head of a target
  layer gets the same score: head indices carry no meaning across models.
- `random`: random maps, `W ~ N(0, init_std)` and `b = 0`, other seeds: a map that knows
  nothing (the depth prior a trained map starts from is the `depth` baseline's).
- `permuted`: the trained map with its target columns (`W` and `b` together) permuted: same
  weights, wrong nodes.
- `scrambled`: the trained map fed the source scores permuted across source nodes: everything
  the map learned about the target, nothing of the task's source circuit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dfa.graph import NodeGraph
from dfa.mapping import AlignmentMap, mask_probabilities, normalise_scores

DRAWS = 5


def with_input(scores: torch.Tensor) -> torch.Tensor:
    """Mapped-node scores `[n_tgt]` -> whole-graph scores with `input` (kept) first at 1."""
    return torch.cat([scores.new_ones(1), scores])


def source_vector(src_graph: NodeGraph, graph_scores: torch.Tensor) -> torch.Tensor:
    """Whole-graph source scores -> the mapped nodes' scores (heads and MLPs, no `input`)."""
    keep = [n.index for n in src_graph if n.kind != "input"]
    return graph_scores[keep].float()


def map_scores(amap: AlignmentMap, src: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return with_input(mask_probabilities(amap.logits(src.to(amap.W.device))).cpu())


def _layer_overlap(a: int, n_a: int, b: int, n_b: int) -> float:
    lo = max(a / n_a, b / n_b)
    hi = min((a + 1) / n_a, (b + 1) / n_b)
    return max(0.0, hi - lo)


def depth_matrix(src_graph: NodeGraph, tgt_graph: NodeGraph) -> torch.Tensor:
    """`[n_src, n_tgt]` weights: same kind, overlapping relative depth, each column summing to 1."""
    src = [n for n in src_graph if n.kind != "input"]
    tgt = [n for n in tgt_graph if n.kind != "input"]
    D = torch.zeros(len(src), len(tgt), dtype=torch.float64)
    for j, t in enumerate(tgt):
        for i, s in enumerate(src):
            if s.kind == t.kind:
                D[i, j] = _layer_overlap(s.layer, src_graph.n_layers, t.layer, tgt_graph.n_layers)
    return D / D.sum(0, keepdim=True).clamp_min(1e-12)


def depth_scores(src_graph: NodeGraph, tgt_graph: NodeGraph, src: torch.Tensor) -> torch.Tensor:
    s = normalise_scores(src, "abs-max").double()
    return with_input((s @ depth_matrix(src_graph, tgt_graph)).float())


def random_scores(amap: AlignmentMap, src: torch.Tensor, seed: int, draws: int = DRAWS) -> list[torch.Tensor]:
    """Random maps: `W ~ N(0, init_std)`, `b = 0`, seeds `10000 + seed + i`."""
    init_std = float(getattr(amap, "init_std", 0.01))
    out = []
    for i in range(draws):
        fresh = AlignmentMap(
            amap.src_names, amap.tgt_names, amap.temperature, amap.normalise, init_std, seed=10_000 + seed + i
        )
        out.append(map_scores(fresh, src))
    return out


def permuted_scores(
    amap: AlignmentMap, src: torch.Tensor, seed: int, draws: int = DRAWS
) -> list[torch.Tensor]:
    z = amap.logits(src.to(amap.W.device)).detach().cpu()
    out = []
    for i in range(draws):
        g = torch.Generator().manual_seed(20_000 + seed + i)
        out.append(with_input(mask_probabilities(z[torch.randperm(amap.n_tgt, generator=g)])))
    return out


def scrambled_scores(
    amap: AlignmentMap, src: torch.Tensor, seed: int, draws: int = DRAWS
) -> list[torch.Tensor]:
    out = []
    for i in range(draws):
        g = torch.Generator().manual_seed(30_000 + seed + i)
        out.append(map_scores(amap, src[torch.randperm(src.numel(), generator=g)]))
    return out


# name -> (trained map, source graph, target graph, source scores [n_src], seed, draws) -> scores
# or seeded draws
Baseline = Callable[
    [AlignmentMap, NodeGraph, NodeGraph, torch.Tensor, int, int], torch.Tensor | list[torch.Tensor]
]
BASELINES: dict[str, Baseline] = {
    "map": lambda m, sg, tg, s, seed, draws: map_scores(m, s),
    "depth": lambda m, sg, tg, s, seed, draws: depth_scores(sg, tg, s),
    "random": lambda m, sg, tg, s, seed, draws: random_scores(m, s, seed, draws),
    "permuted": lambda m, sg, tg, s, seed, draws: permuted_scores(m, s, seed, draws),
    "scrambled": lambda m, sg, tg, s, seed, draws: scrambled_scores(m, s, seed, draws),
}


# --- role-based alignment -------------------------------------------------------------------------
ROLE_WIDTH = 0.1  # profile distance scale (role scores are in [0, 1])
DEPTH_WIDTH = 0.15  # relative-depth distance scale


def role_similarity(
    src_profile: torch.Tensor,
    tgt_profile: torch.Tensor,
    src_graph: NodeGraph,
    tgt_graph: NodeGraph,
) -> torch.Tensor:
    """`[src heads, tgt heads]`: `exp(-|p_i - q_j|^2 / 2w_r^2) * exp(-(d_i - d_j)^2 / 2w_d^2)`,
    `p`, `q` the heads' role profiles (`dfa.roles`, `[heads, roles]`) and `d` their relative
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
    mapped = [n for n in graph if n.kind != "input"]
    return [i for i, n in enumerate(mapped) if n.kind == kind]


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


def role_scores(
    src_graph: NodeGraph,
    tgt_graph: NodeGraph,
    src: torch.Tensor,
    src_profile: torch.Tensor,
    tgt_profile: torch.Tensor,
    assign: bool = False,
) -> torch.Tensor:
    """Target scores `|s| / max|s| @ role_matrix` (input first, kept at 1)."""
    s = normalise_scores(src, "abs-max").double()
    return with_input((s @ role_matrix(src_profile, tgt_profile, src_graph, tgt_graph, assign)).float())
