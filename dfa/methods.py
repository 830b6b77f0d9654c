"""ONE registry of the methods a predicted circuit is compared with: the learned map, direct
attribution on the target, non-learned alignments and controls, all behind one signature.

A method takes a task's `Inputs` (the map, both node graphs, the source's mapped scores, lazily
the target's own scores and both models' role profiles) and returns scores over the whole target
graph (`input` first, kept at 1), or a list of seeded draws (a mean curve), ready for
`dfa.core.evaluate.evaluate_circuits` (circuits = top-k by score). Map-based scores are mask
probabilities `sigmoid((s @ W + b) / T)`. Adding a method is one entry in `METHODS`. The scorers
import torch when called, so `dfa.config` and `dfa --help` read the registry without it.

- `dfa`: the trained map (nodes of exactly equal mask in random orders per draw); on a task outside
  training of a run whose inner folds found nothing that carries, the run's fallback, `depth` or
  `role` (`dfa.training.fallback`), as that method scores it.
- `dfa-val`: on a task outside training, the map the val check chose on the task's own val prompts
  (`dfa.experiments.val_check`: one of the run's epoch maps blended toward the start, or depth's
  ranks when none beats depth there); on a training task, `dfa` (the same circuits: no extra
  passes). Not in sweeps.
- `gold`: direct attribution on the target (the run's method and prompt count): the ceiling.
- `gold-layer`: `gold` averaged over each layer's heads (and each MLP alone), tied heads in random
  orders: what a map that cannot tell a layer's heads apart reaches when it knows which layers
  matter (a reference for the pair-agnostic map; not a default, not in sweeps).
- `direct`: the target's direct effects on the answer logits (`dfa.core.direct`, forward passes of
  the run's train prompts); `depth-direct`: `depth` plus them, each scaled to a maximum of 1. What
  one pass through the target buys without training (references; not defaults, not in sweeps).
- `depth`: relative-depth interpolation, no learning: a target node's score is the mean |score|
  of the source nodes of its kind whose layer overlaps its layer on the relative-depth axis
  (layer `l` of `L` covers `[l/L, (l+1)/L]`), weighted by the overlap. Every head of a target
  layer gets the same score (head indices carry no meaning across models), so a circuit that cuts
  through a layer must choose among tied heads: `depth` ranks its ties in a random order per
  draw and reports the mean curve of `draws`, as `random` does over maps. Between nodes of
  different scores the order is the interpolation's.
- `depth-order`: the same interpolation with ties taken in node order (h0, h1, ...), the `depth`
  of the tables before 2026-11-30: an accident of indexing that moved a cell's CPR by up to 0.18
  (toy-neox ioi; README, "The depth baseline's ties"). Not a default; kept to read old tables.
- `role`, `role-assign`: heads aligned by role profile x relative depth (`dfa.core.alignment`),
  soft or one-to-one; MLPs by depth.
- `random`: random maps, `W ~ N(0, init_std)` and `b = 0`, other seeds: a map that knows
  nothing (the depth prior a trained map starts from is the `depth` baseline's).
- `permuted`: the trained map with its target columns (`W` and `b` together) permuted: same
  weights, wrong nodes.
- `scrambled`: the trained map fed the source scores permuted across source nodes: everything
  the map learned about the target, nothing of the task's source circuit.

A map's ranking is by its logits, never its saturating mask probabilities (`map_logits`,
`logit_ranks`, `one_ranking`): for `dfa`, `permuted`, `scrambled`, training's validation and the
exported circuit. Nodes of equal score are ranked in random orders per draw, never in node order
(`tie_draws`; `untied`: `depth`, `gold-layer`, `direct`). `ComparisonMethod.in_sweeps` says which
methods a sweep scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from dfa.core.errors import DfaError

if TYPE_CHECKING:  # the scorers import torch when they run: the registry reads without it
    import torch

    from dfa.core.graph import NodeGraph
    from dfa.core.mapping import AlignmentMap

    Scores = torch.Tensor | list[torch.Tensor]

DRAWS = 5
Kind = Literal["map", "reference", "alignment", "control"]


def map_scores(amap: AlignmentMap, tgt_graph: NodeGraph, src: torch.Tensor) -> torch.Tensor:
    """The map's mask probabilities `sigmoid(map_logits)` for source scores `src`, over the whole
    target graph (for display and export; rankings read `map_logits`)."""
    from dfa.core.mapping import mask_probabilities

    return tgt_graph.with_input(mask_probabilities(map_logits(amap, src)))


def map_logits(amap: AlignmentMap, src: torch.Tensor) -> torch.Tensor:
    """The map's logits `z` for the mapped target nodes, in double (its mask is `sigmoid(z)`).
    Rankings read these: a mask probability saturates (exactly 1.0 in float32 above z = 16.6, in
    double above 36.7) where the logits still differ."""
    import torch

    device = next(amap.parameters()).device
    with torch.no_grad():
        return amap.logits(src.to(device)).detach().double().cpu()


def logit_ranks(tgt_graph: NodeGraph, z: torch.Tensor, seed: int, draws: int = DRAWS) -> Scores:
    """Mapped-node values `z` (a map's logits) as whole-graph ranks (`tie_draws`, input on top):
    one ranking when no two values tie, else `draws` random orders of the tied nodes."""
    ties = len(z.unique()) < len(z)
    drawn = tie_draws(tgt_graph, z, seed, draws if ties else 1)
    return drawn if ties else drawn[0]


def depth_scores(src_graph: NodeGraph, tgt_graph: NodeGraph, src: torch.Tensor) -> torch.Tensor:
    from dfa.core.alignment import depth_matrix
    from dfa.core.mapping import normalise_scores

    s = normalise_scores(src, "abs-max").double()
    return tgt_graph.with_input((s @ depth_matrix(src_graph, tgt_graph)).float())


def tie_draws(
    tgt_graph: NodeGraph, mapped: torch.Tensor, seed: int, draws: int = DRAWS
) -> list[torch.Tensor]:
    """Scores `mapped` (one per mapped target node, ranked by value) as ranks (`0, 1/n, ...`, the
    highest score last), ties ranked by a random key per draw (seeds `seed + i`): the same top-k
    circuits wherever no tie straddles the cut, and a fair mean curve where one does."""
    import torch

    mapped = mapped.detach().double().cpu()
    n = len(mapped)
    out = []
    for i in range(draws):
        key = torch.rand(n, generator=torch.Generator().manual_seed(seed + i), dtype=torch.double)
        order = sorted(range(n), key=lambda j: (float(mapped[j]), float(key[j])))
        ranks = torch.empty(n)
        ranks[order] = torch.arange(n, dtype=torch.float32) / n
        out.append(tgt_graph.with_input(ranks))
    return out


def _mapped(tgt_graph: NodeGraph, scores: torch.Tensor) -> torch.Tensor:
    """The mapped nodes' scores in double, as given (`NodeGraph.mapped_scores` casts to float32,
    which would tie mask probabilities that differ in double)."""
    return scores.detach().double()[tgt_graph.mapped_index]


def has_ties(tgt_graph: NodeGraph, scores: torch.Tensor) -> bool:
    """Whether two mapped nodes of a whole-graph score vector rank alike (equal |score|)."""
    mapped = _mapped(tgt_graph, scores).abs()
    return len(mapped.unique()) < len(mapped)


def untied(tgt_graph: NodeGraph, scores: torch.Tensor, seed: int, draws: int = DRAWS) -> Scores:
    """`scores` as they are when no two mapped nodes tie; else `draws` random tie orders
    (`tie_draws` of |score|): a map that gives several heads exactly the same score (a features
    map at its start scores every head of a layer alike) is not credited or blamed for node order."""
    if not has_ties(tgt_graph, scores):
        return scores
    return tie_draws(tgt_graph, _mapped(tgt_graph, scores).abs(), seed, draws)


def one_ranking(tgt_graph: NodeGraph, z: torch.Tensor, seed: int) -> torch.Tensor:
    """One draw of `logit_ranks`: the ranks of `z`, tied values in one seeded random order."""
    drawn = logit_ranks(tgt_graph, z, seed, 1)
    return drawn[0] if isinstance(drawn, list) else drawn


def depth_tie_scores(
    src_graph: NodeGraph, tgt_graph: NodeGraph, src: torch.Tensor, seed: int, draws: int = DRAWS
) -> list[torch.Tensor]:
    """`depth_scores` as ranks, ties ranked by a random key per draw (seeds `40000 + seed + i`)."""
    mapped = tgt_graph.mapped_scores(depth_scores(src_graph, tgt_graph, src))
    return tie_draws(tgt_graph, mapped, 40_000 + seed, draws)


def layer_scores(
    tgt_graph: NodeGraph, gold: torch.Tensor, seed: int, draws: int = DRAWS
) -> list[torch.Tensor]:
    """The target's own |scores| averaged over the nodes of each (layer, kind): the heads of a layer
    share their mean, ranked in random orders per draw (seeds `60000 + seed + i`). What a map that
    cannot tell a layer's heads apart reaches when it knows which layers matter (a reference)."""
    import torch

    mapped = _mapped(tgt_graph, gold).abs()
    groups: dict[tuple[int, str], list[int]] = {}
    for i, node in enumerate(tgt_graph.mapped):
        groups.setdefault((node.layer, node.kind), []).append(i)
    out = torch.empty_like(mapped)
    for idx in groups.values():
        out[idx] = mapped[idx].mean()
    return tie_draws(tgt_graph, out, 60_000 + seed, draws)


