"""A trained run read back: its folder, its map and `map.json`, the config it was trained with, and
which map each task gets (the in-distribution map, the zero-shot map, the fallback). How a run is
evaluated is `dfa.experiments.transfer`; the map a task outside training gets from its own val
prompts, `dfa.experiments.val_check` (its records kept here, per task, in `Run.checks` and
`Run.checked_maps`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dfa.config import TrainConfig, upgrade
from dfa.core.feature_map import FeatureMap, bind_models, load_map
from dfa.core.graph import NodeGraph
from dfa.core.mapping import AlignmentMap, MapError
from dfa.core.scores import NodeScores
from dfa.report.zero_shot import fallback_method
from dfa.store import ModelPool, cached_node_stats, cached_roles, cached_scores
from dfa.training.data import source_spec
from dfa.training.zero_shot import FOLDER as ZERO_SHOT


def mapped_count(name: str) -> int | None:
    """The heads and MLPs of a toy or ladder model, from its name alone (None: known only once
    loaded, as a hub id or a folder)."""
    from dfa.core.ladders import LADDERS
    from dfa.zoo.spec import TOY_SPECS

    base = name.split("@")[0].removesuffix(":random")
    if base in TOY_SPECS:
        return TOY_SPECS[base].n_nodes
    return LADDERS[base].n_nodes - 1 if base in LADDERS else None


class Run:
    """A trained map's run folder: the map, its `map.json`, and the config it was trained with.

    `src`/`tgt` name the models to apply it to (default: the ones it was trained on, the first
    pair of a features map trained on several). A dense map holds for its own models only: other
    names are refused, even when their node lists have the same shape, unless
    `allow_other_models` says the user means it. A features map applies to any pair (`bind`)."""

    def __init__(
        self,
        folder: str | Path,
        src: str | None = None,
        tgt: str | None = None,
        allow_other_models: bool = False,
    ):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise MapError(
                f"No run folder {self.folder}. Runs live in checkpoints/<src>__<tgt>/<run> "
                "(`dfa train` prints the path)."
            )
        self.map, self.meta = load_map(self.folder)
        # The map tasks outside training get (`dfa.training.zero_shot`), when the run has one.
        self.zero_shot: dict[str, Any] | None = self.meta.get("zero_shot")
        zs_folder = self.folder / ZERO_SHOT
        self.zero_shot_map = load_map(zs_folder)[0] if self.zero_shot and zs_folder.is_dir() else None
        # Per task, the val check's record and map (`dfa.experiments.val_check`), once asked for.
        self.checks: dict[str, dict[str, Any]] = {}
        self.checked_maps: dict[str, Any] = {}
        # The val check's size: val prompts (None: the run's n_val) and budget (None: the default
        # share of gold's target rows; "full": every candidate on every prompt; `val_check`).
        self.check_n: int | None = None
        self.check_budget: float | str | None = None
        hp = upgrade(dict(self.meta.get("hyperparameters") or {}))
        try:
            self.config = TrainConfig(**hp)
        except TypeError as e:
            raise MapError(f"{self.folder / 'map.json'} has unreadable hyperparameters ({e}).") from None
        self.trained_on = (self.config.src, self.config.tgt)
        self.pairs = [tuple(p) for p in self.meta.get("pairs") or [self.trained_on]]
        self.src, self.tgt = src or self.config.src, tgt or self.config.tgt
        if isinstance(self.map, FeatureMap):
            return
        other = [
            f"{side} {asked!r} (trained on {own!r})"
            for side, asked, own in (
                ("source", self.src, self.config.src),
                ("target", self.tgt, self.config.tgt),
            )
            if asked != own
        ]
        # A model whose node count is known from its name alone and differs from the map's: no
        # flag makes the map fit it, so the hint does not offer one.
        misfits = [
            f"{asked} has {n} heads and MLPs, the map's {side} {len(self.meta.get(key) or [])}"
            for side, asked, own, key in (
                ("source", self.src, self.config.src, "src_nodes"),
                ("target", self.tgt, self.config.tgt, "tgt_nodes"),
            )
            if asked != own and (n := mapped_count(asked)) is not None and n != len(self.meta.get(key) or [])
        ]
        if other and (misfits or not allow_other_models):
            fix = (
                f"and {'; '.join(misfits)}, so no flag makes it fit: train a map for that pair, or a "
                "features map (--map-kind features), which fits any pair"
                if misfits
                else "even where another model's node list has the same shape; set `allow_other_models` "
                "to apply it anyway, or train a features map (--map-kind features), which fits any pair"
            )
            raise MapError(
                f"The map in {self.folder} was trained on {self.config.src} -> {self.config.tgt}; asked to "
                f"apply it to {', '.join(other)}. A dense map's weights belong to its own models' nodes, "
                f"{fix}."
            )

    @property
    def seen_pair(self) -> bool:
        """Whether the map was trained on the pair it is applied to."""
        return (self.src, self.tgt) in self.pairs

    def map_for(self, task: str) -> AlignmentMap | FeatureMap:
        """The map `task` gets: the zero-shot map for a task outside training when the run has
        one, else the (in-distribution) map."""
        if self.zero_shot_map is not None and self.setting(task) == "zero-shot":
            return self.zero_shot_map
        return self.map

    def prior_for(self, task: str) -> bool:
        """Whether `task` gets the prior: a task outside training of a run whose inner folds found
        no candidate that carries (`zero_shot` epoch 0). Its `dfa` rankings are then the run's
        `fallback` method's own (depth's: the same tie draws), not the start's (which reads z-scored
        signed scores and breaks the depth ties by its noise in one arbitrary order)."""
        return (
            self.zero_shot_map is not None
            and (self.zero_shot or {}).get("epoch") == 0
            and (self.setting(task) == "zero-shot")
        )

    @property
    def fallback(self) -> str:
        """The non-learned alignment a task that gets the prior is ranked by (`depth` or `role`,
        `dfa.training.fallback`; depth for a run trained before the fallback was chosen)."""
        return fallback_method(self.zero_shot)

    def map_note(self, task: str) -> str:
        """Which map `task` gets, in words (stored with each evaluated row)."""
        if self.setting(task) == "in-distribution":
            return "in-distribution"
        if self.zero_shot_map is None:
            return "in-distribution (the run has no zero-shot map)"
        zs = self.zero_shot or {}
        if zs.get("epoch") == 0:
            return f"zero-shot: the {self.fallback} baseline (the inner folds found nothing that carries)"
        return f"zero-shot: start + {zs.get('alpha', 1):g} * (epoch {zs.get('epoch')}'s map - start)"

    def bind(
        self,
        pool: ModelPool,
        src_graph: NodeGraph,
        tgt_graph: NodeGraph,
        amap: AlignmentMap | FeatureMap | None = None,
    ) -> None:
        """Fit the map (`amap`: default the run's) to the pair's graphs: bind a features map to
        their node features (reading both models' cached roles when its features do), check a
        dense map's node lists."""
        amap = self.map if amap is None else amap
        if isinstance(amap, FeatureMap):
            profiles = stats = None
            cache = self.config.cache_dir
            if self.map.features in ("roles", "stats"):
                profiles = (
                    cached_roles(pool, cache, self.src).profile(),
                    cached_roles(pool, cache, self.tgt).profile(),
                )
            if self.map.features == "stats":
                stats = (
                    cached_node_stats(pool, cache, self.src).table(),
                    cached_node_stats(pool, cache, self.tgt).table(),
                )
            bind_models(amap, src_graph, tgt_graph, profiles, stats)
        amap.check_graphs(src_graph, tgt_graph, self.src, self.tgt)

    def setting(self, task: str) -> str:
        return "in-distribution" if task in self.config.train_tasks else "zero-shot"

    def scores(self, pool: ModelPool, model: str, task: str) -> NodeScores:
        """The cached attribution scores (the run's method, train split, prompt count, seed)."""
        c = self.config
        return cached_scores(pool, c.cache_dir, model, task, source_spec(c), c.model_seed)
