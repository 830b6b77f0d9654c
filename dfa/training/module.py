"""The LightningModule that trains an alignment map on a frozen target model.

The map is trained with the intervention semantics of evaluation: the target runs on the clean
prompt and each node outputs `m * out + (1 - m) * corrupt`, the mask `m` coming from the map's
logits `z = (s @ W + b) / T` for the task's source scores.

Objectives (`TrainConfig.objective`):
- `curve` (the default): a circuit is judged at every size the score reads (CPR is the area of
  faithfulness over the MIB fractions), so each step runs the target under one mask per size
  `k` at once (stacked along the batch), each a soft top-k of `z` (`dfa.core.mapping.soft_top_k`),
  and the loss is the fit at each size weighed as the score weighs it (`size_weights`). The fit
  is KL(P_clean || P_masked) at the answer position; (`loss: kl_share`) that KL divided by the
  batch's KL under the empty circuit, so every task weighs on one scale (the KL of one task can be
  many times another's); or (`loss: logit_diff`) `1 - f_k`, with
  `f_k = (m_k - m_empty) / (m_clean - m_empty)` the faithfulness of the batch's mean metric.
- `density` (the first objective): one soft mask `sigmoid(z)`, fit + `sparsity * mean(mask)`.
Both add `anchor * mean_j |W[:, j] - W_init[:, j]|^2` (W starts at the relative-depth map; see
`dfa.core.mapping`), and for a features map `offset_anchor * mean_j g(psi_j)^2` (its offset `b`,
0 at the start: without it `g` grew until the ranking collapsed to depth plateaus). The target is not a submodule: never in a state_dict, never in a checkpoint.

The map is dense (`AlignmentMap`) or, with `map_kind: features`, a `FeatureMap` whose `W` and `b`
are computed from the bound pair's node features (`dfa.core.feature_map`; the anchor then pulls
the current pair's `W` towards what the starting parameters give for that pair). A features map
may train on several pairs (`pairs`): each pair is attached (its target, graph, source scores,
circuit sizes, start), every batch carries its pair, and each step first makes that pair the
current one (`use_pair`); validation and selection run per (pair, task), labelled `SRC:TGT/task`.

Logged to TensorBoard: the training terms per step (`train/*`); per epoch the same objective on
the val prompts (`val/loss`, `val/fit`, which is the size-weighed KL for `loss: kl`, and `val/kl`
for `density`; `*_zero_shot` on the held-out tasks), val CPR per task and mean, the faithfulness
at `val_fractions`, and the learning rate (`lr-Adam`, Lightning's `LearningRateMonitor`).

Model selection (`dfa.training.selection`, a mixin): validation scores hard circuits at every MIB
fraction per task, as evaluation does, before training (the start) and after each epoch.
`val/select` is the mean val CPR (faithfulness capped at 1, `capped_cpr`) over the training tasks,
and the run keeps the epoch with the best `val/select` (or the start, when no epoch beats it).
`keep: best` (the default) adds a per-task guard: `val/select` is -inf at an epoch where a
training task's val CPR is below its start value, so training never leaves a training task worse
on val than the start. `keep: mean` drops the guard: on the NeoX pair's leave-one-task-out folds the
guard kept the start on half of them, because one training task (greater-than) dipped, and threw
away epochs that carried more to the held-out task (README, "Tuning zero-shot on val").
Each validation during training also scores the epoch map's blends with the start,
`start + a * (map - start)` for `a` in `blends` (the dense map's logits are the same blend of the
two maps' logits), in the same stacked passes; a blend is a candidate under the same guard, so a
run whose epochs each leave one task below its start can still keep a step towards them that
does not.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torchmetrics.aggregation import CatMetric

from dfa.config import TrainConfig, upgrade
from dfa.core.alignment import band_matrix, depth_matrix
from dfa.core.evaluate import FRACTIONS, capped_cpr, curve, distinct_circuits, size_weights
from dfa.core.feature_map import FeatureMap, NodeFeatures
from dfa.core.graph import NodeGraph
from dfa.core.interventions import masked_metric
from dfa.core.mapping import AlignmentMap
from dfa.core.metrics import answer_metric
from dfa.methods import map_logits, one_ranking
from dfa.training.data import TrainBatch
from dfa.training.objectives import Objectives
from dfa.training.selection import Selection


def new_map(c: TrainConfig, src_nodes: list[str], tgt_nodes: list[str]) -> AlignmentMap | FeatureMap:
    """A run's map at its start (the same parameters for the same config and node lists)."""
    if c.map_kind == "features":
        fmap = FeatureMap(c.map_features, c.temperature, c.normalise, c.init_gain, c.seed, c.init_std)  # type: ignore[arg-type]
        src, tgt = NodeGraph.from_names(src_nodes), NodeGraph.from_names(tgt_nodes)
        return fmap.bind(NodeFeatures.of(src), NodeFeatures.of(tgt))
    prior = None
    if c.init == "depth":
        prior = depth_matrix(NodeGraph.from_names(src_nodes), NodeGraph.from_names(tgt_nodes))
    return AlignmentMap(
        src_nodes, tgt_nodes, c.temperature, c.normalise, c.init_std, c.seed, prior, c.init_gain
    )  # type: ignore[arg-type]


