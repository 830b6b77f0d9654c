"""`dfa sweep`: alignment maps over every pair of a ladder, and the tables of the DFA paper's kind.

For a ladder (`toy-gpt2`, `toy-neox`, `gpt2`, `pythia`) and a task list, every pair small ->
large (and large -> small as a sanity check, `--no-reverse` to skip), plus cross-family pairs
(`--cross SRC:TGT`, repeatable; by default the other toy family's smallest model -> this
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

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dfa.errors import DfaError
from dfa.io import atomic_write, write_json

ZERO_SHOT_METHODS = ("dfa", "random", "permuted", "scrambled")
IN_DIST_METHODS = ("dfa", "gold", "depth", "role", "role-assign")
# (column label, which map's evaluation: "all" or "loto", method) of the per-pair table.
COLUMNS = (
    ("gold", "all", "gold"),
    ("dfa (in-dist)", "all", "dfa"),
    ("dfa (zero-shot)", "loto", "dfa"),
    ("role", "all", "role"),
    ("role-assign", "all", "role-assign"),
    ("depth", "all", "depth"),
    ("random", "loto", "random"),
    ("permuted", "loto", "permuted"),
    ("scrambled", "loto", "scrambled"),
)
OTHER_TOY = {"toy-gpt2": "toy-neox", "toy-neox": "toy-gpt2"}


def ladder_models(ladder: str) -> list[str]:
    """A ladder's models, small to large."""
    from dfa.ladders import LADDERS
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
        src, sep, tgt = text.partition(":")
        if not sep or not src or not tgt:
            raise DfaError(f"A cross-family pair is SRC:TGT, got {text!r}.")
        pairs.append((src, tgt, "cross"))
    return pairs


def _cell_key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    return (row["src"], row["tgt"], row["map"], row["task"])


