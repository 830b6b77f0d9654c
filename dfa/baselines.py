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