def depth_direct_scores(
    src_graph: NodeGraph,
    tgt_graph: NodeGraph,
    src: torch.Tensor,
    direct: torch.Tensor,
    seed: int,
    draws: int = DRAWS,
) -> list[torch.Tensor]:
    """`depth` and the target's |direct effects|, each divided by its largest value, added: the
    depth prior with what one forward pass of the task's prompts says of each node (ties, where
    both agree, in random orders per draw, seeds `70000 + seed + i`)."""
    depth = _mapped(tgt_graph, depth_scores(src_graph, tgt_graph, src)).abs()
    effect = _mapped(tgt_graph, direct).abs()
    unit = [v / v.max() if float(v.max()) > 0 else v for v in (depth, effect)]
    return tie_draws(tgt_graph, unit[0] + unit[1], 70_000 + seed, draws)


def random_scores(
    amap: AlignmentMap, tgt_graph: NodeGraph, src: torch.Tensor, seed: int, draws: int = DRAWS
) -> list[torch.Tensor]:
    """Random maps: `W ~ N(0, init_std)`, `b = 0`, seeds `10000 + seed + i`."""
    from dfa.core.mapping import AlignmentMap

    init_std = float(getattr(amap, "init_std", 0.01))
    out = []
    for i in range(draws):
        fresh = AlignmentMap(
            amap.src_names, amap.tgt_names, amap.temperature, amap.normalise, init_std, seed=10_000 + seed + i
        )
        out.append(map_scores(fresh, tgt_graph, src))
    return out


