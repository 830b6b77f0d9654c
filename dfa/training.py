"""Training the alignment map with Lightning: the config, the score cache, the DataModule, the
LightningModule, atomic checkpoints, and the run folder.

The map is trained on the frozen target model with the intervention semantics of evaluation
(DESIGN.md): the target runs on the clean prompt and each node outputs
`m * out + (1 - m) * corrupt`, with `m = sigmoid((s @ W + b) / T)` from the task's source
scores. The loss is KL(P_clean || P_masked) at the answer position (or, as an option, one minus
the recovered share of the clean logit difference) + `sparsity * mean(mask)` +
`anchor * mean_j |W[:, j] - W_init[:, j]|^2` (W starts at the relative-depth map; see
`dfa.mapping`). Language models are loaded in `setup()` and never saved in checkpoints: a
checkpoint holds the map only.
"""

from __future__ import annotations

import re
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.plugins.io import TorchCheckpointIO

from dfa.attribution import check_method
from dfa.baselines import depth_matrix
from dfa.errors import DfaError
from dfa.evaluate import FRACTIONS, circuit_masks, cpr
from dfa.graph import NodeGraph
from dfa.interventions import (
    check_ablation,
    donor_activations,
    masked_metric,
    mean_activations,
    run_masked,
)
from dfa.io import atomic_write
from dfa.mapping import NORMALISATIONS, AlignmentMap, mapped_names, mask_probabilities
from dfa.metrics import answer_metric, final_logits
from dfa.scores import NodeScores
from dfa.tasks import TASKS, get_task, make_batches, make_dataset

Loss = Literal["kl", "logit_diff"]
LOSSES: tuple[Loss, ...] = ("kl", "logit_diff")
INITS = ("random", "depth")


class ConfigError(DfaError, ValueError):
    """A config file or flag that cannot be used."""


# --- config ---------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Everything a training run depends on; `config.yaml` in the run folder is this, resolved."""

    src: str = "toy-gpt2-s"
    tgt: str = "toy-gpt2-l"
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    holdout: list[str] = field(default_factory=list)
    method: str = "eap-ig-inputs"  # attribution of the source (and of the target for `gold`)
    ig_steps: int = 5
    ablation: str = "patching"
    n_src: int = 100  # source prompts per task, train split, for the source scores
    n_train: int = 200  # target prompts per task, train split
    n_val: int = 50  # target prompts per task, val split
    batch_size: int = 25
    loss: str = "kl"
    sparsity: float = 0.2  # lambda of lambda * mean(mask)
    lr: float = 0.05
    temperature: float = 1.0
    normalise: str = "zscore"
    init_std: float = 0.01
    init: str = "depth"  # W's start: depth (init_gain * relative-depth map + noise) or random (noise)
    init_gain: float = 6.0
    anchor: float = 10.0  # + anchor * mean over target nodes of |W[:, j] - W_init[:, j]|^2
    max_epochs: int = 6
    seed: int = 0  # map initialisation and batch order
    data_seed: int = 0  # the tasks' train/val/test split (the toy ladders were trained on seed 0's)
    model_seed: int = 0  # weights of NAME:random models
    val_fractions: list[float] = field(default_factory=lambda: [0.02, 0.05, 0.1, 0.2])
    out: str = "checkpoints"
    run: str | None = None
    cache: str | None = None  # source/target score cache; default <out>/cache
    accelerator: str = "auto"
    dtype: str = "float32"
    log_every_n_steps: int = 5

    @property
    def train_tasks(self) -> list[str]:
        return [t for t in self.tasks if t not in self.holdout]

    @property
    def eval_tasks(self) -> list[str]:
        return [*self.train_tasks, *[t for t in self.holdout if t not in self.train_tasks]]

    @property
    def cache_dir(self) -> Path:
        return Path(self.cache) if self.cache else Path(self.out) / "cache"

    def run_name(self) -> str:
        if self.run:
            return self.run
        if self.holdout:
            mode = "holdout-" + "+".join(self.holdout)
        elif len(self.train_tasks) == 1:
            mode = "only-" + self.train_tasks[0]
        elif sorted(self.train_tasks) == sorted(TASKS):
            mode = "all"
        else:
            mode = "tasks-" + "+".join(self.train_tasks)
        return f"{mode}-s{self.seed}"

    def run_dir(self) -> Path:
        return Path(self.out) / f"{safe_name(self.src)}__{safe_name(self.tgt)}" / self.run_name()

    def scores(self, model_name: str, task: str, model: Any = None) -> NodeScores:
        """A model's cached scores on a task with this run's attribution settings (the method,
        ablation and IG steps; `n_src` prompts of the train split of `data_seed`)."""
        return cached_scores(
            model_name,
            task,
            self.method,
            "train",
            self.n_src,
            self.data_seed,
            self.cache_dir,
            self.ablation,
            self.ig_steps,
            model,
            self.model_seed,
        )

    def check(self) -> TrainConfig:
        from dfa.models import parse_spec

        parse_spec(self.src)  # an unknown model name fails here, before any work
        parse_spec(self.tgt)
        for t in [*self.tasks, *self.holdout]:
            get_task(t)
        if not self.train_tasks:
            raise ConfigError(
                f"Every task is held out ({', '.join(self.holdout)}): train on at least one task "
                "(--tasks lists the tasks, --holdout removes some for zero-shot evaluation)."
            )
        check_method(self.method)
        check_ablation(self.ablation)
        if self.loss not in LOSSES:
            raise ConfigError(f"Unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}.")
        if self.init not in INITS:
            raise ConfigError(f"Unknown init {self.init!r}; choose one of {', '.join(INITS)}.")
        if self.normalise not in NORMALISATIONS:
            raise ConfigError(
                f"Unknown normalisation {self.normalise!r}; choose one of {', '.join(NORMALISATIONS)}."
            )
        for name in ("n_src", "n_train", "n_val", "batch_size", "max_epochs", "ig_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
        bad = [f for f in self.val_fractions if f not in FRACTIONS]
        if bad:
            raise ConfigError(f"val_fractions must be among the MIB fractions {list(FRACTIONS)}, not {bad}.")
        if self.lr <= 0 or self.temperature <= 0 or self.sparsity < 0 or self.anchor < 0:
            raise ConfigError("lr and temperature must be positive, sparsity and anchor non-negative.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FIELDS = {f.name for f in fields(TrainConfig)}


def read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"No config file {path} (configs/ holds the shipped ones).")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, not {type(data).__name__}.")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(FIELDS))}."
        )
    return data


