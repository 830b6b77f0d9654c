"""A training run: the run folder, atomic checkpoints, and `train()`."""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from dfa.config import ConfigError, TrainConfig, make_config, read_yaml, upgrade, write_yaml
from dfa.core.graph import NodeGraph
from dfa.core.io import atomic_write
from dfa.core.tasks import task_sources
from dfa.store import ModelPool
from dfa.training.data import TransferData
from dfa.training.module import MapTrainer
from dfa.training.progress import EpochBar, EpochLines, interactive, selection_report
from dfa.training.stops import TrainingInterrupted, stop_signals
from dfa.training.zero_shot import add_zero_shot


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary file and renamed: a kill mid-write leaves the
    previous checkpoint intact."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = True) -> dict[str, Any]:
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


def launch_rank(config: TrainConfig) -> int:
    """This process's rank in a distributed run, known before the Trainer starts from the
    variables its launcher sets (Lightning's for the processes it starts, torchrun's, a
    scheduler's `NODE_RANK`); 0 in a one-process run. Rank 0 owns the run folder."""
    import os

    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return int(os.environ.get("NODE_RANK", "0")) * config.devices + local


def follow_run(config: TrainConfig, resume: bool, max_epochs: int | None) -> tuple[TrainConfig, Path, bool]:
    """`prepare_run` for a process of rank > 0: rank 0 has prepared the folder (and cleaned it),
    so this one only reads the saved config and whether there is a checkpoint to resume from."""
    run = config.run_dir()
    if resume and (run / "config.yaml").is_file():
        config = make_config(run / "config.yaml", max_epochs=max_epochs)
    return config, run, resume and (run / CKPT).is_file()


CKPT = "last.ckpt"
BEST = "best.ckpt"  # the epoch with the best val/select (TrainConfig.keep "mean" or "best")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("dfa", "torch", "lightning", "transformers", "transformer-lens"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def _planned(values: dict[str, Any]) -> dict[str, Any]:
    """A run's settings as `TrainConfig.to_dict()` would give them (old names upgraded, missing
    fields at their defaults); `out` left out, as the run folder already says where it is."""
    values = TrainConfig(**upgrade(dict(values))).to_dict()
    values.pop("out", None)
    return values


def finished_run(
    config: TrainConfig, resume: bool = False, max_epochs: int | None = None
) -> dict[str, Any] | None:
    """The `map.json` of the run folder when it already holds this run trained to its end, so
    there is nothing to do; else None. Without `resume` the run is this one when its settings
    are `config`'s; with `resume`, when its `map.json` records the folder's `config.yaml` (the
    last training launched there finished) and `max_epochs` asks for no more epochs than it
    planned."""
    run = config.run_dir()
    info_path, saved = run / "map.json", run / "config.yaml"
    if not (info_path.is_file() and (run / "map.safetensors").is_file()):
        return None
    try:
        info = json.loads(info_path.read_text())
        done = _planned(info["hyperparameters"])
        planned = _planned(read_yaml(saved)) if resume else _planned(config.to_dict())
    except (OSError, ValueError, KeyError, TypeError, ConfigError):
        return None  # a record that cannot be read is not taken for a finished run
    if done != planned:
        return None
    if resume and max_epochs is not None and max_epochs > planned["max_epochs"]:
        return None
    return info


def clean_leftovers(run: Path, fresh: bool, step: int | None = None) -> list[Path]:
    """Remove what a crashed attempt left in `run`: temporary files of interrupted atomic writes
    (`.last.ckpt.*.tmp`, ...); for a run that starts from the beginning (`fresh`), its TensorBoard
    events and best checkpoint too; for a run resumed from a checkpoint at global step `step`,
    the events logged after that step. Returns the files removed or rewritten. (Events of the
    step itself are dropped once the resumed run logs them again: `drop_relogged_events`.)"""
    removed = [p for p in run.glob(".*.tmp") if p.is_file()]
    for p in removed:
        p.unlink()
    if fresh:
        for p in (run / "tensorboard", run / BEST):
            if p.exists():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
                removed.append(p)
    elif step is not None:
        removed += [p for p in sorted(event_files(run)) if _rewrite_events(p, lambda e, _: e.step <= step)]
    return removed


def event_files(run: Path) -> set[Path]:
    return set((run / "tensorboard").glob("events.out.tfevents.*"))