def run_sweep(
    ladder: str,
    tasks: Sequence[str],
    out: Path,
    config: str | None = "configs/toy.yaml",
    n: int = 50,
    boot: int = 200,
    draws: int = 2,
    reverse: bool = True,
    cross: Sequence[str] | None = None,
    heatmap: bool = True,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    import json

    from dfa.tasks import get_task
    from dfa.training import make_config, train
    from dfa.transfer import evaluate_run

    for t in tasks:
        get_task(t)
    if len(tasks) < 2:
        raise DfaError("A sweep needs at least two tasks (one is held out of each map).")
    pairs = sweep_pairs(ladder, reverse, cross)
    path = out / f"sweep_{ladder}.json"
    rows: list[dict[str, Any]] = json.loads(path.read_text())["rows"] if path.is_file() else []
    done = {_cell_key(r) for r in rows}

    def save() -> None:
        write_json(path, {"ladder": ladder, "tasks": list(tasks), "pairs": pairs, "rows": rows})

    def cell(
        src: str,
        tgt: str,
        run_name: str,
        train_tasks: list[str],
        holdout: list[str],
        evals: dict[str, Sequence[str]],
    ):
        todo = {t: m for t, m in evals.items() if (src, tgt, run_name, t) not in done}
        if not todo:
            return
        c = make_config(
            config,
            src=src,
            tgt=tgt,
            tasks=train_tasks + holdout,
            holdout=holdout,
            out=str(out / "maps"),
            run=run_name,
            **(overrides or {}),
        )
        run = c.run_dir()
        if not (run / "map.json").is_file():
            start = time.perf_counter()
            train(c, overwrite=True, progress=False)
            print(f"  trained {src} -> {tgt} {run_name} ({time.perf_counter() - start:.0f}s)", flush=True)
        for task, methods in todo.items():
            report, _ = evaluate_run(run, [task], methods, "test", n, boot, draws=draws)
            for r in report["results"]:
                r.pop("curve")
                rows.append({"src": src, "tgt": tgt, "map": run_name, **r})
            done.add((src, tgt, run_name, task))
            save()

    tasks = list(tasks)
    for i, (src, tgt, kind) in enumerate(pairs):
        print(f"[{i + 1}/{len(pairs)}] {src} -> {tgt} ({kind})", flush=True)
        cell(src, tgt, "all", tasks, [], {t: IN_DIST_METHODS for t in tasks})
        for t in tasks:
            cell(src, tgt, f"loto-{t}", [x for x in tasks if x != t], [t], {t: ZERO_SHOT_METHODS})
        if heatmap and i == 0:
            for t in tasks:
                cell(src, tgt, f"only-{t}", [t], [], {x: ("dfa",) for x in tasks})
    save()
    return {"ladder": ladder, "tasks": tasks, "pairs": pairs, "rows": rows}


def pair_table(
    rows: list[dict[str, Any]], src: str, tgt: str, tasks: Sequence[str]
) -> list[list[float | None]]:
    """Tasks x COLUMNS CPR for one pair (None where not measured)."""
    by = {(r["map"], r["task"], r["method"]): r["cpr"] for r in rows if r["src"] == src and r["tgt"] == tgt}
    return [
        [by.get((m if m == "all" else f"loto-{t}", t, method)) for _, m, method in COLUMNS] for t in tasks
    ]


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def heatmap_matrix(
    rows: list[dict[str, Any]], src: str, tgt: str, tasks: Sequence[str]
) -> list[list[float | None]]:
    by = {
        (r["map"], r["task"]): r["cpr"]
        for r in rows
        if r["src"] == src and r["tgt"] == tgt and r["method"] == "dfa"
    }
    return [[by.get((f"only-{a}", b)) for b in tasks] for a in tasks]


def markdown(result: dict[str, Any]) -> str:
    rows, tasks, pairs = result["rows"], result["tasks"], result["pairs"]
    lines = [f"# Sweep: {result['ladder']} ({', '.join(tasks)})", ""]
    lines += [
        (
            "CPR on 'test' prompts (patching, input kept). dfa (in-dist): the map trained on every "
            "task; dfa (zero-shot): the map trained without the task; controls from the zero-shot map."
        ),
        "",
    ]
    summary = []
    role_wins = [0, 0]
    for src, tgt, kind in pairs:
        table = pair_table(rows, src, tgt, tasks)
        lines += [
            f"## {src} -> {tgt} ({kind})",
            "",
            "| task | " + " | ".join(label for label, _, _ in COLUMNS) + " |",
        ]
        lines.append("|---" * (len(COLUMNS) + 1) + "|")
        for t, vals in zip(tasks, table, strict=True):
            lines.append(f"| {t} | " + " | ".join(_fmt(v) for v in vals) + " |")
            zs, role = vals[2], vals[3]
            if zs is not None and role is not None:
                role_wins[0] += zs > role
                role_wins[1] += 1
        means = [_mean([vals[j] for vals in table]) for j in range(len(COLUMNS))]
        lines.append("| mean | " + " | ".join(_fmt(v) for v in means) + " |")
        lines.append("")
        if kind == "forward":
            gold, zs, depth = means[0], means[2], means[5]
            rec = None if gold in (None, 0) or zs is None else 100 * zs / gold
            summary.append((src, tgt, depth, zs, gold, rec))
    lines += [
        f"## {result['ladder']}: forward pairs",
        "",
        "| pair | depth | DFA zero-shot | gold | recovery % |",
    ]
    lines.append("|---|---|---|---|---|")
    for src, tgt, depth, zs, gold, rec in summary:
        lines.append(
            f"| {src} -> {tgt} | {_fmt(depth)} | {_fmt(zs)} | {_fmt(gold)} | {'-' if rec is None else f'{rec:.0f}'} |"
        )
    lines += [
        "",
        f"DFA zero-shot beats soft role alignment on {role_wins[0]} of {role_wins[1]} (pair, task) cells.",
    ]
    if pairs:
        src, tgt, _ = pairs[0]
        mat = heatmap_matrix(rows, src, tgt, tasks)
        if any(v is not None for r in mat for v in r):
            lines += [
                "",
                f"## Transfer heatmap, {src} -> {tgt}: map trained on one task (rows), CPR on each (columns)",
                "",
            ]
            lines.append("| train \\ eval | " + " | ".join(tasks) + " |")
            lines.append("|---" * (len(tasks) + 1) + "|")
            for a, r in zip(tasks, mat, strict=True):
                lines.append(f"| {a} | " + " | ".join(_fmt(v) for v in r) + " |")
    return "\n".join(lines) + "\n"


def plot_heatmap(result: dict[str, Any], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from dfa.evaluate import _save_figure

    if not result["pairs"]:
        return None
    src, tgt, _ = result["pairs"][0]
    tasks = result["tasks"]
    mat = np.array(
        [[np.nan if v is None else v for v in r] for r in heatmap_matrix(result["rows"], src, tgt, tasks)]
    )
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(tasks), 0.8 + 0.8 * len(tasks)))
    im = ax.imshow(mat, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
    for i in range(len(tasks)):
        for j in range(len(tasks)):
            if not np.isnan(mat[i, j]):
                ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    ax.set(xlabel="eval task", ylabel="train task", title=f"{src} -> {tgt}: CPR")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    """`dfa sweep`: every pair of a ladder, leave-one-task-out maps, and the comparison tables."""
    import argparse

    from dfa.tasks import TASKS

    p = argparse.ArgumentParser(prog="dfa sweep", description=(main.__doc__ or "").split("\n")[0])
    p.add_argument("--ladder", required=True, help="toy-gpt2, toy-neox, gpt2 or pythia")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), help="tasks (default: all)")
    p.add_argument("--config", default="configs/toy.yaml", help="training config of every map")
    p.add_argument("--max-epochs", type=int, default=None, help="override the config's epochs")
    p.add_argument("--n", type=int, default=50, help="test prompts per task (default 50)")
    p.add_argument("--boot", type=int, default=200, help="bootstrap resamples (default 200)")
    p.add_argument("--draws", type=int, default=2, help="draws per control (default 2)")
    p.add_argument("--no-reverse", action="store_true", help="skip the large -> small pairs")
    p.add_argument("--cross", action="append", default=None, help="cross-family pair SRC:TGT (repeatable)")
    p.add_argument("--no-heatmap", action="store_true", help="skip the one-task maps of the first pair")
    p.add_argument("--out", default="results/sweep", help="output folder (maps under OUT/maps)")
    args = p.parse_args(argv)
    import logging

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)  # start-up tips
    out = Path(args.out)
    start = time.perf_counter()
    overrides = {"max_epochs": args.max_epochs} if args.max_epochs else {}
    try:
        result = run_sweep(
            args.ladder,
            args.tasks,
            out,
            args.config,
            args.n,
            args.boot,
            args.draws,
            not args.no_reverse,
            args.cross,
            not args.no_heatmap,
            overrides,
        )
    except DfaError as err:
        print(f"dfa sweep: error: {err}", file=sys.stderr)
        return 2
    text = markdown(result)
    md = out / f"sweep_{args.ladder}.md"
    atomic_write(md, lambda tmp: tmp.write_text(text))
    png = plot_heatmap(result, out / f"sweep_{args.ladder}_heatmap.png")
    print(text)
    print(
        f"wrote {md}, {out / f'sweep_{args.ladder}.json'}{f', {png}' if png else ''} ({time.perf_counter() - start:.0f}s)"
    )
    return 0
