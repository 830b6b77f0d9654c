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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dfa.experiments.configs import SweepConfig
from dfa.core.errors import DfaError
from dfa.core.io import atomic_write, write_json
from dfa.core.tasks import get_task, task_sources
from dfa.experiments.loto import parse_pair
from dfa.experiments.sweep_cell import Cell, cell_rows
from dfa.experiments.sweep_ray import run_cells_ray
from dfa.methods import METHODS, names
from dfa.report.figures import sweep_heatmap
from dfa.report.tables import sweep_markdown
from dfa.store import ModelPool

# The in-distribution map is compared with gold and the non-learned alignments; each zero-shot
# map with the controls built from it.
IN_DIST_METHODS = tuple(m for m in names("map", "reference", "alignment") if METHODS[m].in_sweeps)
ZERO_SHOT_METHODS = tuple(m for m in names("map", "control") if METHODS[m].in_sweeps)
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


def sweep_cells(cfg: SweepConfig, pairs: Sequence[tuple[str, str, str]]) -> list[Cell]:
    """Every cell of the sweep, in the order the tables list them (module docstring)."""
    tasks = tuple(cfg.tasks)
    cells = []
    for i, (src, tgt, _) in enumerate(pairs):
        cells.append(Cell(src, tgt, "all", tasks, (), tuple((t, IN_DIST_METHODS) for t in tasks)))
        for t in tasks:
            rest = tuple(x for x in tasks if x != t)
            cells.append(Cell(src, tgt, f"loto-{t}", rest, (t,), ((t, ZERO_SHOT_METHODS),)))
        if cfg.heatmap and i == 0:
            for t in tasks:
                cells.append(Cell(src, tgt, f"only-{t}", (t,), (), tuple((x, ("dfa",)) for x in tasks)))
    return cells


def _uses(row: dict[str, Any], tasks: set[str]) -> bool:
    """Whether the row's map (a cell's run: `all`, `loto-T`, `only-T`) was trained with any of
    `tasks`: `all` with every task, `loto-T` with all but T, `only-T` with T alone."""
    m = row.get("map", "")
    if m == "all":
        return True
    if m.startswith("loto-"):
        return bool(tasks - {m.removeprefix("loto-")})
    return m.startswith("only-") and m.removeprefix("only-") in tasks


def run_sweep(cfg: SweepConfig, pool: ModelPool) -> dict[str, Any]:
    """Every cell of the sweep not yet in `OUT/sweep_<ladder>.json` (the cell cache: a killed
    sweep resumes from it), run here one after another (`backend: local`) or each as a Ray task
    (`backend: ray`, `dfa.experiments.sweep_ray`); returns the whole result."""
    tasks, out, ladder = list(cfg.tasks), Path(cfg.out), cfg.ladder
    for t in tasks:
        get_task(t)
    if len(tasks) < 2:
        raise DfaError("A sweep needs at least two tasks (one is held out of each map).")
    pairs = sweep_pairs(ladder, cfg.reverse, cfg.cross)
    cells = sweep_cells(cfg, pairs)
    path = out / f"sweep_{ladder}.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    files = task_sources(tasks)
    # A task file edited since its rows were cached: its rows (and every map trained with it) are stale.
    stale = {t for t, f in saved.get("task_files", {}).items() if files.get(t) != f}
    rows: list[dict[str, Any]] = [
        r for r in saved.get("rows", []) if not stale or (r["task"] not in stale and not _uses(r, stale))
    ]
    done = {_cell_key(r) for r in rows}
    # Rows in table order whatever order the cells finish in (unknown cells last).
    order = {(c.src, c.tgt, c.run, t): i for i, c in enumerate(cells) for t, _ in c.evals}

    def add(cell: Cell, task: str, new: list[dict[str, Any]]) -> None:
        rows.extend(new)
        done.add((cell.src, cell.tgt, cell.run, task))
        rows.sort(key=lambda r: order.get(_cell_key(r), len(order)))
        write_json(
            path, {"ladder": ladder, "tasks": tasks, "task_files": files, "pairs": pairs, "rows": rows}
        )

    todo = [(c, [t for t, _ in c.evals if (c.src, c.tgt, c.run, t) not in done]) for c in cells]
    todo = [(c, t) for c, t in todo if t]
    if cfg.backend == "ray":
        run_cells_ray(cfg, todo, add)
    else:
        pair_of = [(c.src, c.tgt) for c, _ in todo]
        for i, (cell, cell_tasks) in enumerate(todo):
            if i == 0 or pair_of[i - 1] != pair_of[i]:
                print(f"{cell.src} -> {cell.tgt}", flush=True)
            for task, new in cell_rows(cfg, cell, pool, cell_tasks):
                add(cell, task, new)
            if i + 1 == len(todo) or pair_of[i + 1] != pair_of[i]:
                pool.release(cell.src, cell.tgt)  # a sweep holds one pair's models at a time
    write_json(path, {"ladder": ladder, "tasks": tasks, "task_files": files, "pairs": pairs, "rows": rows})
    return {"ladder": ladder, "tasks": tasks, "task_files": files, "pairs": pairs, "rows": rows}


def write_sweep(result: dict[str, Any], out: Path) -> tuple[str, list[Path]]:
    """The Markdown tables and the heatmap beside the JSON; returns the text and the files."""
    text = sweep_markdown(result)
    md = atomic_write(out / f"sweep_{result['ladder']}.md", lambda tmp: tmp.write_text(text))
    png = sweep_heatmap(result, out / f"sweep_{result['ladder']}_heatmap.png")
    return text, [md, out / f"sweep_{result['ladder']}.json", *([png] if png else [])]
