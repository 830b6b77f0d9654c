"""The cost table of an evaluation, a transfer or a LOTO run: per task, each method's target rows
and their share of gold's on that task, the source's rows, the judge's (no method's), the target's
working memory (the rise of its peak over what was held before) under gold and the val check, and
after how many new tasks a trained map pays for itself against gold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dfa.core.cost import Cost, pays_off_after

PEAKS = ("gold", "dfa-val")  # the methods whose target working memory (`added_mb`) the table shows
HEADER = (
    "target cost per method and task: forward-equivalent prompt rows of the target (forward + 2 x "
    "backward), (x gold's on the task); the judge's curves are no method's cost"
)


def _target(row: dict[str, Any] | None) -> dict[str, Any]:
    """A row's target cost (`{}` where the row or its cost is missing)."""
    return ((row or {}).get("cost") or {}).get("target") or {}


def _cell(cost: dict[str, Any] | None) -> str:
    if not cost or cost.get("target_rows") is None:
        return "?"
    share = cost.get("vs_gold")
    return f"{cost['target_rows']} ({share:.2f})" if share is not None else str(cost["target_rows"])


def cost_table(
    rows: Sequence[dict[str, Any]],
    training_cost: dict[str, Any] | None = None,
    source_cost: dict[str, Any] | None = None,
) -> str:
    """Markdown: task x method target rows (x gold), the source's rows, the judge's, the working
    memory of gold's and the val check's target passes; the pay-off lines when `training_cost`
    (`map.json`'s) is known, and what the run's source scores cost when `source_cost` is.
    '' when no row carries a cost."""
    rows = [r for r in rows if r.get("cost")]
    if not rows:
        return ""
    key = lambda r: (r.get("src", ""), r.get("tgt", ""), r["task"])  # noqa: E731
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cells = list(dict.fromkeys(key(r) for r in rows))
    by = {(key(r), r["method"]): r for r in rows}
    lines = [
        HEADER,
        "| task | " + " | ".join(methods) + " | source rows | judge rows | working MB (gold / dfa-val) |",
        "|" + "---|" * (len(methods) + 4),
    ]
    for cell in cells:
        mine = [by.get((cell, m)) for m in methods]
        any_row = next(r for r in mine if r is not None)
        source = next((r["cost"]["source_rows"] for r in mine if r and "source" in r["cost"]["reads"]), None)
        judge = Cost.from_json(any_row.get("judge_cost")).rows() if any_row.get("judge_cost") else None
        peaks = [_target(by.get((cell, m))).get("added_mb") for m in PEAKS]
        name = cell[2] if len({c[:2] for c in cells}) == 1 else f"{cell[0]} -> {cell[1]} {cell[2]}"
        lines.append(
            f"| {name} | "
            + " | ".join(_cell((r or {}).get("cost")) for r in mine)
            + f" | {'?' if source is None else source} | {'?' if judge is None else judge} | "
            + " / ".join("-" if p is None else f"{p:.1f}" for p in peaks)
            + " |"
        )
    lines += payoff(rows, training_cost)
    if source_cost:
        src = Cost.from_json(source_cost)
        lines.append(
            f"training's source scores (every task it read, once each; cached): {src.rows()} source rows, "
            f"{sum(m.seconds for m in src.models.values()):.0f}s"
        )
    return "\n".join(lines)


def payoff(rows: Sequence[dict[str, Any]], training_cost: dict[str, Any] | None) -> list[str]:
    """For `dfa` and `dfa-val` on the tasks outside training: after how many new tasks the map's
    training and per-task target rows come below gold's (means over those tasks)."""
    tgt = next((r.get("tgt") for r in rows if r.get("tgt")), None)
    # A LOTO run's cells each train a map: their rows carry it, and the mean is read.
    trainings = [training_cost] if training_cost else [r.get("training_cost") for r in rows]
    trainings = [t for t in trainings if t]
    if not trainings:
        return []
    trained = round(sum(Cost.from_json(t).rows(tgt) for t in trainings) / len(trainings))
    out = []
    for method in ("dfa", "dfa-val"):
        mine = [r for r in rows if r["method"] == method and r.get("setting", "zero-shot") == "zero-shot"]
        costs = [r["cost"] for r in mine if r["cost"].get("target_rows") is not None]
        if not costs:
            continue
        per_task = round(sum(c["target_rows"] for c in costs) / len(costs))
        gold = round(sum(c["gold_rows"] for c in costs) / len(costs))
        out.append(payoff_line(trained, per_task, gold, method))
    return out