def _events(path: Path) -> list[tuple[bytes, Any]]:
    """The records of a TensorBoard event file, raw and parsed."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event

    return [(r, Event.FromString(r)) for r in RawEventFileLoader(str(path)).Load()]


def _rewrite_events(path: Path, keep: Callable[[Any, str], bool]) -> bool:
    """Keep the events of a file whose summary holds a value (tag) that `keep(event, tag)`
    accepts, and those without values (the file header); True when any were dropped."""
    from tensorboard.summary.writer.record_writer import RecordWriter

    records = _events(path)
    kept = [r for r, e in records if not e.summary.value or any(keep(e, v.tag) for v in e.summary.value)]
    if len(kept) == len(records):
        return False

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            writer = RecordWriter(f)
            for r in kept:
                writer.write(r)

    atomic_write(path, write)
    return True


def drop_relogged_events(old: set[Path], new: set[Path]) -> list[Path]:
    """Remove from the TensorBoard event files `old` (a crashed attempt's) every value that the
    files `new` (the resumed run's) log again under the same tag and step: what the attempt
    logged after its last checkpoint, which TensorBoard would otherwise show twice. Returns the
    files rewritten."""
    again = {(v.tag, e.step) for path in new for _, e in _events(path) for v in e.summary.value}
    return [p for p in sorted(old) if _rewrite_events(p, lambda e, tag: (tag, e.step) not in again)]


def prepare_run(
    config: TrainConfig, resume: bool = False, overwrite: bool = False, max_epochs: int | None = None
) -> tuple[TrainConfig, Path, bool]:
    """The run folder, cleaned of what a crash left: refuse to clobber a run unless asked; on
    `resume`, the run's own saved config (with `max_epochs` raised when given). Returns the
    config, the folder and whether training continues from its last checkpoint (a run stopped
    before its first checkpoint starts from the beginning)."""
    run = config.run_dir()
    saved = run / "config.yaml"
    if resume:
        if saved.is_file():
            config = make_config(saved, max_epochs=max_epochs)
        if (run / CKPT).is_file():
            step = torch.load(run / CKPT, map_location="cpu", weights_only=True).get("global_step")
            clean_leftovers(run, fresh=False, step=step)
            return config, run, True
        if not run.is_dir() or (run / "map.json").is_file():
            raise ConfigError(f"Nothing to resume in {run}: no {CKPT} there (was the run started?).")
        print(
            f"no {CKPT} in {run} yet (the run stopped before its first epoch ended): "
            "starting it from the beginning",
            flush=True,
        )
    elif (run / CKPT).is_file() or (run / "map.json").is_file():
        if not overwrite:
            raise ConfigError(
                f"Run folder {run} already holds a run. Set `resume` to continue it, give the `run` "
                "setting another name for a new run beside it, or set `overwrite` to replace it."
            )
        shutil.rmtree(run)
    if run.is_dir():
        clean_leftovers(run, fresh=True)
    return config, run, False


def keep_map(module: MapTrainer, config: TrainConfig, run: Path, last_epoch: int) -> dict[str, Any]:
    """Put the kept map in `module.map` (TrainConfig.keep) and say which epoch it is and why."""
    if config.keep == "last" or not module.history:
        why = "the last epoch (keep: last)" if config.keep == "last" else "the last epoch (no validation ran)"
        return {"epoch": last_epoch, "why": why}
    entry = module.kept()
    epoch = entry["epoch"]
    guard = config.keep != "mean"
    if epoch == 0:
        module.restore_start()
        why = (
            "no epoch's val CPR beat the start's with every training task at or above its start"
            if guard
            else "no epoch's mean val CPR beat the start's (keep: mean)"
        )
    else:
        if epoch != last_epoch:
            state = torch.load(run / BEST, map_location="cpu", weights_only=True)["state_dict"]
            module.load_state_dict(state)
        alpha = entry["alpha"]
        if alpha < 1:
            module.set_blend(alpha)
        which = "" if alpha == 1 else f" (the blend start + {alpha:g} * (epoch {epoch}'s map - start))"
        why = (
            f"best mean val CPR over the training tasks, none below its start{which}"
            if guard
            else f"best mean val CPR over the training tasks (keep: mean){which}"
        )
    return {
        "epoch": epoch,
        "blend": entry["alpha"],
        "why": why,
        "val_cpr": entry["val_cpr"],
        "select_cpr": entry.get("select_cpr", entry["val_cpr"]),  # faithfulness capped at 1
        "mean_val_cpr": entry["mean"],  # of `select_cpr`: what selection maximised
    }


def make_trainer(
    config: TrainConfig, run: Path, pool: ModelPool, progress: bool, callbacks: Sequence[pl.Callback]
) -> pl.Trainer:
    """The Lightning Trainer of a run: TensorBoard in the run folder (with the learning rate),
    `last.ckpt` replaced (atomically) after every epoch, `best.ckpt` on `val/select`, early
    stopping when asked; with `progress`, a progress bar on a terminal and one line per epoch in
    a log."""
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    best = ModelCheckpoint(
        dirpath=run,
        filename=BEST[: -len(".ckpt")],
        monitor="val/select",
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
    )
    stop = [EarlyStopping("val/select", mode="max", patience=config.patience, check_finite=False)]
    # In a distributed run the processes of rank > 0 print nothing (rank 0 shows the run).
    shown = progress and not (config.devices * config.num_nodes > 1 and launch_rank(config) > 0)
    bar = shown and interactive()
    lines: list[pl.Callback] = [EpochBar()] if bar else [EpochLines()] if shown else []
    return pl.Trainer(
        max_epochs=config.max_epochs,
        accelerator=pool.device.type,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        # The training batches are sharded by the epoch's sampler (`EpochShuffle`); every
        # process validates on every val prompt.
        use_distributed_sampler=False,
        accumulate_grad_batches=config.accumulate_grad_batches,
        logger=TensorBoardLogger(str(run), name="", version="tensorboard", default_hp_metric=False),
        callbacks=[
            best,  # before last.ckpt: a kill between the two writes leaves no last.ckpt newer than best.ckpt
            ModelCheckpoint(
                dirpath=run, filename=CKPT[: -len(".ckpt")], save_top_k=1, enable_version_counter=False
            ),
            *(stop if config.patience else []),
            LearningRateMonitor(logging_interval="epoch"),
            *lines,
            *callbacks,
        ],
        plugins=[AtomicCheckpointIO()],
        num_sanity_val_steps=0,
        log_every_n_steps=config.log_every_n_steps,
        enable_progress_bar=bar,
        enable_model_summary=False,
        default_root_dir=str(run),
    )


def _new_dirs(run: Path) -> list[Path]:
    """`run` and its ancestors that do not exist yet (what `mkdir(parents=True)` would create)."""
    made = []
    while not run.exists() and run != run.parent:
        made.append(run)
        run = run.parent
    return made


def _start(
    config: TrainConfig, run: Path, pool: ModelPool | None, progress: bool, callbacks: Sequence[pl.Callback]
) -> tuple[TransferData, MapTrainer, pl.Trainer]:
    """The run folder with its `config.yaml`, the data (models, source scores) and the trainer.
    A failure here (an offline model, say) removes the folders it made: no empty run is left.
    Processes of rank > 0 leave the folder to rank 0."""
    lead = launch_rank(config) == 0
    made = _new_dirs(run) if lead else []
    try:
        if lead:
            run.mkdir(parents=True, exist_ok=True)
            write_yaml(run / "config.yaml", config.to_dict())
        pl.seed_everything(config.seed, verbose=False)
        pool = pool or ModelPool(rank_device(config), config.dtype)
        data = TransferData(config, pool)
        data.prepare_data()
        data.setup("fit")
        assert data.src_graph is not None
        module = MapTrainer(
            config.to_dict(), data.src_graph.mapped_names, NodeGraph.from_model(data.target).mapped_names
        )
        return data, module, make_trainer(config, run, pool, progress, callbacks)
    except BaseException:
        if made:
            shutil.rmtree(made[0], ignore_errors=True)
            for d in made[1:]:
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
        raise


def rank_device(config: TrainConfig) -> str:
    """The device of this process's models: a distributed run on CUDA gives each process of a
    machine its own GPU (`cuda:LOCAL_RANK`); otherwise the config's device."""
    import os

    from dfa.core.models import resolve_device

    if config.devices > 1 and resolve_device(config.device).type == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return config.device


def _record(
    config: TrainConfig,
    trainer: pl.Trainer,
    module: MapTrainer,
    metrics: dict[str, float],
    kept: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    """`map.json`'s record of a finished run."""
    return {
        "src": config.src,
        "tgt": config.tgt,
        "map_kind": config.map_kind,
        "pairs": [list(p) for p in config.pair_list],  # the pairs trained on (src -> tgt: the first)
        "method": config.method,
        "ablation": config.ablation,
        "tasks": config.train_tasks,
        "holdout": config.holdout,
        "task_files": task_sources(config.eval_tasks),  # path and sha256 of each task file
        "source_scores": {
            "split": "train",
            "n": config.n_src,
            "seed": config.data_seed,
            "ig_steps": config.ig_steps,
        },
        "hyperparameters": config.to_dict(),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "train_seconds": round(seconds, 1),
        "final_metrics": metrics,  # the last epoch's logged values (the kept map's: `kept`)
        "kept": kept,
        "val_history": module.history,
        "input_node": "kept (not mapped)",
        "versions": _versions(),
    }


def train(
    config: TrainConfig,
    resume: bool = False,
    overwrite: bool = False,
    max_epochs: int | None = None,
    progress: bool = True,
    callbacks: Sequence[pl.Callback] = (),
    pool: ModelPool | None = None,
) -> Path:
    """Train a map; returns the run folder (map.safetensors, map.json, config.yaml, TensorBoard
    events, last.ckpt). `resume` continues the run folder's last checkpoint. Models come from
    `pool` (default: a new pool on the config's device and dtype). A run folder that already
    holds this run, finished (`finished_run`), is returned as it is, without training.

    With `devices` x `num_nodes` > 1 (strategy ddp), Lightning starts the other processes of this
    machine by running the same command again; in those (rank > 0) this returns the run folder
    once training ends, and rank 0 alone writes to the folder (checkpoints, events, the map)."""
    lead = launch_rank(config) == 0
    if lead and not overwrite and finished_run(config, resume, max_epochs) is not None:
        print(f"{config.run_dir()} already holds this run, trained to its end: nothing to do", flush=True)
        return config.run_dir()
    if lead:
        config, run, resume = prepare_run(config, resume, overwrite, max_epochs)
    else:
        config, run, resume = follow_run(config, resume, max_epochs)
    with stop_signals() as got:
        try:
            data, module, trainer = _start(config, run, pool, progress, callbacks)
            attempts = event_files(run) if resume and lead else set()  # what a crashed attempt logged
            start = time.perf_counter()
            _fit(trainer, module, data, run, resume, attempts)
        except (KeyboardInterrupt, SystemExit) as stop:
            # Lightning answers Ctrl-C with sys.exit(1) and SIGTERM with a SystemExit of its own.
            if not lead or (isinstance(stop, SystemExit) and stop.code == 0 and not got):
                raise
            raise TrainingInterrupted(run, run / CKPT, got[0] if got else "SIGINT", config.max_epochs) from None
    if trainer.interrupted:
        raise TrainingInterrupted(run, run / CKPT, "SIGINT", config.max_epochs)
    if trainer.global_rank > 0:
        return run
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    kept = keep_map(module, config, run, trainer.current_epoch)
    record = _record(config, trainer, module, metrics, kept, time.perf_counter() - start)
    if progress:
        print(selection_report(module.history, kept), flush=True)
    module.map.save(run, add_zero_shot(config, run, module, data.pool, record, progress))  # map.json last
    return run


def _fit(
    trainer: pl.Trainer, module: MapTrainer, data: TransferData, run: Path, resume: bool, attempts: set[Path]
) -> None:
    """The start's validation (a fresh run) and `fit`, from the last checkpoint when resuming."""
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r".*treespec.*")  # lightning's own deprecation notice
    # Every process computes the same val values from every val prompt: nothing to sync.
    warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting.*")
    if resume:
        print(f"resuming {run} from {CKPT}", flush=True)
    else:  # the start: val CPR of the map before training, what no kept map may fall below
        trainer.validate(module, datamodule=data, verbose=False)
    try:
        trainer.fit(module, datamodule=data, ckpt_path=str(run / CKPT) if resume else None, weights_only=True)
    finally:  # even when this attempt fails too: what it logged replaces the earlier one's
        if attempts:
            drop_relogged_events(attempts, event_files(run) - attempts)
