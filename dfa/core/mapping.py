"""The alignment map as a plain `nn.Module`: source node scores -> a soft mask on the target's nodes.

`mask = sigmoid((s @ W + b) / T)`: `s` holds the source model's node scores for one task (heads
and MLPs, `input` excluded), normalised per task; `W` is a dense `[n_src, n_tgt]` matrix and `b`
a per-target-node offset, both over the target's heads and MLPs (`input` excluded: it is kept in
every circuit). Maps are saved as `map.safetensors` (`W` and `b`) + `map.json` (both node lists
and everything needed to reuse it).

Why the offset, the centring and the depth start (the defaults of `dfa.training`). Across tasks,
most of a target circuit is shared: a few nodes (early MLPs, late heads) matter for every task.
With non-negative scores (`abs-max`) `s @ W` can carry that shared part itself, and a map trained
that way ranks the target's nodes almost the same for any source scores: held out, it did no
better than the same map fed scrambled scores. With centred scores (`zscore`) the shared part
can only live in `b`, and `s @ W` must carry what sets a task apart. `W` starts at
`init_gain * D`, `D` the relative-depth map of `dfa.core.alignment` (a target node reads the source
nodes of its kind at overlapping relative depth), and an `anchor` penalty keeps it near there,
so that what `W` learns from a handful of training tasks refines an alignment that holds for
any task instead of replacing it.

Normalisations (per task, over the source's heads and MLPs):
- `zscore` (the training default): `(s - mean) / std`.
- `abs-zscore`: the z-score of `|s|` (circuits are ranked by |score|).
- `abs-max` (`AlignmentMap`'s default): `|s| / max|s|`, in [0, 1]. Circuits are ranked by
  |score| (MIB), so a node that hurts the metric when removed and one that helps are both
  circuit members; dividing by the largest makes tasks with different metric scales comparable.
- `max`: `s / max|s|`, signed, in [-1, 1].
- `rank`: the rank of `|s|` scaled to [0, 1] (1 = most important); immune to outliers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import nn

from dfa.core.errors import DfaError
from dfa.core.graph import INPUT, NodeGraph
from dfa.core.io import atomic_write, write_json
from dfa.core.names import NORMALISATIONS, Normalise

FORMAT = "dfa-map/1"


class MapError(DfaError, ValueError):
    """A map file that cannot be read, or a map used with models it does not fit."""


def normalise_scores(scores: Float[torch.Tensor, " n_src"], how: Normalise = "abs-max") -> torch.Tensor:
    """One task's source scores normalised (see the module docstring). NaN (unscored) -> 0."""
    s = torch.nan_to_num(scores.detach().double(), nan=0.0)
    if how == "abs-max":
        s = s.abs()
        top = s.max()
        out = s / top if top > 0 else s
    elif how == "max":
        top = s.abs().max()
        out = s / top if top > 0 else s
    elif how in ("zscore", "abs-zscore"):
        if how == "abs-zscore":
            s = s.abs()
        sd = s.std() if s.numel() > 1 else s.new_tensor(0.0)
        out = (s - s.mean()) / sd if sd > 0 else s - s.mean()
    elif how == "rank":
        order = torch.argsort(s.abs(), stable=True)
        ranks = torch.empty_like(s)
        ranks[order] = torch.arange(s.numel(), dtype=s.dtype)
        out = ranks / max(1, s.numel() - 1)
    else:
        raise MapError(f"Unknown normalisation {how!r}; choose one of {', '.join(NORMALISATIONS)}.")
    return out.float()


def soft_top_k(z: Float[torch.Tensor, " n"], ks: Sequence[int], tau: float) -> Float[torch.Tensor, "sizes n"]:
    """A differentiable top-`k` mask of the logits `z` for each `k`: `sigmoid((z - t_k) / tau)`
    with `t_k` halfway between the k-th and the (k+1)-th largest logit, detached. As `tau` goes
    to 0 it is the hard circuit of the `k` best nodes; with `tau > 0` the nodes near the cut get
    the gradient, so training moves nodes across each circuit size's boundary. `tau` is in units
    of `z`'s standard deviation (so the relaxation does not depend on the logits' scale)."""
    n = z.shape[-1]
    if not ks or min(ks) < 1 or max(ks) >= n:
        raise MapError(f"Circuit sizes must be between 1 and {n - 1} for {n} nodes, got {list(ks)}.")
    top = torch.sort(z.detach(), descending=True).values
    k = torch.as_tensor(list(ks), device=z.device)
    cut = (top[k - 1] + top[k]) / 2
    scale = tau * z.detach().std().clamp_min(1e-6)
    return torch.sigmoid((z[None, :] - cut[:, None]) / scale)


