"""Training data: the source scores per task, and target batches carrying their cached corrupt
activations and clean (and, where the fit needs them, empty-circuit) answer log-probabilities,
shuffled anew each epoch.

In a distributed run (DDP) `EpochShuffle` gives each process its share of an epoch's batches.
Training on several pairs (`pairs`: `dfa.config.TrainConfig.pair_list`, `split_pair`) holds one
`PairData` per pair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import lightning.pytorch as pl
import torch

from dfa.config import TrainConfig
from dfa.core.cost import Cost
from dfa.core.errors import DfaError
from dfa.core.graph import NodeGraph
from dfa.core.interventions import Cache, answer_logits, donor_activations, mean_activations, run_masked
from dfa.core.scores import scores_graph
from dfa.core.tasks import Batch, get_task, make_batches, make_dataset
from dfa.store import ModelPool, ScoreSpec, cached_node_stats, cached_resamples, cached_roles, cached_scores


def source_spec(config: TrainConfig) -> ScoreSpec:
    """The attribution settings of a run's source scores (and of the target's, for `gold`)."""
    c = config
    return ScoreSpec(c.method, "train", c.n_src, c.data_seed, c.ablation, c.ig_steps)


@dataclass
class TrainBatch:
    """One task's prompts on the target, with what the map does not change, cached: the donor
    activations (corrupt run, dataset means or nothing, per the ablation) and the clean
    answer-position log-probabilities."""

    task: int  # index into the run's `eval_tasks`
    prompts: Batch  # the collated prompts (without `corrupt`: its activations are in `donor`)
    clean_logprobs: torch.Tensor
    donor: Cache
    # Under the empty circuit (`input` alone kept); training batches of the logit-diff curve fit.
    empty_logprobs: torch.Tensor | None = None
    pair: int = 0  # index into the run's `pair_list` (several with a features map)

    @property
    def size(self) -> int:
        return int(self.prompts["clean"].shape[0])


class EpochShuffle(torch.utils.data.Sampler[int]):
    """A permutation per (seed, epoch), the epoch read from the trainer when iteration starts, so
    a resumed run sees the batches in the same order as an uninterrupted one (Lightning may
    create a resumed epoch's iterator before it calls `set_epoch`). Process `rank` of `world`
    (distributed training) takes every `world`-th batch of the permutation from its `rank`-th, as
    many as every process gets, so the batches of one step across the processes are the ones
    that one process accumulating `world` batches per step would see."""

    def __init__(
        self, n: int, seed: int, epoch: Callable[[], int] = lambda: 0, rank: int = 0, world: int = 1
    ):
        self.n, self.seed, self.epoch, self.rank, self.world = n, seed, epoch, rank, world

    def __len__(self) -> int:
        return self.n // self.world

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + int(self.epoch()))
        order = torch.randperm(self.n, generator=g).tolist()
        return iter(order[self.rank :: self.world][: len(self)])


class _Items(torch.utils.data.Dataset):
    def __init__(self, items: list[TrainBatch]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> TrainBatch:
        return self.items[i]


@dataclass
class PairData:
    """One (source, target) pair of a run: the source's graph and scores per task, and (for a
    features map reading roles) both models' role profiles."""

    src: str
    tgt: str
    src_graph: NodeGraph | None = None
    source_scores: dict[str, torch.Tensor] = field(default_factory=dict)  # task -> whole graph
    source_draws: dict[str, torch.Tensor] = field(default_factory=dict)  # task -> [resamples, graph]
    profiles: tuple[torch.Tensor, torch.Tensor] | None = None  # (source, target) `[heads, roles]`
    stats: tuple[torch.Tensor, torch.Tensor] | None = None  # (source, target) `[mapped, N_STATS]`
    source_cost: Cost = field(default_factory=Cost)  # what its source scores cost (cached or not)


