"""A training run, start to end: `train()` fits the map (atomic checkpoints, the Lightning trainer),
keeps one epoch's map (`keep_map`), then trains the inner folds (`run_folds`, each one a run of its
own) and saves the zero-shot map (`add_zero_shot`); what the folds estimate and choose is
`dfa.training.zero_shot`, what unseen tasks get when nothing carries `dfa.training.fallback`, the
run folder's life (finished, prepared, cleaned) `dfa.training.run_folder`.

Several processes for one run (DDP): `launch_rank` (rank 0 owns the run folder; the others follow
it, `dfa.training.run_folder.follow_run`) and `make_trainer` (with TensorBoard's
`LearningRateMonitor`).
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from dfa.config import TrainConfig, write_yaml
from dfa.core.cost import Cost
from dfa.core.errors import DfaError
from dfa.core.graph import NodeGraph
from dfa.core.io import atomic_write
from dfa.core.tasks import task_sources
from dfa.report.zero_shot import zero_shot_text
from dfa.store import ModelPool
from dfa.training.data import TransferData
from dfa.training.fallback import add_fallback, choose_fallback, ensure_fallback, needs_fallback
from dfa.training.module import MapTrainer
from dfa.training.progress import EpochBar, EpochLines, interactive, selection_report
from dfa.training.run_folder import (
    BEST,
    CKPT,
    drop_relogged_events,
    event_files,
    finished_run,
    follow_run,
    prepare_run,
)
from dfa.training.stops import TrainingInterrupted, stop_signals
from dfa.training.zero_shot import (
    AGAINST,
    FOLDS,
    estimate,
    fold_config,
    fold_tasks,
    save_zero_shot,
    too_few_tasks,
)


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


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("dfa", "torch", "lightning", "transformers", "transformer-lens"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def keep_map(module: MapTrainer, config: TrainConfig, run: Path, last_epoch: int) -> dict[str, Any]:
    """Put the kept map in `module.map` (TrainConfig.keep) and say which epoch it is and why."""
    if config.keep == "last" or config.validate == "holdout" or not module.history:
        why = (
            "the last epoch (keep: last)" if config.keep == "last"
            else "the last epoch (validate: holdout, no training task validated)" if module.history
            else "the last epoch (no validation ran)"
        )  # fmt: skip
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
    if lead and not overwrite and (info := finished_run(config, resume, max_epochs)) is not None:
        print(f"{config.run_dir()} already holds this run, trained to its end: nothing to do", flush=True)
        if needs_fallback(info):  # trained before the fallback existed: chosen now
            ensure_fallback(config.run_dir(), pool or ModelPool(rank_device(config), config.dtype))
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
            with ExitStack() as watching:  # every target's passes: the training cost (`dfa.core.cost`)
                cost = Cost()
                for tgt in dict.fromkeys(t for _, t in config.pair_list):
                    watching.enter_context(cost.watch(data.pool.get(tgt, config.model_seed), tgt))
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
    # This attempt's passes (a resumed run's since it resumed); the inner folds' are added to it.
    record["training_cost"] = cost.to_json()
    # What the source scores it read cost (every pair's source, every task), cached or not.
    record["source_cost"] = sum((p.source_cost for p in data.pairs), Cost()).to_json()
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


def add_zero_shot(
    config: TrainConfig, run: Path, module: MapTrainer, pool: Any, record: dict[str, Any], progress: bool
) -> dict[str, Any]:
    """After a run's training: its inner folds, its zero-shot map in `run/zero_shot/` and the
    estimate (with the fallback when nothing carries, `dfa.training.fallback`) added to `record`
    (what `map.json` will hold), which is returned; printed with `progress`."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # The other processes of a distributed run have returned: the inner folds run here alone.
        torch.distributed.destroy_process_group()
    zs = run_folds(config, run, pool, progress, set(module.epoch_params))
    if zs is not None:
        record["zero_shot"] = zs
        record["training_cost"] = Cost().add(record.get("training_cost")).add(zs.get("cost")).to_json()
        if zs["epoch"] == 0:  # nothing shown to carry: unseen tasks get the fallback
            record.update(add_fallback(record, choose_fallback(config, pool, progress)))
            zs = record["zero_shot"]
        save_zero_shot(module, run, record, zs)
    if progress and config.zero_shot_folds:
        print(zero_shot_text(zs), flush=True)
    return record


def run_folds(
    config: TrainConfig, run: Path, pool: Any, progress: bool = True, epochs: set[int] | None = None
) -> dict[str, Any] | None:
    """Train the inner folds (each resumed or reused when its folder holds it) and estimate
    (`epochs`: those the run holds the map of); None when the run has fewer than two training
    tasks (nothing to hold out); `too_few_tasks`' record, with no folds, when it has fewer than
    `zero_shot_min_tasks`."""
    tasks = config.train_tasks
    if config.zero_shot_folds == 0 or len(tasks) < 2:
        return None
    if len(tasks) < config.zero_shot_min_tasks:
        return too_few_tasks(tasks, config)
    groups = fold_tasks(tasks, config.zero_shot_folds)
    # A fold has few batches: no Lightning notice about its logging interval.
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
    configs = [fold_config(config, held, i, run / FOLDS) for i, held in enumerate(groups, 1)]
    histories, seconds, cost = [], 0.0, Cost()
    for i, (held, fc) in enumerate(zip(groups, configs, strict=True), 1):
        start = time.perf_counter()
        info = finished_run(fc)
        if info is None:
            # A fold interrupted, or one of a run since resumed with more epochs: continued to its epochs.
            resume = (fc.run_dir() / CKPT).is_file()
            train(fc, resume, overwrite=not resume, max_epochs=fc.max_epochs, progress=False, pool=pool)
            info = finished_run(fc)
        if info is None:
            raise DfaError(f"The inner fold in {fc.run_dir()} left no readable map.json.")
        histories.append(info.get("val_history") or [])
        cost.add(info.get("training_cost"))
        seconds += time.perf_counter() - start
        if progress:
            print(
                f"zero-shot fold {i}/{len(groups)}: a map trained without {', '.join(held)} "
                f"({fc.max_epochs} epochs, {fc.n_train} prompts per task) in {time.perf_counter() - start:.0f}s",
                flush=True,
            )
    result = estimate(histories, config.seed, epochs)
    return {
        "folds": groups,
        "epochs": configs[0].max_epochs,
        "n_train": configs[0].n_train,
        "n_val": config.n_val,
        "seconds": round(seconds, 1),
        "cost": cost.to_json(),  # the folds' training passes (`dfa.core.cost`)
        "against": AGAINST,
        **result,
    }