def make_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the YAML file, then `overrides` (flags; None means not given)."""
    values: dict[str, Any] = read_yaml(path) if path else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        raise ConfigError(f"Unknown setting(s) {', '.join(unknown)}.")
    for key in ("tasks", "holdout", "val_fractions"):
        if isinstance(values.get(key), str):
            values[key] = [values[key]]
    try:
        return TrainConfig(**values).check()
    except TypeError as e:
        raise ConfigError(str(e)) from None


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    import yaml

    text = yaml.safe_dump(data, sort_keys=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def safe_name(text: str) -> str:
    """A model name as a folder name (`org/name@rev` -> `org_name@rev`)."""
    return re.sub(r"[^A-Za-z0-9._@=+-]", "_", text)


# --- models and cached scores --------------------------------------------------------------------
_MODELS: dict[tuple[str, str, str, int], Any] = {}


def shared_model(name: str, device: torch.device | str = "cpu", dtype: str = "float32", seed: int = 0):
    """Load a frozen model once per process (the DataModule and the LightningModule share it)."""
    from dfa.models import load_model

    key = (name, str(torch.device(device)), dtype, seed)
    if key not in _MODELS:
        _MODELS[key] = load_model(name, device=device, dtype=dtype, seed=seed)
    return _MODELS[key]


def cache_name(model: str) -> str:
    """A model's folder name in a cache: its name, and for a local or toy model a hash of its
    weights, so that a rebuilt model (another seed, `DFA_ZOO` elsewhere) never reads the scores
    of the model it replaced."""
    from dfa.models import weights_fingerprint

    fingerprint = weights_fingerprint(model)
    return safe_name(model) + (f"__w{fingerprint}" if fingerprint else "")


def score_path(
    cache: Path,
    model: str,
    task: str,
    method: str,
    split: str,
    n: int,
    seed: int,
    ablation: str,
    ig_steps: int,
):
    return (
        cache
        / "scores"
        / cache_name(model)
        / f"{task}__{method}__{ablation}__ig{ig_steps}__{split}__n{n}__s{seed}.safetensors"
    )


def cached_scores(
    model_name: str,
    task: str,
    method: str,
    split: str,
    n: int,
    seed: int,
    cache: Path,
    ablation: str = "patching",
    ig_steps: int = 5,
    model: Any = None,
    model_seed: int = 0,
    dtype: str = "float32",
    progress: bool = False,
) -> NodeScores:
    """Node scores of `model_name` on `task`, from the cache when there, else computed and saved
    (keyed by model, task, method, ablation, IG steps, split, prompt count and seed)."""
    from dfa.circuits import score_nodes

    path = score_path(cache, model_name, task, method, split, n, seed, ablation, ig_steps)
    if path.is_file():
        return NodeScores.load(path)
    if model is None:
        model = shared_model(model_name, dtype=dtype, seed=model_seed)
    print(f"scoring {model_name} on {task} ({method}, {n} {split} prompts) ...", flush=True)
    scores = score_nodes(model, task, method, split, n, seed, ablation, ig_steps, progress=progress)
    scores.save(path)
    return scores


# --- data -----------------------------------------------------------------------------------------
class EpochShuffle(torch.utils.data.Sampler[int]):
    """A permutation per (seed, epoch), the epoch read from the trainer when iteration starts, so
    a resumed run sees the batches in the same order as an uninterrupted one (Lightning may
    create a resumed epoch's iterator before it calls `set_epoch`)."""

    def __init__(self, n: int, seed: int, epoch: Callable[[], int] = lambda: 0):
        self.n, self.seed, self.epoch = n, seed, epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + int(self.epoch()))
        return iter(torch.randperm(self.n, generator=g).tolist())


