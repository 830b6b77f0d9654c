"""A training run stopped by a signal: SIGTERM handled as Ctrl-C is, and what the run folder holds
afterwards (which epoch its checkpoint has, whether the folder exists), for the message that says
how to continue."""

from __future__ import annotations

import contextlib
import pickle
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from dfa.core.errors import DfaError


class TrainingInterrupted(DfaError):
    """Training stopped by a signal (SIGINT from Ctrl-C, or SIGTERM): which, and what the run
    folder holds now (`epochs_saved`: the epochs `last.ckpt` holds, None without one;
    `folder_kept`: False when the stop came before the folder was made, which is then removed).
    `exit_code` is the shell's 128 + the signal's number."""

    def __init__(self, run: Path, ckpt: Path, signal_name: str, max_epochs: int):
        self.run, self.ckpt, self.signal_name, self.max_epochs = run, ckpt, signal_name, max_epochs
        self.folder_kept = (run / "config.yaml").is_file()
        self.epochs_saved = saved_epochs(ckpt)
        self.exit_code = 128 + int(getattr(signal, signal_name, signal.SIGINT))
        super().__init__(f"{self.state()} Continue it with the `resume` setting.")

    def state(self) -> str:
        """What the run folder holds now, in a sentence or two."""
        head = f"Training stopped by {self.signal_name}."
        if not self.folder_kept:
            return (
                f"{head} It came before training began (loading the models, scoring the source: finished "
                f"scores stay cached), and no run folder was left at {self.run}."
            )
        if self.epochs_saved is None:
            return (
                f"{head} No checkpoint was written yet (one is, after each epoch): {self.run} holds the "
                "run's config.yaml, and resuming starts it from the beginning."
            )
        return (
            f"{head} {self.ckpt} holds the map after epoch {self.epochs_saved} of {self.max_epochs} "
            "(with the optimizer's state); map.json is written when the run ends."
        )


def saved_epochs(ckpt: Path) -> int | None:
    """How many epochs a Lightning checkpoint holds (None: no readable checkpoint)."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError):
        return None
    return int(state.get("epoch", -1)) + 1


@contextlib.contextmanager
def stop_signals() -> Iterator[list[str]]:
    """While training: SIGTERM stops it as Ctrl-C does (a KeyboardInterrupt, between two steps
    of Python), and the list yielded names the signal that came (empty for Ctrl-C)."""
    got: list[str] = []

    def on_term(signum: int, frame: Any) -> None:
        got.append(signal.Signals(signum).name)
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield got
    finally:
        signal.signal(signal.SIGTERM, previous)
