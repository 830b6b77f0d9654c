"""The circuits table: per model and task, CPR of the circuits of each attribution method against
random rankings, all on the same test prompts. Resumable: finished cells are read back."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from dfa.experiments.configs import CircuitsTableConfig
from dfa.core.circuits import compare_methods
from dfa.core.io import write_json
from dfa.store import ModelPool


def run_circuits_table(cfg: CircuitsTableConfig, pool: ModelPool) -> list[dict[str, Any]]:
    """Every (model, task) cell not yet in `cfg.out`; returns the rows asked for."""
    out = Path(cfg.out)
    done: list[dict[str, Any]] = json.loads(out.read_text())["results"] if out.is_file() else []
    have = {(r["model"], r["task"]) for r in done}
    for name in cfg.models:
        todo = [t for t in cfg.tasks if (name, t) not in have]
        if not todo:
            continue
        model = pool.get(name)
        for task in todo:
            start = time.perf_counter()
            done.append(compare_methods(model, task, cfg.methods, cfg.n_attr, cfg.n_eval))
            r = done[-1]
            print(
                f"{name} {task}: "
                + ", ".join(f"{m} {r['curves'][m]['cpr']:.3f}" for m in [*cfg.methods, "random"])
                + f" ({time.perf_counter() - start:.0f}s)",
                flush=True,
            )
            write_json(
                out, {"methods": cfg.methods, "input_node": "kept", "ablation": "patching", "results": done}
            )
        pool.release(name)
    return [r for r in done if r["model"] in cfg.models and r["task"] in cfg.tasks]
