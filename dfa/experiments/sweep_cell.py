"""A sweep cell, whichever backend runs it: one map of a pair (`Cell`: its training tasks, its
held-out tasks, and the methods each evaluated task is scored with), trained once unless its run
folder holds it, then evaluated task by task (`cell_rows`). The local backend runs the cells one
after another (`dfa.experiments.sweep.run_sweep`), the Ray backend each as a Ray task
(`dfa.experiments.sweep_ray`); both gather the rows into the sweep's cell cache."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dfa.config import make_config
from dfa.experiments.configs import SweepConfig
from dfa.experiments.runs import Run
from dfa.experiments.transfer import evaluate_run
from dfa.store import ModelPool
from dfa.training import train


@dataclass(frozen=True)
class Cell:
    """One map of a pair (trained once) and the tasks it is evaluated on, each with its methods:
    what one worker does (one Ray task with the `ray` backend)."""

    src: str
    tgt: str
    run: str
    train_tasks: tuple[str, ...]
    holdout: tuple[str, ...]
    evals: tuple[tuple[str, tuple[str, ...]], ...]  # (task, methods)


def cell_rows(cfg: SweepConfig, cell: Cell, pool: ModelPool, tasks: Sequence[str]):
    """Train the cell's map (unless its run folder holds it) and evaluate it on `tasks`; yields
    `(task, rows)` per task as each is done."""
    overrides = {"max_epochs": cfg.max_epochs} if cfg.max_epochs else {}
    c = make_config(
        cfg.config,
        src=cell.src,
        tgt=cell.tgt,
        tasks=[*cell.train_tasks, *cell.holdout],
        holdout=list(cell.holdout),
        out=str(Path(cfg.out) / "maps"),
        run=cell.run,
        **overrides,
    )
    run = c.run_dir()
    if not (run / "map.json").is_file():
        start = time.perf_counter()
        train(c, overwrite=True, progress=False, pool=pool)
        print(
            f"  trained {cell.src} -> {cell.tgt} {cell.run} ({time.perf_counter() - start:.0f}s)", flush=True
        )
    methods = dict(cell.evals)
    for task in tasks:
        report, _ = evaluate_run(
            Run(run), pool, [task], methods[task], "test", cfg.n, cfg.boot, draws=cfg.draws
        )
        rows = []
        for r in report["results"]:
            r.pop("curve")
            rows.append({"src": cell.src, "tgt": cell.tgt, "map": cell.run, **r})
        yield task, rows