class MapTrainer(Objectives, Selection, pl.LightningModule):
    """Trains an `AlignmentMap` on the frozen target (held outside the module's state)."""

    def __init__(self, config: dict[str, Any], src_nodes: list[str], tgt_nodes: list[str]):
        super().__init__()
        self.save_hyperparameters()
        self.config = TrainConfig(**upgrade(config))
        c = self.config
        self.map = new_map(c, src_nodes, tgt_nodes)
        # The start, which `anchor` pulls the map back to and `restore_start` restores: W0 (the
        # depth prior, or ~0) and, for a features map, its starting parameters (kept outside the
        # module's state, as a map of its own bound to the current pair).
        self.__dict__["_start_map"] = (
            new_map(c, src_nodes, tgt_nodes) if c.map_kind == "features" else None
        )
        self.register_buffer("W0", self.map.W.detach().clone(), persistent=False)
        # `band`: W moves from its start only between nearby nodes of the same kind, so that what it
        # learns is a correspondence between the two models rather than associations of the
        # training tasks with far-apart nodes. Adam never moves an entry whose gradient is always
        # 0, so masking the gradient keeps W exactly at W0 outside the band.
        if c.band is not None and isinstance(self.map, AlignmentMap):
            src, tgt = NodeGraph.from_names(src_nodes), NodeGraph.from_names(tgt_nodes)
            self.register_buffer(
                "W_free", band_matrix(src, tgt, c.band, c.band_kinds == "same"), persistent=False
            )
            self.map.W.register_hook(lambda grad: grad * self.W_free.to(grad))
        if not c.offset and isinstance(self.map, AlignmentMap):
            self.map.b.requires_grad_(False)  # b stays 0: the mask is sigmoid(s @ W / T)
        self.tasks = c.eval_tasks
        # Each (pair, task) is validated and selected on; with one pair a label is the task name,
        # with several `SRC:TGT/task`.
        pairs = [f"{s}:{t}" for s, t in c.pair_list]
        self.labels = [t if len(pairs) == 1 else f"{p}/{t}" for p in pairs for t in self.tasks]
        self.train_labels = [lb for lb in self.labels if lb.split("/")[-1] in c.train_tasks]
        self.holdout_labels = [lb for lb in self.labels if lb.split("/")[-1] in c.holdout]
        # [n_tasks, n_src] source scores (mapped nodes) of the current pair, filled in setup.
        self.register_buffer("source", torch.zeros(len(self.tasks), len(src_nodes)), persistent=False)
        # Per (pair, task), each validation prompt's metric under every circuit and clean (rows
        # `[empty, FRACTIONS..., clean]`), gathered over the epoch's batches; never checkpointed.
        # Every process of a distributed run validates on every val prompt (validation is not
        # sharded), so each selects the same epoch without gathering.
        self.val_values = torch.nn.ModuleList(
            CatMetric(nan_strategy="disable", sync_on_compute=False) for _ in self.labels
        )
        # The curve objective's circuit sizes and their weights in the score (the current pair's).
        self.ks, weights = size_weights(len(tgt_nodes), FRACTIONS, c.size_weights)
        self.register_buffer("size_w", torch.tensor(weights), persistent=False)
        # Val CPR per training task before training (`start`) and after each epoch (`history`);
        # saved in checkpoints so that a resumed run selects as an uninterrupted one.
        self.draws: dict[int, torch.Tensor] = {}  # task index -> resampled source scores
        self.pair_states: dict[int, dict[str, Any]] = {}  # pair index -> what `use_pair` swaps in
        self.pair = 0
        self.start: dict[str, float] | None = None
        self.history: list[dict[str, Any]] = []
        # The map's parameters after each of the first `zero_shot_epochs` epochs (the zero-shot
        # and val-check candidates); small (one [n_src, n_tgt] matrix each), saved in checkpoints.
        self.epoch_params: dict[int, dict[str, torch.Tensor]] = {}

    # The target is not a submodule: never in state_dict, never in a checkpoint.
    @property
    def target(self):
        return self.__dict__["_target"]

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        for k, p in enumerate(dm.pairs):
            self.attach(
                dm.pair_target(k),
                p.src_graph,
                p.source_scores,
                dm.metrics,
                p.source_draws,
                p.profiles,
                k,
                p.stats,
            )
        self.use_pair(0)

    def attach(
        self,
        target: Any,
        src_graph: NodeGraph,
        source_scores: dict[str, torch.Tensor],
        metrics: dict[str, str],
        source_draws: dict[str, torch.Tensor] | None = None,
        profiles: tuple[torch.Tensor, torch.Tensor] | None = None,
        pair: int = 0,
        stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """Wire a pair's frozen target and the tasks' whole-graph source scores (done by `setup`;
        tests and benchmarks call it directly), the training tasks' resampled source scores
        `[resamples, nodes]` when `source_resamples` asks for them, and (features map) both
        models' role profiles and node statistics (`NodeStats.table`). The pair becomes the current one."""
        graph = NodeGraph.from_model(target)
        src, tgt = self.config.pair_list[pair]
        if isinstance(self.map, FeatureMap):
            feats = (
                NodeFeatures.of(src_graph, profiles and profiles[0], stats and stats[0]),
                NodeFeatures.of(graph, profiles and profiles[1], stats and stats[1]),
            )
            self._start_map.bind(*feats)
            W0 = self._start_map.W.detach().clone()
        else:
            feats, W0 = None, self.W0
            self.map.check_graphs(src_graph, graph, src, tgt)
        dev = self.W0.device
        rows = [src_graph.mapped_scores(source_scores[t]) for t in self.tasks]
        draws = {
            self.tasks.index(t): torch.stack([src_graph.mapped_scores(d) for d in v]).to(dev)
            for t, v in (source_draws or {}).items()
        }
        ks, weights = size_weights(len(graph) - 1, FRACTIONS, self.config.size_weights)
        self.pair_states[pair] = {
            "target": target, "graph": graph, "source": torch.stack(rows).to(dev), "metrics": metrics,
            "draws": draws, "ks": ks, "size_w": torch.tensor(weights, device=dev), "W0": W0.to(dev),
            "features": feats,
        }  # fmt: skip
        self.use_pair(pair)

    def use_pair(self, pair: int) -> None:
        """Make pair `pair` (attached) the current one: its target, graph, source scores, sizes,
        start, and the features map bound to its nodes."""
        state = self.pair_states[pair]
        self.__dict__["_target"] = state["target"]
        self.graph, self.metrics, self.draws, self.ks = (
            state["graph"],
            state["metrics"],
            state["draws"],
            state["ks"],
        )
        dev = self.W0.device
        self.source, self.size_w, self.W0 = (
            state["source"].to(dev),
            state["size_w"].to(dev),
            state["W0"].to(dev),
        )
        if state["features"] is not None:
            self.map.bind(*state["features"])
            self._start_map.bind(*state["features"])
        self.pair = pair

    def training_source(self, task: int) -> torch.Tensor:
        """The source scores a training step uses: the task's full vector, or (with resamples)
        one of the full vector and its resamples, drawn from the run's seed and the step."""
        draws = self.draws.get(task) if self.training else None
        if draws is None:
            return self.source[task]
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + int(self.global_step) * 31 + task)
        pick = int(torch.randint(len(draws) + 1, (1,), generator=g))
        return self.source[task] if pick == 0 else draws[pick - 1]

    def configure_optimizers(self):
        return torch.optim.Adam([p for p in self.map.parameters() if p.requires_grad], lr=self.config.lr)

    def training_step(self, batch: TrainBatch, batch_idx: int) -> torch.Tensor:
        self.use_pair(batch.pair)
        terms = self.loss_terms(batch)
        for k in (
            "loss",
            "fit",
            "fit_smallest",
            "fit_largest",
            "kl",
            "sparsity",
            "mask_density",
            "recovery",
            "anchor",
            "offset",
        ):
            if k in terms:
                self.log(
                    f"train/{k}", terms[k], prog_bar=k in ("loss", "mask_density"), batch_size=batch.size
                )
        return terms["loss"]

    # --- validation: hard circuits at every MIB fraction, per task, as `dfa.core.evaluate` scores them
    def on_validation_epoch_start(self) -> None:
        for gathered in self.val_values:
            gathered.reset()

    def validation_step(self, batch: TrainBatch, batch_idx: int) -> None:
        self.use_pair(batch.pair)
        task = int(batch.task)
        with torch.no_grad():  # the epoch's map, then its blends with the start (`candidates`)
            scores = [self.target_scores(task)]
            for a in self.candidate_blends():
                with self.blended(a):
                    scores.append(self.target_scores(task))
        masks, inverse = distinct_circuits(scores, self.graph, FRACTIONS)
        metric = self.metrics[self.tasks[task]]
        p = batch.prompts
        values = masked_metric(self.target, self.graph, p, batch.donor, masks.to(self.device), metric)
        args = (p["answers"], p["answers_mask"], p["wrongs"], p["wrongs_mask"])
        full = answer_metric(metric, batch.clean_logprobs, *args)
        rows = torch.cat([values.float()[inverse], full.float()[None]])  # [1 + n_fractions + 1, batch]
        self.val_values[batch.pair * len(self.tasks) + task].update(rows.T)
        with torch.no_grad():  # the training objective on val prompts (the full source vector)
            terms = self.loss_terms(batch)
        held = "" if self.tasks[task] in self.config.train_tasks else "_zero_shot"
        for k in ("loss", "fit", "kl"):
            if k in terms:
                self.log(f"val/{k}{held}", terms[k], batch_size=batch.size)

    def on_validation_epoch_end(self) -> None:
        per_task, at = {}, {f: [] for f in self.config.val_fractions}
        # alpha -> label -> (val CPR, capped val CPR) of that blend
        blends: dict[float, dict[str, tuple[float, float]]] = {}
        capped: dict[str, float] = {}  # label -> val CPR with faithfulness capped at 1 (`capped_cpr`)
        for name, gathered in zip(self.labels, self.val_values, strict=True):
            if gathered.update_count == 0:
                continue
            # [empty, fractions of each candidate..., clean] x prompts
            rows = gathered.compute().T.cpu().double().numpy()
            n = len(FRACTIONS)
            for i, a in enumerate(self.candidate_blends()):
                blend = curve(
                    name, rows[None, 1 + (i + 1) * n : 1 + (i + 2) * n], rows[-1], rows[0], FRACTIONS
                )
                blends.setdefault(a, {})[name] = (blend.cpr, capped_cpr(blend.faithfulness))
            c = curve(name, rows[None, 1 : 1 + n], rows[-1], rows[0], FRACTIONS)
            per_task[name] = c.cpr
            capped[name] = capped_cpr(c.faithfulness)
            self.log(f"val/cpr/{name}", c.cpr)
            if name in self.train_labels:
                for frac, vals in at.items():
                    vals.append(c.faithfulness[FRACTIONS.index(frac)])
        seen = [per_task[t] for t in self.train_labels if t in per_task]
        unseen = [per_task[t] for t in self.holdout_labels if t in per_task]
        if seen:
            self.log("val/cpr", sum(seen) / len(seen), prog_bar=True)
        if unseen:
            self.log("val/cpr_zero_shot", sum(unseen) / len(unseen), prog_bar=True)
        for frac, vals in at.items():
            if vals:
                self.log(f"val/faithfulness@{frac:g}", sum(vals) / len(vals))
        if self._trainer is None or self.trainer.sanity_checking or not (seen or unseen):
            return  # selection needs a trainer's run (tests call the hooks alone)
        self.select(per_task, capped, blends)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dfa_selection"] = {
            "start": self.start,
            "history": self.history,
            "epoch_params": self.epoch_params,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("dfa_selection") or {}
        self.start, self.history = saved.get("start"), list(saved.get("history", []))
        self.epoch_params = dict(saved.get("epoch_params") or {})

    def target_scores(self, task: int) -> torch.Tensor:
        """Whole-target-graph ranks of the current map's logits for a task (input first, on top),
        never of its saturating mask probabilities; nodes of exactly equal logit (a features map
        at its start scores a layer's heads alike) in one seeded random order
        (`dfa.methods.one_ranking`, as the exported circuit), not in node order."""
        return one_ranking(self.graph, map_logits(self.map, self.source[task]), 50_000 + self.config.seed)

    def on_train_epoch_end(self) -> None:
        writer = getattr(self.logger, "experiment", None)
        if writer is None or not hasattr(writer, "add_histogram"):
            return
        step = self.global_step
        self.use_pair(0)
        with torch.no_grad():
            for i, task in enumerate(self.tasks):
                writer.add_histogram(f"mask/{task}", self.map(self.source[i]).cpu(), step)
        from dfa.report.figures import weight_figure

        writer.add_figure("map/W", weight_figure(self.map), step)
