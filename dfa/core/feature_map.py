"""The pair-agnostic map (`map_kind: features`): a target node's logit computed from per-node
features, so one set of parameters applies to any (source, target) pair.

    z_j = (gain_{kind j} * sum_i s_i K_ij + g(psi_j)) / T,
    K_ij = softmax_i over the source nodes of j's kind of
           [ -(d_i - d_j - shift_kind / L_src)^2 / (2 (width_kind / L_src)^2) + r_i^T B r_j
             (+ u_i^T S u_j with `features: stats`) ]

`s` the normalised source scores (as the dense map's, `dfa.core.mapping.normalise_scores`),
`d` relative depths (the layer's centre, `dfa.core.graph.relative_depth`), `r` a head's role
profile (`dfa.core.roles`; zeros for MLPs, and for every node with `features: depth`), `psi_j` the
target node's features (`NodeFeatures.table`), `L_src` the source's layer count, `u` a node's
activation statistics (`dfa.core.node_stats`: output norm, spread across inputs, attention entropy
and share on BOS, z-scored within its model), read with `features: stats` only.

Why this kernel:
- The RBF in relative depth is the depth map's own assumption (a target node does the work of the
  source nodes of its kind at the same relative depth), made smooth so that how far the alignment
  spreads (`width`) and a systematic depth offset between scales (`shift`) are learnt, per kind,
  both in source layers (the depth map's own resolution, so one start fits a 3-layer and a
  36-layer source, and a learning-rate step moves the alignment by a share of a layer).
- The softmax over source nodes makes each target node read a weighted mean of source scores, as
  the depth map's column normalisation does: the logit's scale does not depend on `n_src`.
- `B` (6 x 6, zero at the start) lets a target head read source heads of a similar role profile
  (induction to induction) wherever depth alone misaligns them.
- `g` is what the training tasks share (early MLPs, late heads: the dense map's `b`), a function
  of the target node's kind, depth, head share and roles: a tiny MLP (one hidden layer of
  `HIDDEN`), since that shared part is not monotone in depth. Its output layer starts at zero.
  Kind, depth and roles are the same (or noise) for the heads of one layer, so `g` alone cannot
  tell them apart (training it then flattened the ranking into depth plateaus); the node
  statistics (`features: stats`) can, and which heads write much and input-dependent outputs
  predicts which heads the tasks need in the larger toy models (the spread's within-layer Spearman
  with the mean |attribution| over 8 tasks: +0.70 on toy-gpt2-l, +0.61 on toy-neox-l; the 3-layer
  s models say little: +0.16 on toy-gpt2-s, -0.09 on toy-neox-s). Training penalises `g`'s
  size (`TrainConfig.offset_anchor`), so that it shifts the kernel's ranking instead of replacing it.
- `S` (4 x 4, zero at the start, `features: stats`) lets a target node read the source nodes whose
  statistics are like its own, as `B` does for roles.
At the start (`B = 0`, `g = 0`, `gain = init_gain`, `width = WIDTH0`, `shift = 0`) the map is a
Gaussian-smoothed relative-depth map: close to the dense map's start `init_gain * D`
(tests/test_feature_map.py measures how close). No parameter's shape depends on the pair.

A `FeatureMap` is bound to one pair's node features (`bind`) before use; `W` and `b` are then the
dense `[n_src, n_tgt]` matrix and the offsets it amounts to for that pair (an `AlignmentMap` with
those weights gives the same mask). Saved as `map.safetensors` (its parameters) + `map.json`.

`FeatureMap` is the map, `NodeFeatures` a model's node features, `bind_models` binds a map to a
pair; `load_map` reads a saved map of either kind.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import nn

from dfa.core.graph import NodeGraph
from dfa.core.io import atomic_write, write_json
from dfa.core.mapping import FORMAT, AlignmentMap, MapError, MaskOfScores, normalise_scores
from dfa.core.names import NORMALISATIONS, MapFeatures, Normalise

N_ROLES = 6  # len(dfa.core.roles.ROLES), without importing the role code
N_STATS = 4  # len(dfa.core.node_stats.STATS)
WIDTH0 = 0.3  # the start's RBF width, in the source's layer spacings (1 / n_layers)
HIDDEN = 16
TABLE = 4 + N_ROLES  # is_head, depth, 1/n_heads (heads), 1/n_layers, roles: g's input
TABLE_STATS = TABLE + N_STATS  # ... and the node statistics (`features: stats`)
FEATURES = ("depth", "roles", "stats")


@dataclass
class NodeFeatures:
    """One model's mapped nodes (heads and MLPs) as features computed from the model alone."""

    names: list[str]
    is_head: torch.Tensor  # [n] bool
    depth: torch.Tensor  # [n] relative depth
    table: torch.Tensor  # [n, TABLE_STATS]: g's input (the first TABLE columns without stats)
    roles: torch.Tensor  # [n, N_ROLES]: heads' role profiles, zeros for MLPs
    spacing: float  # 1 / n_layers: the relative depth between two layers
    stats: torch.Tensor | None = None  # [n, N_STATS]: z-scored node statistics, zeros when absent

    @classmethod
    def of(
        cls, graph: NodeGraph, profile: torch.Tensor | None = None, stats: torch.Tensor | None = None
    ) -> NodeFeatures:
        """Features of `graph`'s mapped nodes; `profile` `[heads, roles]` in `graph.heads` order,
        `stats` `[mapped nodes, N_STATS]` in `graph.mapped` order (`NodeStats.table`)."""
        nodes = graph.mapped
        is_head = torch.tensor([n.kind == "head" for n in nodes])
        depth = torch.tensor([n.depth for n in nodes], dtype=torch.float32)
        roles = torch.zeros(len(nodes), N_ROLES)
        if profile is not None:
            if tuple(profile.shape) != (len(graph.heads), N_ROLES):
                raise MapError(
                    f"Role profiles of shape {list(profile.shape)} for a model with {len(graph.heads)} "
                    f"heads (expected [{len(graph.heads)}, {N_ROLES}]); recompute the roles of this model."
                )
            roles[is_head] = profile.float().cpu()
        node_stats = torch.zeros(len(nodes), N_STATS)
        if stats is not None:
            if tuple(stats.shape) != (len(nodes), N_STATS):
                raise MapError(
                    f"Node statistics of shape {list(stats.shape)} for a model with {len(nodes)} heads and "
                    f"MLPs (expected [{len(nodes)}, {N_STATS}]); recompute the node statistics of this "
                    "model (dfa.store.cached_node_stats: delete its file under the cache's node_stats/)."
                )
            if not bool(torch.isfinite(stats).all()):
                raise MapError("Node statistics hold non-finite values; recompute them.")
            node_stats = stats.float().cpu()
        share = torch.where(is_head, 1.0 / graph.n_heads, 0.0)
        table = torch.cat(
            [
                torch.stack([is_head.float(), depth, share, torch.full_like(depth, 1.0 / graph.n_layers)], 1),
                roles,
                node_stats,
            ],
            1,
        )
        return cls(graph.mapped_names, is_head, depth, table, roles, 1.0 / graph.n_layers, node_stats)