def permuted_scores(
    amap: AlignmentMap, tgt_graph: NodeGraph, src: torch.Tensor, seed: int, draws: int = DRAWS
) -> list[torch.Tensor]:
    import torch

    z = map_logits(amap, src)
    out = []
    for i in range(draws):
        g = torch.Generator().manual_seed(20_000 + seed + i)
        out.append(one_ranking(tgt_graph, z[torch.randperm(amap.n_tgt, generator=g)], 25_000 + seed + i))
    return out


def scrambled_scores(
    amap: AlignmentMap, tgt_graph: NodeGraph, src: torch.Tensor, seed: int, draws: int = DRAWS
) -> list[torch.Tensor]:
    import torch

    out = []
    for i in range(draws):
        g = torch.Generator().manual_seed(30_000 + seed + i)
        z = map_logits(amap, src[torch.randperm(src.numel(), generator=g)])
        out.append(one_ranking(tgt_graph, z, 35_000 + seed + i))
    return out


def role_scores(
    src_graph: NodeGraph,
    tgt_graph: NodeGraph,
    src: torch.Tensor,
    src_profile: torch.Tensor,
    tgt_profile: torch.Tensor,
    assign: bool = False,
) -> torch.Tensor:
    """Target scores `|s| / max|s| @ role_matrix` (input first, kept at 1)."""
    from dfa.core.alignment import role_matrix
    from dfa.core.mapping import normalise_scores

    s = normalise_scores(src, "abs-max").double()
    return tgt_graph.with_input(
        (s @ role_matrix(src_profile, tgt_profile, src_graph, tgt_graph, assign)).float()
    )


