"""Leave-one-task-out: per model pair and task, a map trained on the other tasks, evaluated
zero-shot on the held-out task against gold, depth and the controls. Resumable: a finished cell
is read back from the JSON, a trained map is reused."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from dfa.config import LotoConfig, make_config
from dfa.core.errors import DfaError
from dfa.core.io import write_json
from dfa.core.tasks import task_sources
from dfa.experiments.runs import Run
from dfa.experiments.transfer import evaluate_run
from dfa.methods import check_methods
from dfa.store import ModelPool
from dfa.training import train


def parse_pair(text: str) -> tuple[str, str]:
    src, sep, tgt = text.partition(":")
    if not sep or not src or not tgt:
        raise DfaError(f"A model pair is SRC:TGT, got {text!r}.")
    return src, tgt


def run_loto(cfg: LotoConfig, pool: ModelPool) -> list[dict[str, Any]]:
    """Every (pair, held-out task) cell not yet in `cfg.json`; returns all rows."""
    config, methods, n, boot = cfg.config, cfg.methods, cfg.n, cfg.boot
    check_methods(methods)
    path = Path(cfg.json)
    saved = json.loads(path.read_text()) if path.is_file() else {"results": []}
    if saved.get("split", "test") != cfg.split and saved["results"]:
        raise DfaError(
            f"{path} holds LOTO results on the {saved.get('split', 'test')} split, not {cfg.split}: "
            "give another results file (`json`) for this split."
        )
    done: list[dict[str, Any]] = saved["results"]
    have = {(r["src"], r["tgt"], r["task"]) for r in done}
    for pair in cfg.pairs:
        src, tgt = parse_pair(pair)
        for task in cfg.tasks:
            if (src, tgt, task) in have:
                continue
            start = time.perf_counter()
            c = make_config(config, src=src, tgt=tgt, holdout=[task], out=cfg.out, run=f"loto-{task}")
            run = c.run_dir()
            if not (run / "map.json").is_file():
                run = train(c, overwrite=True, progress=False, pool=pool)
            report, _ = evaluate_run(Run(run), pool, [task], methods, cfg.split, n, boot)
            for r in report["results"]:
                r.pop("curve")
                if r["method"] == "dfa":  # the map's own estimate of its gain, made before this test
                    r["zero_shot"] = report.get("zero_shot")
                    r["training_cost"] = report.get("training_cost")  # the cell's map (`dfa.core.cost`)
                done.append({"src": src, "tgt": tgt, **r})
            write_json(
                path,
                {
                    "config": str(config),
                    "split": cfg.split,
                    "input_node": "kept",
                    "task_files": task_sources(cfg.tasks),
                    "results": done,
                },
            )
            cells = {r["method"]: r["cpr"] for r in report["results"]}
            print(
                f"{src} -> {tgt} {task}: "
                + ", ".join(f"{m} {v:.3f}" for m, v in cells.items())
                + f" ({time.perf_counter() - start:.0f}s)",
                flush=True,
            )
        pool.release(src, tgt)
    return done
