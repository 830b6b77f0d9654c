"""A training run: the run folder, atomic checkpoints, and `train()`."""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from dfa.config import ConfigError, TrainConfig, make_config, write_yaml
from dfa.core.errors import DfaError
from dfa.core.graph import NodeGraph
from dfa.core.io import atomic_write
from dfa.store import ModelPool
from dfa.training.data import TransferData
from dfa.training.module import MapTrainer


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary file and renamed: a kill mid-write leaves the
    previous checkpoint intact."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = True) -> dict[str, Any]:
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


CKPT = "last.ckpt"
BEST = "best.ckpt"  # the epoch with the best val/select (TrainConfig.keep = "best")


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
                f"Run folder {run} already holds a run. Set `resume` to continue it, give the `run` "
                "setting another name for a new run beside it, or set `overwrite` to replace it."
            )
        shutil.rmtree(run)
    return config, run


def keep_map(module: MapTrainer, config: TrainConfig, run: Path, last_epoch: int) -> dict[str, Any]:
    """Put the kept map in `module.map` (TrainConfig.keep) and say which epoch it is and why."""
    if config.keep == "last" or not module.history:
        why = "the last epoch (keep: last)" if config.keep == "last" else "the last epoch (no validation ran)"
        return {"epoch": last_epoch, "why": why}
    entry = module.kept()
    epoch = entry["epoch"]
    if epoch == 0:
        module.restore_start()
        why = "no epoch's val CPR beat the start's with every training task at or above its start"
    else:
        if epoch != last_epoch:
            state = torch.load(run / BEST, map_location="cpu", weights_only=True)["state_dict"]
            module.load_state_dict(state)
        why = "best mean val CPR over the training tasks, none below its start"
    return {"epoch": epoch, "why": why, "val_cpr": entry["val_cpr"], "mean_val_cpr": entry["mean"]}


def selection_report(module: MapTrainer, kept: dict[str, Any]) -> str:
    """Val CPR per training task: the start, each epoch, and which map was kept."""
    if not module.history:
        return f"kept: epoch {kept['epoch']} ({kept['why']})"
    tasks = list(module.history[0]["val_cpr"])
    lines = ["val CPR per training task (epoch 0 = the start):"]
    lines.append("  epoch " + "".join(f"{t[:12]:>13}" for t in tasks) + "         mean")
    for h in module.history:
        flag = " *" if h["epoch"] == kept["epoch"] else ("  (below start)" if h["below_start"] else "")
        cells = "".join(f"{h['val_cpr'][t]:>13.3f}" for t in tasks)
        lines.append(f"  {h['epoch']:>5} {cells} {h['mean']:>12.3f}{flag}")
    lines.append(f"kept: epoch {kept['epoch']} (*): {kept['why']}")
    return "\n".join(lines)


def make_trainer(
    config: TrainConfig, run: Path, pool: ModelPool, progress: bool, callbacks: Sequence[pl.Callback]
) -> pl.Trainer:
    """The Lightning Trainer of a run: TensorBoard in the run folder, `last.ckpt` replaced
    (atomically) after every epoch, `best.ckpt` on `val/select`, early stopping when asked."""
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
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
    return pl.Trainer(
        max_epochs=config.max_epochs,
        accelerator=pool.device.type,
        devices=1,
        logger=TensorBoardLogger(str(run), name="", version="tensorboard", default_hp_metric=False),
        callbacks=[
            ModelCheckpoint(
                dirpath=run, filename=CKPT[: -len(".ckpt")], save_top_k=1, enable_version_counter=False
            ),
            best,
            *(stop if config.patience else []),
            *callbacks,
        ],
        plugins=[AtomicCheckpointIO()],
        num_sanity_val_steps=0,
        log_every_n_steps=config.log_every_n_steps,
        enable_progress_bar=progress,
        enable_model_summary=False,
        default_root_dir=str(run),
    )


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
    `pool` (default: a new pool on the config's device and dtype)."""
    config, run = prepare_run(config, resume, overwrite, max_epochs)
    run.mkdir(parents=True, exist_ok=True)
    write_yaml(run / "config.yaml", config.to_dict())
    pl.seed_everything(config.seed, verbose=False)
    pool = pool or ModelPool(config.device, config.dtype)
    data = TransferData(config, pool)
    data.prepare_data()
    data.setup("fit")
    assert data.src_graph is not None
    module = MapTrainer(
        config.to_dict(), data.src_graph.mapped_names, NodeGraph.from_model(data.target).mapped_names
    )
    trainer = make_trainer(config, run, pool, progress, callbacks)
    start = time.perf_counter()
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r".*treespec.*")  # lightning's own deprecation notice
    if resume:
        print(f"resuming {run} from {CKPT}", flush=True)
    else:  # the start: val CPR of the map before training, what no kept map may fall below
        trainer.validate(module, datamodule=data, verbose=False)
    trainer.fit(module, datamodule=data, ckpt_path=str(run / CKPT) if resume else None, weights_only=True)
    if trainer.interrupted:
        raise DfaError(f"Training was interrupted; continue it with `resume` set (run folder {run}).")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    kept = keep_map(module, config, run, trainer.current_epoch)
    if progress:
        print(selection_report(module, kept), flush=True)
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
        "final_metrics": metrics,  # the last epoch's logged values (the kept map's: `kept`)
        "kept": kept,
        "val_history": module.history,
        "input_node": "kept (not mapped)",
        "versions": _versions(),
    }
    module.map.save(run, meta)
    return run