@dataclass
class Inputs:
    """What a method may read to score the target for one task."""

    amap: AlignmentMap
    src_graph: NodeGraph
    tgt_graph: NodeGraph
    source: torch.Tensor  # the source's scores on the mapped nodes `[n_src]`
    seed: int = 0
    draws: int = DRAWS
    gold: Callable[[], torch.Tensor] | None = None  # the target's own whole-graph scores
    profiles: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None  # (source, target) roles
    direct: Callable[[], torch.Tensor] | None = None  # the target's |direct effects|, whole graph
    # The task gets the prior (a run whose inner folds found nothing that carries to tasks outside
    # training): `dfa` ranks it as the run's fallback method (`depth` or `role`,
    # `dfa.training.fallback`) does, with its own draws.
    prior: bool = False
    fallback: str = "depth"
    # The val check's map for the task (`dfa.experiments.val_check`); None: depth's ranks.
    checked: Callable[[], AlignmentMap | None] | None = None
    # What each lazy input cost where it was made (`dfa.core.cost` JSON, None: not known), and the
    # inputs the methods scored so far have needed: a method's cost (`dfa.experiments.costs`).
    costs: dict[str, dict | None] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def need(self, what: Literal["gold", "profiles", "direct", "checked"], method: str):
        fn = getattr(self, what)
        if fn is None:
            raise DfaError(f"Method {method!r} needs {what}, which this evaluation did not provide.")
        self.used.add(what)
        return fn()


@dataclass(frozen=True)
class ComparisonMethod:
    name: str
    kind: Kind  # map: the learned map; reference: gold; alignment: non-learned maps; control: nulls
    score: Callable[[Inputs], Scores]
    help: str
    default: bool = True  # compared unless the `methods` setting names others
    in_sweeps: bool = True  # scored in every sweep cell of its kind (`dfa.experiments.sweep`)

    @property
    def dashed(self) -> bool:
        """Drawn dashed in curve plots (the controls)."""
        return self.kind == "control"


def _role(assign: bool) -> Callable[[Inputs], Scores]:
    def score(x: Inputs) -> Scores:
        name = "role-assign" if assign else "role"
        return role_scores(x.src_graph, x.tgt_graph, x.source, *x.need("profiles", name), assign=assign)

    return score


def prior_scores(x: Inputs, name: str) -> torch.Tensor:
    """The whole-graph scores (before ranks and tie draws) of the non-learned alignment `name`
    (`depth` or `role`): what a task that gets the prior is ranked by."""
    if name == "role":
        return role_scores(x.src_graph, x.tgt_graph, x.source, *x.need("profiles", name))
    return depth_scores(x.src_graph, x.tgt_graph, x.source)


def _dfa(x: Inputs) -> Scores:
    if x.prior:  # the run's fallback, as that method ranks it (`depth`: its tie draws)
        return METHODS[x.fallback].score(x)
    return logit_ranks(x.tgt_graph, map_logits(x.amap, x.source), 50_000 + x.seed, x.draws)


def _checked(x: Inputs) -> Scores:
    amap = x.need("checked", "dfa-val")
    if amap is None:
        return depth_tie_scores(x.src_graph, x.tgt_graph, x.source, x.seed, x.draws)
    return logit_ranks(x.tgt_graph, map_logits(amap, x.source), 50_000 + x.seed, x.draws)