def payoff_line(training_rows: int | None, per_task_rows: int | None, gold_rows: int, method: str) -> str:
    """After how many new tasks a trained map's training and its per-task cost (`method`'s target
    rows) come below gold's on each, in words."""
    if training_rows is None or per_task_rows is None:
        return f"{method}: its training cost is not known (a run trained before costs were kept)"
    n = pays_off_after(training_rows, per_task_rows, gold_rows)
    if n is None:
        return f"{method} costs the target {per_task_rows} rows a task, gold {gold_rows}: it never pays off"
    return (
        f"{method}: training {training_rows} target rows + {per_task_rows} a task against gold's {gold_rows} "
        f"a task: paid for after {n:.1f} new tasks"
    )


def cost_figure(cells: Sequence[dict[str, Any]], path: str) -> str:
    """One panel per pair: each method's recovery of gold (summed test CPR over the pair's cells /
    gold's) against its target cost as a share of gold's (mean over the cells): gold at (1, 1); the
    val check at each budget of `dfa check-cost`; dfa, depth and random at 0 (no pass of the target)."""
    import matplotlib

    matplotlib.use("Agg")  # file-only, no display (as dfa.report.figures; not imported: it reads tables)
    import matplotlib.pyplot as plt

    from dfa.core.io import atomic_write

    pairs = list(dict.fromkeys((c["src"], c["tgt"]) for c in cells))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.6), squeeze=False)
    for ax, (src, tgt) in zip(axes[0], pairs, strict=True):
        mine = [c for c in cells if (c["src"], c["tgt"]) == (src, tgt)]
        gold = sum(c["test_cpr"]["gold"] for c in mine)
        points = {"gold": (1.0, 1.0)}
        for ref in ("dfa", "depth", "random"):
            points[ref] = (0.0, sum(c["test_cpr"][ref] for c in mine) / gold)
        for label in dict.fromkeys(k for c in mine for k in c["checks"]):
            checks = [c["checks"][label] for c in mine if label in c["checks"]]
            x = sum(ch["vs_gold"] for ch in checks) / len(checks)
            points[label.replace("dfa-val@", "dfa-val ")] = (x, sum(ch["test_cpr"] for ch in checks) / gold)
        same: dict[tuple[float, float], list[str]] = {}
        for name, xy in points.items():  # methods at one point (dfa = depth where nothing carries): one label
            same.setdefault((round(xy[0], 4), round(xy[1], 4)), []).append(name)
        points = {" = ".join(names): xy for xy, names in same.items()}
        for i, (name, (x, y)) in enumerate(points.items()):
            marker = "*" if name == "gold" else "o" if name.startswith("dfa-val") else "s"
            ax.scatter([x], [y], marker=marker, s=60, zorder=3)
            below = name.startswith("dfa-val") and i % 2 == 0  # neighbouring budgets' labels apart
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, -11 if below else 4), fontsize=8)
        checks = sorted((p for n, p in points.items() if n.startswith("dfa-val")), key=lambda p: p[0])
        ax.plot([p[0] for p in checks], [p[1] for p in checks], lw=0.8, color="0.5", zorder=2)
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlabel("target rows, x gold's on the task (mean)")
        ax.set_ylabel("recovery of gold (summed test CPR)")
        ax.set_title(f"{src} -> {tgt} ({len(mine)} held-out tasks)", fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        return str(atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120)))
    finally:
        plt.close(fig)
