# `opt(...)` returns a `dataclasses.field` (lists copied per instance), not a shared default.
# ruff: noqa: RUF009
"""Typed configs: every setting of a run or an experiment, its type, its one default and its help.

The dataclasses here are the only place defaults live: YAML files and command-line flags (which
`dfa.cli` generates from these fields) override them, and `check()` validates the result with
errors that name the setting. `Literal` fields list their choices; a value of the wrong type
(`max_epochs: "three"`) is refused by name, before any work starts.

`TrainConfig` is here; the experiments' configs (`SweepConfig`, `LotoConfig`, `CrossScaleConfig`,
`CircuitsTableConfig`) are in `dfa.experiments.configs`, built on the same `opt`. Values are
checked against their annotations by `dfa.core.settings`. The shipped YAMLs in
`dfa/configs/` (`configs/` links there) are usable by name.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from dfa.core.errors import DfaError
from dfa.core.io import atomic_write
from dfa.core.names import FRACTIONS, Ablation, MapFeatures, MapKind, Method, Normalise, SizeWeights
from dfa.core.settings import ConfigError, check_types, unknown_keys
from dfa.core.tasks import TASKS

Loss = Literal["kl", "kl_share", "logit_diff"]
Objective = Literal["curve", "density"]
Keep = Literal["best", "mean", "last"]
Validate = Literal["all", "holdout"]
Fallback = Literal["auto", "depth", "role"]
BandKinds = Literal["same", "any"]
Init = Literal["random", "depth"]
Split = Literal["train", "val", "test"]
Dtype = Literal["float32", "bfloat16", "float16"]
Strategy = Literal["auto", "ddp"]
Backend = Literal["local", "ray"]
LOSSES: tuple[Loss, ...] = get_args(Loss)
INITS: tuple[Init, ...] = get_args(Init)
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"  # the shipped YAML configs


def opt(default: Any, help: str, **meta: Any) -> Any:
    """A config field: its default (lists are copied per instance) and its help text."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