METHODS: dict[str, ComparisonMethod] = {
    m.name: m
    for m in (
        ComparisonMethod(
            "dfa",
            "map",
            _dfa,
            "the trained map, ranked by its logits (tied nodes in random orders); on a task outside "
            "training where its inner folds found nothing that carries, the run's fallback (depth or role)",
        ),
        ComparisonMethod(
            "dfa-val",
            "map",
            _checked,
            "on a task outside training, the run's map chosen on the task's val prompts against depth "
            "(depth's ranks where none beats it); on a training task, dfa",
            in_sweeps=False,
        ),
        ComparisonMethod(
            "gold", "reference", lambda x: x.need("gold", "gold"), "direct attribution on the target"
        ),
        ComparisonMethod(
            "gold-layer",
            "reference",
            lambda x: layer_scores(x.tgt_graph, x.need("gold", "gold-layer"), x.seed, x.draws),
            "direct attribution averaged over each layer's heads (and MLP): a layer-blind reference",
            default=False,
            in_sweeps=False,
        ),
        ComparisonMethod(
            "direct",
            "reference",
            lambda x: untied(x.tgt_graph, x.need("direct", "direct"), 80_000 + x.seed, x.draws),
            "the target's direct effects on the answer logits (forward passes only)",
            default=False,
            in_sweeps=False,
        ),
        ComparisonMethod(
            "depth-direct",
            "reference",
            lambda x: depth_direct_scores(
                x.src_graph, x.tgt_graph, x.source, x.need("direct", "depth-direct"), x.seed, x.draws
            ),
            "depth plus the target's direct effects, each scaled to a maximum of 1",
            default=False,
            in_sweeps=False,
        ),
        ComparisonMethod(
            "depth",
            "alignment",
            lambda x: depth_tie_scores(x.src_graph, x.tgt_graph, x.source, x.seed, x.draws),
            "relative depth, tied heads in random orders",
        ),
        ComparisonMethod(
            "depth-order",
            "alignment",
            lambda x: depth_scores(x.src_graph, x.tgt_graph, x.source),
            "relative depth, tied heads in node order",
            default=False,
        ),
        ComparisonMethod(
            "random",
            "control",
            lambda x: random_scores(x.amap, x.tgt_graph, x.source, x.seed, x.draws),
            "random maps",
        ),
        ComparisonMethod(
            "permuted",
            "control",
            lambda x: permuted_scores(x.amap, x.tgt_graph, x.source, x.seed, x.draws),
            "the map with its target columns permuted",
        ),
        ComparisonMethod(
            "scrambled",
            "control",
            lambda x: scrambled_scores(x.amap, x.tgt_graph, x.source, x.seed, x.draws),
            "the map fed permuted source scores",
        ),
        ComparisonMethod("role", "alignment", _role(False), "soft role x depth alignment", default=False),
        ComparisonMethod("role-assign", "alignment", _role(True), "one-to-one role alignment", default=False),
    )
}
DEFAULT_METHODS = tuple(n for n, m in METHODS.items() if m.default)
# What `dfa pair-agnostic` scores beside a features map and each pair's dense map.
PAIR_AGNOSTIC_METHODS = (
    "depth", "gold", "gold-layer", "direct", "depth-direct", "role", "random", "permuted", "scrambled",
)  # fmt: skip


def names(*kinds: Kind) -> tuple[str, ...]:
    """The registered methods of these kinds, in registry order."""
    return tuple(n for n, m in METHODS.items() if m.kind in kinds)


def check_methods(methods: Sequence[str]) -> list[str]:
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise DfaError(f"Unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}.")
    return list(methods)


def score_methods(x: Inputs, methods: Sequence[str]) -> dict[str, Scores]:
    """Each method's whole-target-graph scores (or seeded draws) for one task."""
    return {m: METHODS[m].score(x) for m in check_methods(methods)}
