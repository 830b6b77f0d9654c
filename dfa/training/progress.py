"""What a run prints while it trains: Lightning's progress bar on a terminal; in a log (stdout
not a terminal), one line per epoch instead, as bars redrawn with carriage returns glue onto the
lines that follow; and, at the end of a run, the val CPRs selection chose among.

`EpochLines` writes the lines, `interactive` tells a terminal. Per-batch bars (`tqdm`,
`disable=None`) show only on a terminal; evaluation prints one line per task and scoring
(`dfa.experiments.transfer.evaluate_run`).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf
from lightning.pytorch.trainer.states import TrainerFn

SHOWN = ("val/loss", "val/cpr", "val/cpr_zero_shot")  # in this order, when logged


def interactive() -> bool:
    """Whether stdout is a terminal (a progress bar redraws there; in a file it is noise)."""
    return sys.stdout.isatty()


def epoch_label(trainer: pl.Trainer) -> str:
    """`epoch E/N`, counted from 1, as the log lines and the selection report count them."""
    return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"


class EpochBar(TQDMProgressBar):
    """Lightning's bar on a terminal, counting epochs as the log lines do (`epoch 1/6`, not
    `Epoch 0`) and without the logger's version field (the TensorBoard folder's name, cut to its
    last characters: `v_num=oard`)."""

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        # TQDMProgressBar's own, with our label: calling it would first draw `Epoch 0`.
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        self.train_progress_bar.reset()
        self.train_progress_bar.total = convert_inf(self.total_train_batches)
        self.train_progress_bar.initial = 0
        self.train_progress_bar.set_description(epoch_label(trainer))

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # Close the bars now (Ctrl-C, a crash): left open, they redraw below the message that follows.
        for bar in (self._train_progress_bar, self._val_progress_bar):
            if bar is not None:
                bar.close()

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


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
            f"{epoch_label(trainer)}: {trainer.global_step} steps, "
            f"{train}{values} ({time.perf_counter() - self.started:.0f}s)",
            flush=True,
        )


def selection_report(history: list[dict[str, Any]], kept: dict[str, Any]) -> str:
    """Val CPR per training task: the start, each epoch, and which map was kept."""
    if not history:
        return f"kept: epoch {kept['epoch']} ({kept['why']})"
    tasks = list(history[0]["val_cpr"])
    key = "select_cpr" if "select_cpr" in history[0] else "val_cpr"  # older runs: uncapped only
    head = "val CPR per training task, faithfulness capped at 1 as selection reads it"
    lines = [f"{head} (epoch 0 = the start; ExA = start + A * (epoch E's map - start)):"]
    pairs = list(dict.fromkeys(t.rpartition("/")[0] for t in tasks if "/" in t))
    if pairs:  # several pairs: columns `pN/task`
        lines.append("  pairs: " + ", ".join(f"p{i} = {p}" for i, p in enumerate(pairs, 1)))
    short = {
        t: (f"p{pairs.index(t.rpartition('/')[0]) + 1}/" if "/" in t else "") + t.rpartition("/")[2]
        for t in tasks
    }
    lines.append("  epoch " + "".join(f"{short[t][:12]:>13}" for t in tasks) + "         mean")
    alpha = kept.get("blend", 1.0)
    for h in history:
        rows = [(h, 1.0, f"{h['epoch']:>5}")]
        rows += [(b, b["alpha"], f"{h['epoch']}x{b['alpha']:g}") for b in h.get("blends", [])]
        for row, a, label in rows:
            chosen = h["epoch"] == kept["epoch"] and a == alpha
            if a < 1 and not chosen:
                continue  # a blend is shown when it is the kept map
            flag = " *" if chosen else ("  (below start)" if row["below_start"] else "")
            cells = "".join(f"{row[key][t]:>13.3f}" for t in tasks)
            lines.append(f"  {label:>5} {cells} {row['mean']:>12.3f}{flag}")
    lines.append(f"kept: epoch {kept['epoch']} (*): {kept['why']}")
    return "\n".join(lines)