class FeatureMap(MaskOfScores, nn.Module):
    """`z_j = (gain * sum_i s_i K_ij + g(psi_j)) / T` (module docstring); bind a pair first."""

    kind = "features"

    def __init__(
        self,
        features: MapFeatures = "roles",
        temperature: float = 1.0,
        normalise: Normalise = "zscore",
        init_gain: float = 6.0,
        seed: int = 0,
        init_std: float = 0.01,
    ):
        super().__init__()
        if features not in FEATURES:
            raise MapError(f"Unknown map features {features!r}; choose one of {', '.join(FEATURES)}.")
        if not temperature > 0:
            raise MapError(f"The temperature must be positive, got {temperature}.")
        if normalise not in NORMALISATIONS:
            raise MapError(f"Unknown normalisation {normalise!r}; choose one of {', '.join(NORMALISATIONS)}.")
        self.features = features
        self.temperature = float(temperature)
        self.normalise = normalise
        self.init_std = float(init_std)  # the random control's noise (dfa.methods.random_scores)
        # Per kind, index 0 = MLP, 1 = head.
        self.gain = nn.Parameter(torch.full((2,), float(init_gain)))
        self.log_width = nn.Parameter(torch.full((2,), float(torch.log(torch.tensor(WIDTH0)))))
        self.shift = nn.Parameter(torch.zeros(2))
        self.role_bilinear = nn.Parameter(torch.zeros(N_ROLES, N_ROLES))
        # `features: stats` alone: a source-target similarity of node statistics in the kernel
        # (as the role form), and the statistics in g's input.
        self.n_table = TABLE_STATS if features == "stats" else TABLE
        if features == "stats":
            self.stats_bilinear = nn.Parameter(torch.zeros(N_STATS, N_STATS))
        g = torch.Generator().manual_seed(seed)
        hidden = nn.Linear(self.n_table, HIDDEN)
        with torch.no_grad():
            hidden.weight.copy_(torch.randn(HIDDEN, self.n_table, generator=g) / self.n_table**0.5)
            hidden.bias.zero_()
        out = nn.Linear(HIDDEN, 1)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.offset = nn.Sequential(hidden, nn.Tanh(), out)
        self._pair: tuple[NodeFeatures, NodeFeatures] | None = None

    # --- the pair ---------------------------------------------------------------------------------
    def bind(self, src: NodeFeatures, tgt: NodeFeatures) -> FeatureMap:
        """Apply the map to this pair's nodes from now on."""
        for side, f in (("source", src), ("target", tgt)):
            if not bool(f.is_head.any()) or bool(f.is_head.all()):
                raise MapError(f"The {side} model needs heads and MLPs to be mapped by features.")
        self._pair = (src, tgt)
        return self

    @property
    def pair(self) -> tuple[NodeFeatures, NodeFeatures]:
        if self._pair is None:
            raise MapError("This features map is bound to no model pair: call bind(src, tgt) first.")
        return self._pair

    @property
    def src_names(self) -> list[str]:
        return self.pair[0].names

    @property
    def tgt_names(self) -> list[str]:
        return self.pair[1].names

    def check_graphs(
        self, src: NodeGraph, tgt: NodeGraph, src_model: str = "source", tgt_model: str = "target"
    ) -> None:
        """Refuse graphs other than the bound pair's (a features map fits any pair once bound)."""
        for side, graph, want, model in (
            ("source", src, self.src_names, src_model),
            ("target", tgt, self.tgt_names, tgt_model),
        ):
            if graph.mapped_names != want:
                raise MapError(
                    f"This features map is bound to a {side} of {len(want)} nodes, not {side} model "
                    f"{model!r} ({len(graph.mapped_names)} nodes): bind it to that model's features first."
                )

    # --- the map ----------------------------------------------------------------------------------
    def kernel(self) -> Float[torch.Tensor, "n_src n_tgt"]:
        """`K` of the module docstring for the bound pair, each column summing to 1."""
        src, tgt = self.pair
        dev = self.gain.device
        kind_t = tgt.is_head.long().to(dev)
        width = self.log_width.exp()[kind_t] * src.spacing
        dd = (
            src.depth.to(dev)[:, None]
            - tgt.depth.to(dev)[None, :]
            - self.shift[kind_t][None, :] * src.spacing
        )
        logit = -dd.pow(2) / (2 * width.pow(2))[None, :]
        logit = logit + src.roles.to(dev) @ self.role_bilinear @ tgt.roles.to(dev).T
        if self.features == "stats":
            logit = logit + self._stats(src) @ self.stats_bilinear @ self._stats(tgt).T
        same = src.is_head.to(dev)[:, None] == tgt.is_head.to(dev)[None, :]
        return torch.softmax(logit.masked_fill(~same, float("-inf")), 0)

    def _stats(self, f: NodeFeatures) -> torch.Tensor:
        return (f.stats if f.stats is not None else torch.zeros(len(f.names), N_STATS)).to(self.gain.device)

    @property
    def W(self) -> Float[torch.Tensor, "n_src n_tgt"]:
        """The dense matrix this map amounts to for the bound pair: `gain_kind * K`."""
        return self.kernel() * self.gain[self.pair[1].is_head.long().to(self.gain.device)][None, :]

    @property
    def b(self) -> Float[torch.Tensor, " n_tgt"]:
        """The bound target's offsets `g(psi_j)`."""
        return self.offset(self.pair[1].table[:, : self.n_table].to(self.gain.device)).squeeze(-1)

    def source_vector(self, scores: Float[torch.Tensor, " n_src"]) -> torch.Tensor:
        if scores.shape != (self.n_src,):
            raise MapError(f"The map is bound to {self.n_src} source nodes, got scores {list(scores.shape)}.")
        return normalise_scores(scores, self.normalise).to(self.gain.device)

    def dense(self) -> AlignmentMap:
        """The bound pair's `AlignmentMap` with `W` and `b` from this map (the same mask)."""
        m = AlignmentMap(self.src_names, self.tgt_names, self.temperature, self.normalise, self.init_std)
        with torch.no_grad():
            m.W.copy_(self.W.detach().cpu())
            m.b.copy_(self.b.detach().cpu())
        return m

    # --- files ------------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "map_kind": self.kind,
            "features": self.features,
            "temperature": self.temperature,
            "normalise": self.normalise,
            "init_std": self.init_std,
            "parameters": sum(p.numel() for p in self.parameters()),
            "kernel": "softmax over same-kind source nodes of an RBF in relative depth + role bilinear"
            + (" + node-statistics bilinear" if self.features == "stats" else ""),
        }

    def save(self, folder: str | Path, meta: dict[str, Any] | None = None) -> tuple[Path, Path]:
        """`folder/map.safetensors` (the parameters) and `folder/map.json`, each written atomically."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().float().cpu().contiguous() for k, v in self.state_dict().items()}
        tensors = atomic_write(
            folder / "map.safetensors",
            lambda tmp: save_file(state, str(tmp), metadata={"format": FORMAT, "map_kind": self.kind}),
        )
        info = write_json(folder / "map.json", {**(meta or {}), **self.metadata()})
        return tensors, info

    @classmethod
    def from_files(cls, tensors: Path, meta: dict[str, Any]) -> FeatureMap:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        m = cls(meta["features"], meta["temperature"], meta["normalise"], init_std=meta.get("init_std", 0.01))
        try:
            state = load_file(str(tensors))
        except (SafetensorError, OSError) as e:
            raise MapError(f"{tensors} is not a readable dfa map ({type(e).__name__}: {e}).") from None
        want = {k: tuple(v.shape) for k, v in m.state_dict().items()}
        have = {k: tuple(v.shape) for k, v in state.items()}
        if want != have:
            raise MapError(
                f"{tensors} does not hold a features map's parameters (expected {want}, found {have})."
            )
        if not all(torch.isfinite(v).all() for v in state.values()):
            raise MapError(f"{tensors} holds non-finite weights.")
        m.load_state_dict(state)
        return m


def load_map(folder: str | Path) -> tuple[AlignmentMap | FeatureMap, dict[str, Any]]:
    """A saved map of either kind (`map.json`'s `map_kind`; dense when absent) and its `map.json`."""
    folder = Path(folder)
    info = folder / "map.json"
    try:
        meta = json.loads(info.read_text()) if info.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        meta = None  # AlignmentMap.load says what is wrong
    if not isinstance(meta, dict) or meta.get("map_kind", "dense") == "dense":
        return AlignmentMap.load(folder)
    if meta.get("format") != FORMAT or meta["map_kind"] != "features":
        raise MapError(
            f'{info}: unknown map kind {meta.get("map_kind")!r} (dfa reads "dense" and "features").'
        )
    for key in ("features", "temperature", "normalise"):
        if key not in meta:
            raise MapError(f"{info} lacks {key!r}; it is not a complete features map description.")
    tensors = folder / "map.safetensors"
    if not tensors.is_file():
        raise MapError(f"No map.safetensors in {folder}: the features map's parameters are missing.")
    return FeatureMap.from_files(tensors, meta), meta


def bind_models(
    amap: AlignmentMap | FeatureMap,
    src: NodeGraph,
    tgt: NodeGraph,
    profiles: Sequence[torch.Tensor] | None = None,
    stats: Sequence[torch.Tensor] | None = None,
) -> None:
    """A features map bound to these graphs (with the role profiles `(source, target)` when its
    features read roles, and the node statistics `(source, target)` (`NodeStats.table`) when they
    read stats); a dense map is left as it is."""
    if isinstance(amap, FeatureMap):
        if amap.features == "stats" and not stats:
            raise MapError("This features map reads node statistics: pass both models' (NodeStats.table).")
        src_p, tgt_p = profiles if amap.features in ("roles", "stats") and profiles else (None, None)
        src_s, tgt_s = stats if amap.features == "stats" and stats else (None, None)
        amap.bind(NodeFeatures.of(src, src_p, src_s), NodeFeatures.of(tgt, tgt_p, tgt_s))
