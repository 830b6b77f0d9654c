"""`dfa sweep --backend ray`: each cell of a sweep (a map of a pair, trained once, and its
evaluations) as a Ray task, the results gathered into the sweep's cell cache as they come.

A task asks for one GPU where the cluster has GPUs, else one CPU. Each task loads its own models
(a pool on the sweep's device and dtype) and writes the map's run folder under `OUT/maps`, so on
a cluster of several machines `OUT` must be a folder every machine sees (a shared file system);
the driver alone writes the cell cache (`OUT/sweep_<ladder>.json`), after each cell, so a killed
sweep resumes from the cells it had gathered, and from the maps the workers had trained.

It is the only module of dfa that imports Ray, and only when a sweep runs on it (`_ray`): Ray is
optional.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dfa.experiments.configs import SweepConfig
from dfa.core.errors import DfaError
from dfa.experiments.sweep_cell import Cell, cell_rows
from dfa.store import ModelPool


def _ray():
    try:
        import ray
    except ImportError:
        raise DfaError(
            "The ray backend needs Ray: pip install 'dfa[ray]' (or pip install ray); "
            "without it, run the sweep with the local backend (the default)."
        ) from None
    return ray


def run_cell(
    cfg: SweepConfig, cell: Cell, tasks: list[str], threads: int | None = None
) -> list[tuple[str, list[dict[str, Any]]]]:
    """One cell in a Ray worker: its own model pool, every (task, rows) of `cell_rows`. `threads`:
    torch's CPU thread count (Ray starts workers with one thread per CPU asked for; a different
    count changes the float sums, so a local instance is given the driver's and its rows equal
    the local backend's bit for bit)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    pool = ModelPool(cfg.device, cfg.dtype)
    try:
        return list(cell_rows(cfg, cell, pool, tasks))
    finally:
        pool.release()


def run_cells_ray(
    cfg: SweepConfig,
    todo: Sequence[tuple[Cell, list[str]]],
    add: Callable[[Cell, str, list[dict[str, Any]]], None],
) -> None:
    """Run every `(cell, tasks)` of `todo` as a Ray task (on the cluster at `cfg.address`, or on a
    local instance started here) and `add` each task's rows as its cell finishes."""
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=cfg.address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = f"at {cfg.address!r}" if cfg.address else "locally"
            raise DfaError(f"Could not start or reach a Ray cluster {where}: {err}") from None
    try:
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        remote = ray.remote(num_gpus=1, num_cpus=0)(run_cell) if gpus else ray.remote(num_cpus=1)(run_cell)
        threads = None
        if started and not cfg.address:  # a local instance: the same CPU as this process
            import torch

            threads = torch.get_num_threads()
        pending = {remote.remote(cfg, cell, tasks, threads): cell for cell, tasks in todo}
        print(f"{len(pending)} cells as Ray tasks ({'one GPU' if gpus else 'one CPU'} each)", flush=True)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready[0])
            for task, rows in ray.get(ready[0]):
                add(cell, task, rows)
            print(f"  done {cell.src} -> {cell.tgt} {cell.run} ({len(pending)} to go)", flush=True)
    finally:
        if started:
            ray.shutdown()