class MaskOfScores:
    """What every map does with source scores once it has `W`, `b`, `temperature` and
    `source_vector` (the dense AlignmentMap, the pair-agnostic FeatureMap bound to a pair), and
    the node names `src_names` and `tgt_names`."""

    @property
    def n_src(self) -> int:
        return len(self.src_names)

    @property
    def n_tgt(self) -> int:
        return len(self.tgt_names)

    def logits(self, scores: Float[torch.Tensor, "*tasks n_src"]) -> Float[torch.Tensor, "*tasks n_tgt"]:
        """`(s @ W + b) / T` for raw source scores (normalised here), one row per task."""
        rows = scores.reshape(-1, scores.shape[-1])
        s = torch.stack([self.source_vector(r) for r in rows])
        z = (s @ self.W + self.b) / self.temperature
        return z.reshape(*scores.shape[:-1], self.n_tgt)

    def forward(self, scores: Float[torch.Tensor, "*tasks n_src"]) -> Float[torch.Tensor, "*tasks n_tgt"]:
        """The soft target mask for raw source scores."""
        return torch.sigmoid(self.logits(scores))

    def full_mask(self, scores: torch.Tensor) -> torch.Tensor:
        """The soft mask over the whole target graph, `input` (first) kept at 1."""
        m = self(scores)
        return torch.cat([m.new_ones(*m.shape[:-1], 1), m], -1)


