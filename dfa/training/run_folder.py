"""A run folder's life: whether it already holds a run trained to its end (`finished_run`), the
folder made ready for a fresh or resumed run, a clobber refused unless asked (`prepare_run`; a
process of rank > 0 only reads what rank 0 prepared: `follow_run`), and what a crashed attempt left
cleaned (`clean_leftovers`: temporary files, and the TensorBoard events a resumed run logs again,
`drop_relogged_events`). Training itself is `dfa.training.run`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dfa.config import ConfigError, TrainConfig, make_config, read_yaml, upgrade
from dfa.core.io import atomic_write


def follow_run(config: TrainConfig, resume: bool, max_epochs: int | None) -> tuple[TrainConfig, Path, bool]:
    """`prepare_run` for a process of rank > 0: rank 0 has prepared the folder (and cleaned it),
    so this one only reads the saved config and whether there is a checkpoint to resume from."""
    run = config.run_dir()
    if resume and (run / "config.yaml").is_file():
        config = make_config(run / "config.yaml", max_epochs=max_epochs)
    return config, run, resume and (run / CKPT).is_file()


CKPT = "last.ckpt"
BEST = "best.ckpt"  # the epoch with the best val/select (TrainConfig.keep "mean" or "best")


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