class TransferData(pl.LightningDataModule):
    """Source scores per task (computed once with the chosen attribution method on the source's
    train split, cached on disk) and target batches (one task per batch), for each of the run's
    pairs (`TrainConfig.pair_list`); the training batches of every pair are shuffled together."""

    def __init__(self, config: TrainConfig, pool: ModelPool):
        super().__init__()
        self.config = config
        self.pool = pool
        self.pairs = [PairData(s, t) for s, t in config.pair_list]
        self.train_items: list[TrainBatch] = []
        self.val_items: list[TrainBatch] = []
        self.metrics: dict[str, str] = {t: get_task(t).metric for t in config.eval_tasks}

    # The first pair's, for one-pair runs and the tests that wire a module by hand.
    @property
    def target(self):
        return self.pair_target(0)

    @property
    def src_graph(self) -> NodeGraph | None:
        return self.pairs[0].src_graph

    @property
    def source_scores(self) -> dict[str, torch.Tensor]:
        return self.pairs[0].source_scores

    @property
    def source_draws(self) -> dict[str, torch.Tensor]:
        return self.pairs[0].source_draws

    def pair_target(self, k: int):
        return self.pool.get(self.pairs[k].tgt, self.config.model_seed)

    def scores(self, model: str, task: str):
        c = self.config
        return cached_scores(self.pool, c.cache_dir, model, task, source_spec(c), c.model_seed)

    def resamples(self, task: str, model: str | None = None) -> torch.Tensor:
        c = self.config
        return cached_resamples(
            self.pool, c.cache_dir, model or c.src, task, source_spec(c), c.source_resamples, c.model_seed
        )

    @property
    def reads_roles(self) -> bool:
        return self.config.map_kind == "features" and self.config.map_features in ("roles", "stats")

    @property
    def reads_stats(self) -> bool:
        return self.config.map_kind == "features" and self.config.map_features == "stats"

    def prepare_data(self) -> None:
        c = self.config
        for p in self.pairs:
            for task in c.eval_tasks:
                self.scores(p.src, task)  # computed (the source loaded once) only when not cached
            if c.source_resamples:
                for task in c.train_tasks:
                    self.resamples(task, p.src)
            if self.reads_roles:
                for model in (p.src, p.tgt):
                    cached_roles(self.pool, c.cache_dir, model)
            if self.reads_stats:
                for model in (p.src, p.tgt):
                    cached_node_stats(self.pool, c.cache_dir, model)

    def setup(self, stage: str | None = None) -> None:
        if self.train_items:
            return
        for k in range(len(self.pairs)):
            self._setup_pair(k)

    def _setup_pair(self, k: int) -> None:
        c, p = self.config, self.pairs[k]
        for task in c.eval_tasks:
            s = self.scores(p.src, task)
            if p.src_graph is None:
                p.src_graph = scores_graph(s)
            p.source_scores[task] = s.for_graph(p.src_graph, f"{p.src} scores on {task}")
            p.source_cost.add(s.meta.get("cost"))
            if c.source_resamples and task in c.train_tasks:
                p.source_draws[task] = self.resamples(task, p.src)
        if self.reads_roles:
            p.profiles = tuple(  # type: ignore[assignment]
                cached_roles(self.pool, c.cache_dir, m).profile() for m in (p.src, p.tgt)
            )
        if self.reads_stats:
            p.stats = tuple(  # type: ignore[assignment]
                cached_node_stats(self.pool, c.cache_dir, m).table() for m in (p.src, p.tgt)
            )
        target = self.pair_target(k)
        graph = NodeGraph.from_model(target)
        for i, task in enumerate(c.eval_tasks):
            if task in c.train_tasks:
                self.train_items += self._items(target, graph, task, i, "train", c.n_train, k)
            if c.validate == "all" or task not in c.train_tasks:
                self.val_items += self._items(target, graph, task, i, "val", c.n_val, k)

    def _items(
        self, target, graph: NodeGraph, task: str, index: int, split: str, n: int, pair: int = 0
    ) -> list[TrainBatch]:
        c = self.config
        data = make_dataset(task, target.tokenizer, n, split, c.data_seed, allow_fewer=True)
        batches = make_batches(data.examples, target.tokenizer, c.batch_size)
        device = next(target.parameters()).device
        batches = [{k: v.to(device) for k, v in b.items()} for b in batches]  # type: ignore[misc]
        means = mean_activations(target, graph, batches) if c.ablation == "mean" else None
        # The empty circuit's answer log-probabilities: only the curve objective's logit-diff and
        # KL-share fits read them (in training, and for the val loss).
        needs_empty = c.objective == "curve" and c.loss in ("logit_diff", "kl_share")
        items = []
        for b in batches:
            donor = donor_activations(target, graph, b, c.ablation, means)
            with torch.no_grad():  # not inference_mode: the clean log-probs are the KL's target in training
                clean = answer_logits(target, b["clean"], b["last"]).float().log_softmax(-1)
                empty = None
                if needs_empty:
                    kept = graph.with_input(torch.zeros(len(graph) - 1))
                    empty = run_masked(target, graph, b["clean"], donor, kept, hard=True, last=b["last"])
                    empty = empty.float().log_softmax(-1).cpu()
            prompts = {k: v.cpu() for k, v in b.items() if k != "corrupt"}
            donor_cpu = {k: v.cpu() for k, v in donor.items()}
            items.append(TrainBatch(index, prompts, clean.cpu(), donor_cpu, empty, pair))  # type: ignore[arg-type]
        return items

    def _epoch(self) -> int:
        """The epoch about to run: the trainer's count of epochs whose training part is done (on a
        resumed run `current_epoch` still reads the checkpoint's epoch when the iterator is made)."""
        if self.trainer is None:
            return 0
        loop = getattr(self.trainer, "fit_loop", None)
        return loop.epoch_progress.current.processed if loop is not None else self.trainer.current_epoch

    def train_dataloader(self):
        rank, world = getattr(self.trainer, "global_rank", 0), getattr(self.trainer, "world_size", 1)
        if len(self.train_items) < world:
            raise DfaError(f"{len(self.train_items)} training batches cannot feed {world} processes.")
        return torch.utils.data.DataLoader(
            _Items(self.train_items),
            batch_size=None,
            sampler=EpochShuffle(len(self.train_items), self.config.seed, self._epoch, rank, world),
        )

    def val_dataloader(self):
        return torch.utils.data.DataLoader(_Items(self.val_items), batch_size=None, shuffle=False)