class AlignmentMap(MaskOfScores, nn.Module):
    """`mask = sigmoid((s @ W + b) / T)` from normalised source scores `s` to the target's nodes
    (`b` is a learned per-target offset)."""

    def __init__(
        self,
        src_names: Sequence[str],
        tgt_names: Sequence[str],
        temperature: float = 1.0,
        normalise: Normalise = "abs-max",
        init_std: float = 0.01,
        seed: int = 0,
        prior: torch.Tensor | None = None,
        prior_gain: float = 1.0,
    ):
        super().__init__()
        if INPUT in src_names or INPUT in tgt_names:
            raise MapError("The input node is not mapped: it is kept in every circuit.")
        if not src_names or not tgt_names:
            raise MapError("A map needs at least one source node and one target node.")
        if not temperature > 0:
            raise MapError(f"The temperature must be positive, got {temperature}.")
        if normalise not in NORMALISATIONS:
            raise MapError(f"Unknown normalisation {normalise!r}; choose one of {', '.join(NORMALISATIONS)}.")
        self.src_names = list(src_names)
        self.tgt_names = list(tgt_names)
        self.temperature = float(temperature)
        self.normalise = normalise
        self.init_std = float(init_std)
        g = torch.Generator().manual_seed(seed)
        W = init_std * torch.randn(len(src_names), len(tgt_names), generator=g)
        if prior is not None:
            if tuple(prior.shape) != tuple(W.shape):
                raise MapError(f"The prior has shape {list(prior.shape)}, the map {list(W.shape)}.")
            W = W + prior_gain * prior.float()
        self.W = nn.Parameter(W)
        # A per-target-node offset: what the training tasks share (nodes every task needs), so
        # that `s @ W` carries what is specific to a task.
        self.b = nn.Parameter(torch.zeros(len(tgt_names)))

    def source_vector(self, scores: Float[torch.Tensor, " n_src"]) -> torch.Tensor:
        if scores.shape != (self.n_src,):
            raise MapError(f"The map takes {self.n_src} source scores, got {list(scores.shape)}.")
        return normalise_scores(scores, self.normalise).to(self.W.device)

    # --- graphs -----------------------------------------------------------------------------------
    def check_graphs(
        self, src: NodeGraph, tgt: NodeGraph, src_model: str = "source", tgt_model: str = "target"
    ):
        """Refuse models whose node lists are not the ones this map was trained on."""
        for side, graph, want, model in (
            ("source", src, self.src_names, src_model),
            ("target", tgt, self.tgt_names, tgt_model),
        ):
            have = graph.mapped_names
            if have != want:
                raise MapError(
                    f"This map's {side} has {len(want)} nodes ({_shape(want)}), but {side} model "
                    f"{model!r} has {len(have)} ({_shape(have)}). Use the map with the models it was "
                    "trained on (see map.json), or train a new one."
                )

    # --- files ------------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "src_nodes": self.src_names,
            "tgt_nodes": self.tgt_names,
            "temperature": self.temperature,
            "normalise": self.normalise,
            "init_std": self.init_std,
        }

    def save(self, folder: str | Path, meta: dict[str, Any] | None = None) -> tuple[Path, Path]:
        """`folder/map.safetensors` and `folder/map.json`, each written atomically."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        W = self.W.detach().float().cpu().contiguous()
        b = self.b.detach().float().cpu().contiguous()
        tensors = atomic_write(
            folder / "map.safetensors",
            lambda tmp: save_file({"W": W, "b": b}, str(tmp), metadata={"format": FORMAT}),
        )
        info = write_json(folder / "map.json", {**(meta or {}), **self.metadata()})
        return tensors, info

    @classmethod
    def load(cls, folder: str | Path) -> tuple[AlignmentMap, dict[str, Any]]:
        """A saved map and its `map.json` (a run folder, or the folder holding the two files)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        tensors, info = folder / "map.safetensors", folder / "map.json"
        for path in (tensors, info):
            if not path.is_file():
                raise MapError(
                    f"No {path.name} in {folder}: pass a run folder written by training "
                    "(checkpoints/<src>__<tgt>/<run>)."
                )
        try:
            meta = json.loads(info.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise MapError(
                f"{info} is not valid JSON ({e}); it may be truncated. Retrain or restore it."
            ) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise MapError(f'{info} is not a dfa map description (no "format": "{FORMAT}").')
        for key in ("src_nodes", "tgt_nodes", "temperature", "normalise"):
            if key not in meta:
                raise MapError(f"{info} lacks {key!r}; it is not a complete dfa map description.")
        try:
            tensors_ = load_file(str(tensors))
            W = tensors_["W"]
            b = tensors_.get("b", torch.zeros(len(meta["tgt_nodes"])))
        except (SafetensorError, OSError, KeyError) as e:
            raise MapError(
                f"{tensors} is not a readable dfa map ({type(e).__name__}: {e}); it may be truncated."
            ) from None
        shape = (len(meta["src_nodes"]), len(meta["tgt_nodes"]))
        if tuple(W.shape) != shape:
            raise MapError(f"{tensors} holds W of shape {list(W.shape)}, but {info} describes {list(shape)}.")
        if tuple(b.shape) != shape[1:]:
            raise MapError(f"{tensors} holds b of shape {list(b.shape)}, but {info} describes [{shape[1]}].")
        if not (torch.isfinite(W).all() and torch.isfinite(b).all()):
            raise MapError(f"{tensors} holds non-finite weights.")
        m = cls(
            meta["src_nodes"],
            meta["tgt_nodes"],
            meta["temperature"],
            meta["normalise"],
            meta.get("init_std", 0.01),
        )
        with torch.no_grad():
            m.W.copy_(W)
            m.b.copy_(b)
        return m, meta


def _shape(names: Sequence[str]) -> str:
    heads = [n for n in names if n.startswith("a")]
    layers = {n.split(".")[0] for n in heads}
    mlps = [n for n in names if n.startswith("m")]
    per = len(heads) // len(layers) if layers else 0
    return f"{len(layers)} layers x {per} heads + {len(mlps)} MLPs"


def mask_probabilities(z: torch.Tensor) -> torch.Tensor:
    """`sigmoid(z)` in double precision, kept double: in float32 every logit above about 16.6 is
    exactly 1.0, and the circuits' top-k would take those tied nodes in node order (the trained
    toy maps reach logits of 17-33). Double keeps them distinct up to about 36."""
    return torch.sigmoid(z.detach().double())
