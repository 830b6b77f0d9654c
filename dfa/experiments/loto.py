"""Leave-one-task-out: per model pair and task, a map trained on the other tasks, evaluated
zero-shot on the held-out task against gold, depth and the controls. Resumable: a finished cell
is read back from the JSON, a trained map is reused."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from dfa.config import make_config
from dfa.experiments.configs import LotoConfig
from dfa.core.errors import DfaError
from dfa.core.settings import ConfigError
from dfa.core.io import write_json
from dfa.core.tasks import task_sources
from dfa.experiments.runs import Run
from dfa.experiments.transfer import evaluate_run
from dfa.experiments.val_check import parse_check_budget
from dfa.methods import check_methods
from dfa.store import ModelPool
from dfa.training import train
from dfa.training.fallback import ensure_fallback


def parse_pair(text: str) -> tuple[str, str]:
    src, sep, tgt = text.partition(":")
    if not sep or not src or not tgt:
        raise DfaError(f"A model pair is SRC:TGT, got {text!r}.")
    return src, tgt


def parse_groups(groups: list[str]) -> dict[str, list[str]]:
    """`NAME=TASK+TASK+...` per group -> {name: tasks}; a task in two groups, an empty or unnamed
    group is an error."""
    out: dict[str, list[str]] = {}
    for text in groups:
        name, sep, tasks = text.partition("=")
        members = [t for t in tasks.split("+") if t]
        if not sep or not name or not members:
            raise DfaError(f"A held-out group is NAME=TASK+TASK+..., got {text!r}.")
        if name in out:
            raise DfaError(f"Held-out group {name!r} is named twice.")
        out[name] = members
    seen: dict[str, str] = {}
    for name, members in out.items():
        for t in members:
            if t in seen:
                raise DfaError(f"Task {t!r} is in held-out groups {seen[t]!r} and {name!r}: a task is held out once.")
            seen[t] = name
    return out


def loto_cells(cfg: LotoConfig) -> dict[str, list[str]]:
    """Cell name -> the tasks its map is trained without: each group, else each task alone."""
    if cfg.groups:
        return parse_groups(cfg.groups)
    return {task: [task] for task in cfg.tasks}


def run_loto(cfg: LotoConfig, pool: ModelPool) -> list[dict[str, Any]]:
    """Every (pair, held-out task or group) cell not yet in `cfg.json`; returns all rows (a group's
    rows carry its name as `group`)."""
    config, methods, n, boot = cfg.config, cfg.methods, cfg.n, cfg.boot
    check_methods(methods)
    try:
        budget = parse_check_budget(cfg.check_budget)
    except ValueError as err:
        raise ConfigError(f"check_budget: {err}.") from None
    if cfg.val_n < 0:
        raise ConfigError(f"val_n: a number of val prompts (0: each map's n_val), not {cfg.val_n}.")
    path = Path(cfg.json)
    saved = json.loads(path.read_text()) if path.is_file() else {"results": []}
    if saved.get("split", "test") != cfg.split and saved["results"]:
        raise DfaError(
            f"{path} holds LOTO results on the {saved.get('split', 'test')} split, not {cfg.split}: "
            "give another results file (`json`) for this split."
        )
    done: list[dict[str, Any]] = saved["results"]
    have = {(r["src"], r["tgt"], r["task"]) for r in done}
    cells = loto_cells(cfg)
    for pair in cfg.pairs:
        src, tgt = parse_pair(pair)
        for cell, held in cells.items():
            if all((src, tgt, task) in have for task in held):
                continue
            start = time.perf_counter()
            c = make_config(config, src=src, tgt=tgt, holdout=held, out=cfg.out, run=f"loto-{cell}")
            run = c.run_dir()
            if not (run / "map.json").is_file():
                run = train(c, overwrite=True, progress=False, pool=pool)
            else:  # a map trained before the fallback existed gets it now
                ensure_fallback(run, pool)
            todo = [task for task in held if (src, tgt, task) not in have]
            checked = Run(run)
            checked.check_budget, checked.check_n = budget, cfg.val_n or None
            report, _ = evaluate_run(checked, pool, todo, methods, cfg.split, n, boot)
            for r in report["results"]:
                r.pop("curve")
                if r["method"] == "dfa":  # the map's own estimate of its gain, made before this test
                    r["zero_shot"] = report.get("zero_shot")
                    r["training_cost"] = report.get("training_cost")  # the cell's map (`dfa.core.cost`)
                group = {"group": cell} if cfg.groups else {}
                done.append({"src": src, "tgt": tgt, **group, **r})
            write_json(
                path,
                {
                    "config": str(config),
                    "split": cfg.split,
                    "input_node": "kept",
                    "check_budget": budget,
                    "task_files": task_sources([t for held in cells.values() for t in held]),
                    **({"groups": cells} if cfg.groups else {}),
                    "results": done,
                },
            )
            took = f" ({time.perf_counter() - start:.0f}s)"
            for task in todo:
                scores = {r["method"]: r["cpr"] for r in report["results"] if r["task"] == task}
                name = task if task == cell else f"{cell}/{task}"
                print(
                    f"{src} -> {tgt} {name}: " + ", ".join(f"{m} {v:.3f}" for m, v in scores.items()) + took,
                    flush=True,
                )
        pool.release(src, tgt)
    return done
