"""What a run prints while it trains: Lightning's progress bar on a terminal; in a log (stdout
not a terminal), one line per epoch instead, as bars redrawn with carriage returns glue onto the
lines that follow."""

from __future__ import annotations

import sys
import time

import lightning.pytorch as pl
from lightning.pytorch.trainer.states import TrainerFn

SHOWN = ("val/loss", "val/cpr", "val/cpr_zero_shot")  # in this order, when logged


def interactive() -> bool:
    """Whether stdout is a terminal (a progress bar redraws there; in a file it is noise)."""
    return sys.stdout.isatty()


class EpochLines(pl.Callback):
    """One line per validation: the start (before training), then each epoch with its steps, its
    mean training loss, the val loss and val CPR, and its seconds."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.losses: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.started = time.perf_counter()
        self.losses = []

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs, *args) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.losses.append(float(loss))

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        values = ", ".join(f"{k} {float(m[k]):.3f}" for k in SHOWN if k in m)
        if trainer.state.fn != TrainerFn.FITTING:
            print(f"start (before training): {values}", flush=True)
            return
        train = f"train/loss {sum(self.losses) / len(self.losses):.3f} (epoch mean), " if self.losses else ""
        print(
            f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {trainer.global_step} steps, "
            f"{train}{values} ({time.perf_counter() - self.started:.0f}s)",
            flush=True,
        )