class _Items(torch.utils.data.Dataset):
    def __init__(self, items: list[dict[str, Any]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


class TransferData(pl.LightningDataModule):
    """Source scores per task (computed once with the chosen attribution method on the source's
    train split, cached on disk) and target batches (one task per batch) carrying their cached
    corrupt activations and clean answer-position log-probabilities."""

    def __init__(self, config: TrainConfig, device: torch.device | None = None, progress: bool = True):
        super().__init__()
        self.config = config
        self.device = device or torch.device("cpu")
        self.progress = progress
        self.target: Any = None
        self.source_scores: dict[str, torch.Tensor] = {}  # task -> whole-graph source scores
        self.src_graph: NodeGraph | None = None
        self.train_items: list[dict[str, Any]] = []
        self.val_items: list[dict[str, Any]] = []
        self.metrics: dict[str, str] = {}

    def prepare_data(self) -> None:
        c = self.config
        for task in c.eval_tasks:
            c.scores(c.src, task)  # computed (source loaded once per process) only when not cached

    def setup(self, stage: str | None = None) -> None:
        if self.train_items:
            return
        c = self.config
        for task in c.eval_tasks:
            s = c.scores(c.src, task)
            cfg = s.meta.get("cfg") or {}
            if self.src_graph is None:
                self.src_graph = NodeGraph(int(cfg["n_layers"]), int(cfg["n_heads"]))
            self.source_scores[task] = s.for_graph(self.src_graph, f"{c.src} scores on {task}")
        target = self.target = shared_model(c.tgt, self.device, c.dtype, c.model_seed)
        graph = NodeGraph.from_model(target)
        for i, task in enumerate(c.eval_tasks):
            self.metrics[task] = get_task(task).metric
            if task in c.train_tasks:
                self.train_items += self._items(target, graph, task, i, "train", c.n_train)
            self.val_items += self._items(target, graph, task, i, "val", c.n_val)

    def _items(
        self, target, graph: NodeGraph, task: str, index: int, split: str, n: int
    ) -> list[dict[str, Any]]:
        c = self.config
        data = make_dataset(task, target.tokenizer, n, split, c.data_seed, allow_fewer=True)
        batches = make_batches(data.examples, target.tokenizer, c.batch_size)
        device = next(target.parameters()).device
        batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
        means = mean_activations(target, graph, batches) if c.ablation == "mean" else None
        items = []
        for b in batches:
            donor = donor_activations(target, graph, b, c.ablation, means)  # type: ignore[arg-type]
            with torch.no_grad():
                clean = final_logits(target(b["clean"]), b["last"]).float().log_softmax(-1)
            item = {k: v.cpu() for k, v in b.items() if k != "corrupt"}
            item.update(task=index, clean_logprobs=clean.cpu(), donor={k: v.cpu() for k, v in donor.items()})
            items.append(item)
        return items

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self):
        return torch.utils.data.DataLoader(
            _Items(self.train_items),
            batch_size=None,
            sampler=EpochShuffle(len(self.train_items), self.config.seed),
        )

    def val_dataloader(self):
        return torch.utils.data.DataLoader(_Items(self.val_items), batch_size=None, shuffle=False)


# --- the LightningModule --------------------------------------------------------------------------
class MapTrainer(pl.LightningModule):
    """Trains an `AlignmentMap` on the frozen target (held outside the module's state)."""

    def __init__(self, config: dict[str, Any], src_nodes: list[str], tgt_nodes: list[str]):
        super().__init__()
        self.save_hyperparameters()
        self.config = TrainConfig(**config)
        c = self.config
        prior = None
        if c.init == "depth":
            prior = depth_matrix(NodeGraph.from_names(src_nodes), NodeGraph.from_names(tgt_nodes))
        self.map = AlignmentMap(
            src_nodes,
            tgt_nodes,
            c.temperature,
            c.normalise,  # type: ignore[arg-type]
            c.init_std,
            c.seed,
            prior,
            c.init_gain,
        )
        # W's starting point, which `anchor` pulls it back to (the depth prior, or ~0).
        self.register_buffer("W0", self.map.W.detach().clone(), persistent=False)
        self.tasks = c.eval_tasks
        # [n_tasks, n_src] source scores (mapped nodes), filled in setup from the DataModule.
        self.register_buffer("source", torch.zeros(len(self.tasks), len(src_nodes)), persistent=False)
        self._val: dict[int, dict[str, Any]] = {}

    # The target is not a submodule: never in state_dict, never in a checkpoint.
    @property
    def target(self):
        return self.__dict__["_target"]

    def setup(self, stage: str) -> None:
        c = self.config
        dm = self.trainer.datamodule
        target = shared_model(c.tgt, self.trainer.strategy.root_device, c.dtype, c.model_seed)
        self.attach(target, dm.src_graph, dm.source_scores, dm.metrics)

    def attach(
        self,
        target: Any,
        src_graph: NodeGraph,
        source_scores: dict[str, torch.Tensor],
        metrics: dict[str, str],
    ) -> None:
        """Wire the frozen target and the tasks' whole-graph source scores (done by `setup`;
        tests and benchmarks call it directly)."""
        self.__dict__["_target"] = target
        self.graph = NodeGraph.from_model(target)
        self.map.check_graphs(src_graph, self.graph, self.config.src, self.config.tgt)
        keep = [n.index for n in src_graph if n.kind != "input"]
        self.source = torch.stack([source_scores[t][keep] for t in self.tasks]).float().to(self.map.W.device)
        self.metrics = metrics

    def configure_optimizers(self):
        return torch.optim.Adam(self.map.parameters(), lr=self.config.lr)

    def masked_logprobs(self, batch: dict[str, Any], mask: torch.Tensor) -> torch.Tensor:
        """Answer-position log-probabilities of the clean batch under the soft `mask`."""
        logits = run_masked(self.target, self.graph, batch["clean"], batch["donor"], mask, hard=False)
        return final_logits(logits, batch["last"]).float().log_softmax(-1)

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        task = int(batch["task"])
        mask = self.map.full_mask(self.source[task])
        logp = self.masked_logprobs(batch, mask)
        clean = batch["clean_logprobs"]
        kl = F.kl_div(logp, clean, log_target=True, reduction="batchmean")
        sparsity = mask[1:].mean()
        terms = {"kl": kl, "sparsity": sparsity, "mask_density": (mask[1:] > 0.5).float().mean()}
        if self.config.loss == "logit_diff":
            m = self.metrics[self.tasks[task]]
            args = (batch["answers"], batch["answers_mask"], batch["wrongs"], batch["wrongs_mask"])
            full = answer_metric(m, clean, *args)  # log-probs differ from logits by a constant
            masked = answer_metric(m, logp, *args)
            terms["recovery"] = masked.mean() / full.mean().clamp_min(1e-6)
            terms["fit"] = 1 - terms["recovery"]
        else:
            terms["fit"] = kl
        terms["loss"] = terms["fit"] + self.config.sparsity * sparsity
        if self.config.anchor > 0:
            terms["anchor"] = (self.map.W - self.W0).pow(2).sum(0).mean()
            terms["loss"] = terms["loss"] + self.config.anchor * terms["anchor"]
        return terms

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        terms = self.loss_terms(batch)
        b = int(batch["clean"].shape[0])
        for k in ("loss", "kl", "sparsity", "mask_density", "recovery", "anchor"):
            if k in terms:
                self.log(f"train/{k}", terms[k], prog_bar=k in ("loss", "mask_density"), batch_size=b)
        return terms["loss"]

    # --- validation: hard circuits at every MIB fraction, per task ---------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val = {}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        task = int(batch["task"])
        with torch.no_grad():
            scores = self.target_scores(task)
        masks, _ = circuit_masks(scores, self.graph, FRACTIONS)
        empty = torch.zeros(1, len(self.graph))
        empty[0, 0] = 1
        allm = torch.cat([empty, masks]).to(self.device)
        metric = self.metrics[self.tasks[task]]
        prompts = {k: v for k, v in batch.items() if k not in ("task", "donor", "clean_logprobs")}
        values = masked_metric(self.target, self.graph, prompts, batch["donor"], allm, metric).double().sum(1)
        args = (batch["answers"], batch["answers_mask"], batch["wrongs"], batch["wrongs_mask"])
        full = answer_metric(metric, batch["clean_logprobs"], *args).double().sum()
        acc = self._val.setdefault(task, {"sum": torch.zeros_like(values), "full": 0.0, "n": 0})
        acc["sum"] += values
        acc["full"] += float(full)
        acc["n"] += int(batch["clean"].shape[0])

    def on_validation_epoch_end(self) -> None:
        per_task, at = {}, {f: [] for f in self.config.val_fractions}
        for task, acc in self._val.items():
            name = self.tasks[task]
            m = (acc["sum"] / acc["n"]).cpu().numpy()
            full = acc["full"] / acc["n"]
            f = (m[1:] - m[0]) / (full - m[0]) if full != m[0] else m[1:] * float("nan")
            per_task[name] = cpr(FRACTIONS, f)
            self.log(f"val/cpr/{name}", per_task[name])
            if name in self.config.train_tasks:
                for frac, vals in at.items():
                    vals.append(float(f[FRACTIONS.index(frac)]) if frac in FRACTIONS else float("nan"))
        seen = [per_task[t] for t in self.config.train_tasks if t in per_task]
        unseen = [per_task[t] for t in self.config.holdout if t in per_task]
        if seen:
            self.log("val/cpr", sum(seen) / len(seen), prog_bar=True)
        if unseen:
            self.log("val/cpr_zero_shot", sum(unseen) / len(unseen), prog_bar=True)
        for frac, vals in at.items():
            if vals:
                self.log(f"val/faithfulness@{frac:g}", sum(vals) / len(vals))

    def target_scores(self, task: int) -> torch.Tensor:
        """Whole-target-graph scores of the current map for a task (input first, at 1)."""
        p = mask_probabilities(self.map.logits(self.source[task])).cpu()
        return torch.cat([p.new_ones(1), p])

    def on_train_epoch_end(self) -> None:
        writer = getattr(self.logger, "experiment", None)
        if writer is None or not hasattr(writer, "add_histogram"):
            return
        step = self.global_step
        with torch.no_grad():
            for i, task in enumerate(self.tasks):
                writer.add_histogram(f"mask/{task}", self.map(self.source[i]).cpu(), step)
        writer.add_figure("map/W", weight_figure(self.map), step)


def weight_figure(amap: AlignmentMap):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    W = amap.W.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(8, 4))
    lim = float(abs(W).max()) or 1.0
    im = ax.imshow(W, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_xlabel(f"target node ({amap.n_tgt})")
    ax.set_ylabel(f"source node ({amap.n_src})")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


# --- checkpoints ----------------------------------------------------------------------------------
class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary file and renamed: a kill mid-write leaves the
    previous checkpoint intact."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = True) -> dict[str, Any]:
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


CKPT = "last.ckpt"


# --- a run ----------------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("dfa", "torch", "lightning", "transformers", "transformer-lens"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def prepare_run(
    config: TrainConfig, resume: bool = False, overwrite: bool = False, max_epochs: int | None = None
) -> tuple[TrainConfig, Path]:
    """The run folder: refuse to clobber a run unless asked; on `resume`, the run's own saved
    config (with `max_epochs` raised when given)."""
    run = config.run_dir()
    saved = run / "config.yaml"
    if resume:
        if not (run / CKPT).is_file():
            raise ConfigError(f"Nothing to resume in {run}: no {CKPT} there (was the run started?).")
        if saved.is_file():
            config = make_config(saved, max_epochs=max_epochs)
        return config, run
    if (run / CKPT).is_file() or (run / "map.json").is_file():
        if not overwrite:
            raise ConfigError(
                f"Run folder {run} already holds a run. Pass --resume to continue it, --run NAME "
                "for a new run beside it, or --overwrite to replace it."
            )
        shutil.rmtree(run)
    return config, run