# --- the training run ----------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Everything a training run depends on; `config.yaml` in the run folder is this, resolved."""

    src: str = opt("toy-gpt2-s", "source model (see `dfa models`)")
    tgt: str = opt("toy-gpt2-l", "target model (see `dfa models`)")
    map_kind: MapKind = opt(
        "dense",
        "the map: a free [n_src, n_tgt] matrix for the pair src -> tgt (dense), or a kernel on "
        "per-node features whose parameters fit any pair (features: trains on several `pairs`, "
        "applies to pairs it never saw)",
    )
    map_features: MapFeatures = opt(
        "stats",
        "features map: besides kind, relative depth and the layer's share of heads, read the heads' "
        "role profiles (roles: forward passes of each model, cached), or the roles and every node's "
        "activation statistics on random tokens (stats: output norm, spread across inputs, attention "
        "entropy and BOS share, z-scored within the model; cached), or neither (depth)",
    )
    pairs: list[str] = opt(
        [],
        "features map: model pairs SRC:TGT trained on at once, batches drawn across them (src and "
        "tgt become the first pair's); empty: the one pair src -> tgt",
    )
    tasks: list[str] = opt(list(TASKS), "tasks to use, names or task files (train on these, minus the hold-outs)")
    holdout: list[str] = opt([], "tasks left out of training and evaluated zero-shot")
    method: Method = opt("eap-ig-inputs", "attribution of the source (and of the target for gold)")
    ig_steps: int = opt(5, "integration steps of the EAP-IG methods")
    ablation: Ablation = opt("patching", "how nodes outside the circuit are ablated")
    n_src: int = opt(100, "source prompts per task (train split) for the source scores")
    n_train: int = opt(200, "target prompts per task, train split")
    n_val: int = opt(50, "target prompts per task, val split")
    batch_size: int = opt(25, "prompts per training batch (one task per batch)")
    objective: Objective = opt(
        "curve",
        "what the map is trained for: the target's fit at every circuit size the score reads, each "
        "through a soft top-k of the map's logits (curve), or one soft mask whose density the "
        "sparsity penalty sets (density, the first objective)",
    )
    loss: Loss = opt(
        "kl",
        "fit term: KL at the answer position; kl_share: that KL as a share of the empty circuit's "
        "(each task on one scale); or the logit-diff faithfulness lost",
    )
    sparsity: float = opt(0.2, "density objective: lambda of lambda * mean(mask)")
    topk_tau: float = opt(0.25, "curve objective: width of the soft top-k cut, in std of the map's logits")
    size_weights: SizeWeights = opt("both", "curve objective: weigh sizes as CPR does (cpr), as the log-x area (log), or the mean")
    source_resamples: int = opt(
        0,
        "also train on this many bootstrap resamples of each task's source prompts (noisy source "
        "vectors; each step draws one or the full vector); 0: the full vector only",
    )
    keep: Keep = opt(
        "best",
        "the map kept: the best mean val CPR among the epochs (and the start) where no training task's "
        "val CPR is below its start (best); the best mean val CPR, without that guard (mean); or the "
        "last epoch",
    )
    validate: Validate = opt(
        "all",
        "tasks each validation scores: all, or only the hold-outs (then the last epoch is kept; the "
        "inner folds validate so, since their estimate reads only their held-out tasks)",
    )
    blends: list[float] = opt([0.25, 0.5, 0.75], "candidates start + a * (map - start) per epoch ([]: none)")
    zero_shot_folds: int = opt(3, "inner folds that choose and rate the map unseen tasks get (0: none)")
    zero_shot_epochs: int = opt(2, "epochs of each inner fold (the zero-shot map is one of the first this-many)")
    zero_shot_train: float = opt(0.5, "share of n_train each inner fold's map trains on")
    zero_shot_min_tasks: int = opt(5, "fewest training tasks the inner folds run on (fewer: unseen tasks get the prior)")
    fallback: Fallback = opt(
        "auto",
        "what unseen tasks get when nothing of the map is shown to carry: the non-learned alignment "
        "(depth or role) with the higher mean val CPR on the training tasks (auto), or the one named",
    )
    patience: int = opt(0, "stop after this many epochs with no better kept map on val (0: never)")
    lr: float = opt(0.05, "Adam learning rate")
    temperature: float = opt(1.0, "mask = sigmoid((s @ W + b) / temperature)")
    normalise: Normalise = opt("zscore", "per-task normalisation of the source scores")
    init_std: float = opt(0.01, "std of W's noise at the start")
    init: Init = opt("depth", "W's start: init_gain * the relative-depth map (+ noise), or noise")
    init_gain: float = opt(6.0, "scale of the relative-depth start")
    anchor: float = opt(1.0, "+ anchor * mean over target nodes of |W[:, j] - W_init[:, j]|^2")
    offset_anchor: float = opt(
        3.0,
        "features map: + offset_anchor * mean over target nodes of g(psi_j)^2, g the shared offset "
        "(0 at the start), so that it cannot flatten the ranking into depth plateaus",
    )
    band: float | None = opt(
        None,
        "dense map: W moves from its start only between nodes of the same kind whose layers lie within "
        "this relative depth of each other (0: overlapping layers; default: everywhere)",
    )
    band_kinds: BandKinds = opt(
        "same", "band: W moves between nodes of the same kind only (same), or of any kinds (any)"
    )
    offset: bool = opt(True, "the per-target offset b is learned (off: b stays 0 and only W is trained)")
    max_epochs: int = opt(6, "epochs (when resuming a run: extends it)")
    seed: int = opt(0, "map initialisation and batch order")
    data_seed: int = opt(0, "the tasks' train/val/test split (the toy ladders were trained on seed 0's)")
    model_seed: int = opt(0, "weights of NAME:random models")
    val_fractions: list[float] = opt([0.02, 0.05, 0.1, 0.2], "MIB fractions logged as val/faithfulness@f")
    out: str = opt("checkpoints", "checkpoint root (run folders and the score cache)", output="folder")
    run: str | None = opt(None, "run name (default: from the hold-outs and the seed)")
    cache: str | None = opt(None, "source/target score and role cache (default: OUT/cache)", output="folder")
    device: str = opt("auto", "cpu, cuda, cuda:N, or auto (CUDA when visible)")
    dtype: Dtype = opt("float32", "the models' dtype")
    devices: int = opt(
        1,
        "processes training the map, one device each (with strategy ddp): each holds the frozen "
        "target, the training batches are sharded, the map's gradients all-reduced",
    )
    num_nodes: int = opt(1, "machines running `devices` processes each (strategy ddp)")
    strategy: Strategy = opt("auto", "ddp: Lightning's distributed data parallel (needed for devices > 1)")
    accumulate_grad_batches: int = opt(
        1, "batches per optimizer step (their gradients averaged: what `devices` processes do at once)"
    )
    max_rows: int | None = opt(
        None,
        "memory budget of a curve training step: prompt rows per forward pass, its circuit sizes "
        "stacked along the batch (default: every size in one pass); the same loss and gradient",
    )
    sizes_per_step: int | None = opt(
        None,
        "curve objective: circuit sizes drawn per training step, in proportion to their weights (an "
        "unbiased estimate of the full loss at a fraction of its passes; default: every size)",
    )
    log_every_n_steps: int = opt(5, "TensorBoard logging interval (steps)")

    @property
    def train_tasks(self) -> list[str]:
        return [t for t in self.tasks if t not in self.holdout]

    @property
    def eval_tasks(self) -> list[str]:
        return [*self.train_tasks, *[t for t in self.holdout if t not in self.train_tasks]]

    @property
    def added_holdouts(self) -> list[str]:
        """Hold-outs not among `tasks`: evaluated zero-shot although `tasks` did not name them."""
        return [t for t in self.holdout if t not in self.tasks]

    @property
    def pair_list(self) -> list[tuple[str, str]]:
        """The (source, target) pairs trained on: `pairs`, or the one pair `src -> tgt`."""
        return [split_pair(p) for p in self.pairs] if self.pairs else [(self.src, self.tgt)]

    @property
    def cache_dir(self) -> Path:
        return Path(self.cache) if self.cache else Path(self.out) / "cache"

    def run_name(self) -> str:
        from dfa.core.tasks import run_name

        return run_name(self.run, [*self.tasks, *self.holdout], self.train_tasks, self.holdout, self.seed)

    def run_dir(self) -> Path:
        pairs = "+".join(f"{safe_name(s)}__{safe_name(t)}" for s, t in self.pair_list)
        return Path(self.out) / pairs / self.run_name()

    def check(self) -> TrainConfig:
        from dfa.core.models import parse_spec, resolve_device
        from dfa.core.tasks import check_files

        check_types(self)
        self.check_pairs()
        for src, tgt in self.pair_list:
            parse_spec(src)  # an unknown model name fails here, before any work
            parse_spec(tgt)
        # every task read (a task file checked against the models' tokenizers) before any model loads
        check_files([*self.tasks, *self.holdout], [m for p in self.pair_list for m in p])
        if not self.train_tasks:
            raise ConfigError(
                f"Every task is held out ({', '.join(self.holdout)}): train on at least one task "
                "(`tasks` lists the tasks, `holdout` removes some for zero-shot evaluation)."
            )
        for name in (
            "n_src",
            "n_train",
            "n_val",
            "batch_size",
            "max_epochs",
            "ig_steps",
            "log_every_n_steps",
            "devices",
            "num_nodes",
            "accumulate_grad_batches",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
        bad = [f for f in self.val_fractions if f not in FRACTIONS]
        if bad:
            raise ConfigError(f"val_fractions must be among the MIB fractions {list(FRACTIONS)}, not {bad}.")
        if min(self.sparsity, self.anchor, self.offset_anchor) < 0 or self.lr <= 0 or self.temperature <= 0:
            raise ConfigError(
                "lr and temperature must be positive; sparsity, anchor and offset_anchor non-negative."
            )
        if self.band is not None and (self.band < 0 or self.map_kind != "dense"):
            raise ConfigError(f"band is a non-negative relative depth of a dense map, got {self.band}.")
        if self.validate == "holdout" and not self.holdout:
            raise ConfigError(
                "validate: holdout scores only the held-out tasks, and this run holds none out: "
                "give `holdout`, or validate: all."
            )
        if not self.offset and self.map_kind != "dense":
            raise ConfigError("offset: false is for a dense map (a features map computes its b).")
        got = (self.zero_shot_folds, self.zero_shot_epochs, self.zero_shot_train, self.zero_shot_min_tasks)
        if got[0] < 0 or got[1] < 1 or not 0 < got[2] <= 1 or got[3] < 2:
            raise ConfigError(
                "zero_shot_folds >= 0, zero_shot_epochs >= 1, zero_shot_train in (0, 1], zero_shot_min_tasks >= 2 "
                f"(a fold holds one task out and trains on another); got {got}."
            )
        if any(not 0 < a < 1 for a in self.blends):
            raise ConfigError(f"blends must lie in (0, 1) (0: the start, 1: the map), got {self.blends}.")
        if self.topk_tau <= 0 or self.patience < 0 or self.source_resamples < 0:
            raise ConfigError("topk_tau must be positive; patience and source_resamples non-negative.")
        try:
            resolve_device(self.device)
        except DfaError as err:
            raise ConfigError(f"Setting 'device': {err}") from None
        if self.max_rows is not None and self.max_rows < 1:
            raise ConfigError(f"max_rows must be at least 1 (prompt rows per pass), got {self.max_rows}.")
        if self.sizes_per_step is not None and self.sizes_per_step < 1:
            raise ConfigError(
                f"sizes_per_step must be at least 1 (circuit sizes drawn per step), got {self.sizes_per_step}."
            )
        if self.devices * self.num_nodes > 1 and self.strategy != "ddp":
            raise ConfigError(
                f"devices {self.devices} x num_nodes {self.num_nodes} processes need strategy ddp "
                "(Lightning's distributed data parallel)."
            )
        return self

    def check_pairs(self) -> None:
        """`pairs` parsed (SRC:TGT each, no repeats); a dense map refuses several; `src` and `tgt`
        set to the first pair's."""
        pairs = self.pair_list
        if len(set(pairs)) != len(pairs):
            raise ConfigError(f"pairs lists a pair twice: {self.pairs}.")
        if len(pairs) > 1 and self.map_kind == "dense":
            raise ConfigError(
                f"A dense map is one pair's [n_src, n_tgt] matrix: it cannot train on {len(pairs)} pairs "
                f"({', '.join(self.pairs)}). Set map_kind to features (--map-kind features), or name one pair."
            )
        self.src, self.tgt = pairs[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_pair(text: str) -> tuple[str, str]:
    """`SRC:TGT` -> (SRC, TGT); a model name may hold ':' itself (`gpt2:random`), so the pair is
    cut at the ':' that leaves a known model on both sides, else at the first ':'."""
    from dfa.core.models import parse_spec

    cuts = [i for i, ch in enumerate(text) if ch == ":"]
    if not cuts:
        raise ConfigError(f"A model pair is written SRC:TGT (e.g. toy-gpt2-s:toy-gpt2-m), got {text!r}.")
    for i in cuts:
        src, tgt = text[:i], text[i + 1 :]
        try:
            parse_spec(src)
            parse_spec(tgt)
        except DfaError:
            continue
        return src, tgt
    raise ConfigError(
        f"Model pair {text!r}: no cut at a ':' leaves a known model on both sides (see `dfa models`)."
    )


FIELDS = {f.name for f in fields(TrainConfig)}
# Settings renamed since maps were first saved: old map.json / config.yaml files still load.
RENAMED = {"accelerator": "device"}


def config_path(path: str | Path) -> Path:
    """A config file: a path, or the name of a shipped config (`toy`, `configs/toy.yaml`) found in
    the package when no such file is here (so an installed `dfa` works from any folder)."""
    p = Path(path)
    if p.is_file():
        return p
    shipped = CONFIGS_DIR / (p.name if p.suffix else f"{p.name}.yaml")
    if shipped.is_file() and (p.parent in (Path("."), Path("configs"))):
        return shipped
    known = ", ".join(sorted(q.stem for q in CONFIGS_DIR.glob("*.yaml")))
    raise ConfigError(f"No config file {path} (shipped configs, usable by name: {known}).")


def read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = config_path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, not {type(data).__name__}.")
    data = upgrade(data)
    if set(data) - FIELDS:
        raise unknown_keys(path, set(data) - FIELDS, FIELDS)
    return data


def upgrade(values: dict[str, Any]) -> dict[str, Any]:
    """Old setting names -> current ones (`accelerator` -> `device`)."""
    out = dict(values)
    for old, new in RENAMED.items():
        if old in out:
            value = out.pop(old)
            out.setdefault(new, "cuda" if value == "gpu" else value)
    return out


def make_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the YAML file, then `overrides` (flags; None means not given)."""
    values: dict[str, Any] = read_yaml(path) if path else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    values = upgrade(values)
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        raise ConfigError(f"Unknown setting(s) {', '.join(unknown)}.")
    return TrainConfig(**values).check()


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    import yaml

    text = yaml.safe_dump(data, sort_keys=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def safe_name(text: str) -> str:
    """A model name as a folder name (`org/name@rev` -> `org_name@rev`)."""
    return re.sub(r"[^A-Za-z0-9._@=+-]", "_", text)


C = TypeVar("C")


def build(cls: type[C], values: dict[str, Any]) -> C:
    """A config dataclass from `values` (None: not given, the default stays), types checked."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"Unknown setting(s) {', '.join(unknown)} for {cls.__name__}.")
    config = cls(**{k: v for k, v in values.items() if v is not None})
    check_types(config)
    return config
