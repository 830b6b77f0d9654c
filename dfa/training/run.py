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
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

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
    trainer = pl.Trainer(
        max_epochs=config.max_epochs,
        accelerator=pool.device.type,
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
        raise DfaError(f"Training was interrupted; continue it with `resume` set (run folder {run}).")
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