def pick_device(accelerator: str) -> torch.device:
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", 0)
    if accelerator in ("gpu", "cuda"):
        raise ConfigError("accelerator is 'cuda' but no CUDA GPU is visible; use 'auto' or 'cpu'.")
    return torch.device("cpu")


def train(
    config: TrainConfig,
    resume: bool = False,
    overwrite: bool = False,
    max_epochs: int | None = None,
    progress: bool = True,
    callbacks: Sequence[pl.Callback] = (),
) -> Path:
    """Train a map; returns the run folder (map.safetensors, map.json, config.yaml, TensorBoard
    events, last.ckpt). `resume` continues the run folder's last checkpoint."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    config, run = prepare_run(config, resume, overwrite, max_epochs)
    run.mkdir(parents=True, exist_ok=True)
    write_yaml(run / "config.yaml", config.to_dict())
    pl.seed_everything(config.seed, verbose=False)
    device = pick_device(config.accelerator)
    data = TransferData(config, device, progress)
    data.prepare_data()
    data.setup("fit")
    assert data.src_graph is not None and data.target is not None
    module = MapTrainer(
        config.to_dict(), mapped_names(data.src_graph), mapped_names(NodeGraph.from_model(data.target))
    )
    trainer = pl.Trainer(
        max_epochs=config.max_epochs,
        accelerator=device.type,
        devices=1,
        logger=TensorBoardLogger(str(run), name="", version="tensorboard", default_hp_metric=False),
        callbacks=[
            # One checkpoint, `last.ckpt`, replaced (atomically) after every epoch.
            ModelCheckpoint(
                dirpath=run, filename=CKPT[: -len(".ckpt")], save_top_k=1, enable_version_counter=False
            ),
            *callbacks,
        ],
        plugins=[AtomicCheckpointIO()],
        num_sanity_val_steps=0,
        log_every_n_steps=config.log_every_n_steps,
        enable_progress_bar=progress,
        enable_model_summary=False,
        default_root_dir=str(run),
    )
    start = time.perf_counter()
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r".*treespec.*")  # lightning's own deprecation notice
    if resume:
        print(f"resuming {run} from {CKPT}", flush=True)
    trainer.fit(module, datamodule=data, ckpt_path=str(run / CKPT) if resume else None, weights_only=True)
    if trainer.interrupted:
        raise DfaError(f"Training was interrupted; continue it with --resume (run folder {run}).")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    meta = {
        "src": config.src,
        "tgt": config.tgt,
        "method": config.method,
        "ablation": config.ablation,
        "tasks": config.train_tasks,
        "holdout": config.holdout,
        "source_scores": {
            "split": "train",
            "n": config.n_src,
            "seed": config.data_seed,
            "ig_steps": config.ig_steps,
        },
        "hyperparameters": config.to_dict(),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "train_seconds": round(time.perf_counter() - start, 1),
        "final_metrics": metrics,
        "input_node": "kept (not mapped)",
        "versions": _versions(),
    }
    module.map.save(run, meta)
    return run
