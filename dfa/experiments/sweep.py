"""`dfa sweep`: alignment maps over every pair of a ladder, and the tables of the DFA paper's kind.

For a ladder (`toy-gpt2`, `toy-neox`, `gpt2`, `pythia`) and a task list, every pair small ->
large (and large -> small as a sanity check, unless `reverse` is off), plus cross-family pairs
(the `cross` setting, a list of SRC:TGT; by default the other toy family's smallest model -> this
ladder's largest), gets:

- an in-distribution map trained on every task (`all`), evaluated on each task, with `gold`,
  `depth`, `role` and `role-assign` on the same prompts;
- a leave-one-task-out map per task (`loto-<task>`), evaluated zero-shot on its held-out task,
  with the controls `random`, `permuted` and `scrambled` of that map;
- for the first forward pair only, a map per single training task (`only-<task>`), evaluated on
  every task: the train task x eval task transfer heatmap.

Tables (Markdown, JSON, PNG heatmap): per pair, methods x tasks CPR; per ladder (forward pairs),
mean depth / DFA zero-shot / gold and recovery = DFA over gold. Resumable: a trained map is
reused, and an evaluated cell (pair, map, task) is never recomputed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dfa.config import SweepConfig, make_config
from dfa.core.errors import DfaError
from dfa.core.io import atomic_write, write_json
from dfa.core.tasks import get_task
from dfa.experiments.loto import parse_pair
from dfa.experiments.transfer import Run, evaluate_run
from dfa.methods import names
from dfa.report.figures import sweep_heatmap
from dfa.report.tables import sweep_markdown
from dfa.store import ModelPool
from dfa.training import train

# The in-distribution map is compared with gold and the non-learned alignments; each zero-shot
# map with the controls built from it.
IN_DIST_METHODS = names("map", "reference", "alignment")
ZERO_SHOT_METHODS = names("map", "control")
OTHER_TOY = {"toy-gpt2": "toy-neox", "toy-neox": "toy-gpt2"}


def ladder_models(ladder: str) -> list[str]:
    """A ladder's models, small to large."""
    from dfa.core.ladders import LADDERS
    from dfa.zoo import ladder_specs

    toy = [s.name for s in ladder_specs(ladder)]
    if toy:
        return toy
    real = [m.name for m in LADDERS.values() if m.family == ladder and not m.name.endswith("-deduped")]
    if real:
        return sorted(real, key=lambda n: LADDERS[n].published_params)
    raise DfaError(f"Unknown ladder {ladder!r}; choose toy-gpt2, toy-neox, gpt2 or pythia.")


def sweep_pairs(
    ladder: str, reverse: bool = True, cross: Sequence[str] | None = None
) -> list[tuple[str, str, str]]:
    """(src, tgt, kind) with kind forward | reverse | cross."""
    models = ladder_models(ladder)
    pairs = [(a, b, "forward") for i, a in enumerate(models) for b in models[i + 1 :]]
    if reverse:
        pairs += [(b, a, "reverse") for a, b, _ in list(pairs)]
    if cross is None:
        other = OTHER_TOY.get(ladder)
        cross = [f"{ladder_models(other)[0]}:{models[-1]}"] if other else []
    for text in cross:
        pairs.append((*parse_pair(text), "cross"))
    return pairs


def _cell_key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    return (row["src"], row["tgt"], row["map"], row["task"])


def run_sweep(cfg: SweepConfig, pool: ModelPool) -> dict[str, Any]:
    """Every cell of the sweep not yet in `OUT/sweep_<ladder>.json`; returns the whole result."""
    tasks, out, ladder = list(cfg.tasks), Path(cfg.out), cfg.ladder
    for t in tasks:
        get_task(t)
    if len(tasks) < 2:
        raise DfaError("A sweep needs at least two tasks (one is held out of each map).")
    pairs = sweep_pairs(ladder, cfg.reverse, cfg.cross)
    path = out / f"sweep_{ladder}.json"
    rows: list[dict[str, Any]] = json.loads(path.read_text())["rows"] if path.is_file() else []
    done = {_cell_key(r) for r in rows}
    overrides = {"max_epochs": cfg.max_epochs} if cfg.max_epochs else {}

    def save() -> None:
        write_json(path, {"ladder": ladder, "tasks": tasks, "pairs": pairs, "rows": rows})

    def cell(src: str, tgt: str, run_name: str, train_tasks: list[str], holdout: list[str], evals):
        todo = {t: m for t, m in evals.items() if (src, tgt, run_name, t) not in done}
        if not todo:
            return
        c = make_config(
            cfg.config,
            src=src,
            tgt=tgt,
            tasks=train_tasks + holdout,
            holdout=holdout,
            out=str(out / "maps"),
            run=run_name,
            **overrides,
        )
        run = c.run_dir()
        if not (run / "map.json").is_file():
            start = time.perf_counter()
            train(c, overwrite=True, progress=False, pool=pool)
            print(f"  trained {src} -> {tgt} {run_name} ({time.perf_counter() - start:.0f}s)", flush=True)
        for task, methods in todo.items():
            report, _ = evaluate_run(
                Run(run), pool, [task], methods, "test", cfg.n, cfg.boot, draws=cfg.draws
            )
            for r in report["results"]:
                r.pop("curve")
                rows.append({"src": src, "tgt": tgt, "map": run_name, **r})
            done.add((src, tgt, run_name, task))
            save()

    for i, (src, tgt, kind) in enumerate(pairs):
        print(f"[{i + 1}/{len(pairs)}] {src} -> {tgt} ({kind})", flush=True)
        cell(src, tgt, "all", tasks, [], {t: IN_DIST_METHODS for t in tasks})
        for t in tasks:
            cell(src, tgt, f"loto-{t}", [x for x in tasks if x != t], [t], {t: ZERO_SHOT_METHODS})
        if cfg.heatmap and i == 0:
            for t in tasks:
                cell(src, tgt, f"only-{t}", [t], [], {x: ("dfa",) for x in tasks})
        pool.release(src, tgt)  # a sweep holds one pair's models at a time
    save()
    return {"ladder": ladder, "tasks": tasks, "pairs": pairs, "rows": rows}


def write_sweep(result: dict[str, Any], out: Path) -> tuple[str, list[Path]]:
    """The Markdown tables and the heatmap beside the JSON; returns the text and the files."""
    text = sweep_markdown(result)
    md = atomic_write(out / f"sweep_{result['ladder']}.md", lambda tmp: tmp.write_text(text))
    png = sweep_heatmap(result, out / f"sweep_{result['ladder']}_heatmap.png")
    return text, [md, out / f"sweep_{result['ladder']}.json", *([png] if png else [])]
