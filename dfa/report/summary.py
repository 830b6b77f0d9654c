"""The figures of an evaluation, drawn from its results JSON alone (`dfa evaluate --json`): a summary
(CPR per task and method with 95% intervals, one look per method) and, in a second file, each task's
faithfulness curves as small multiples. Both are sized for a paper's full text width (7 in); a
method whose result on a task is identical to another's (dfa-val where the task was trained on:
the same map) is drawn once there, and the figure says which it stands for."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dfa.core.errors import DfaError
from dfa.report.figures import _pyplot, _style

WIDTH = 7.0  # inches: a two-column paper's text width; one panel of the grid is a quarter of it
# Bars: a method's colour from `STYLES`; the controls (not a way to find a circuit) hatched, each
# its own way, so that no two methods share a look in black and white either.
HATCHES = {"random": "..", "permuted": "//", "scrambled": "xx", "depth": "", "depth-order": "--"}


def by_task(report: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """task -> method -> its result row, in the report's order."""
    tasks: dict[str, dict[str, dict[str, Any]]] = {}
    for row in report.get("results") or []:
        tasks.setdefault(row["task"], {})[row["method"]] = row
    if not tasks:
        raise DfaError("Nothing to plot: the report has no results.")
    return tasks


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["cpr"] == b["cpr"] and a.get("cpr_ci") == b.get("cpr_ci") and a.get("curve") == b.get("curve")


def drawn(rows: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """The methods drawn on a task, each with the methods whose results are identical to its own
    (itself first): {"dfa": ["dfa", "dfa-val"], "gold": ["gold"], ...}."""
    kept: dict[str, list[str]] = {}
    for m, row in rows.items():
        twin = next((k for k in kept if _same(rows[k], row)), None)
        kept.setdefault(twin or m, []).append(m)
    return kept


def _held_out(rows: dict[str, dict[str, Any]]) -> bool:
    return any(r.get("setting") == "zero-shot" for r in rows.values())


def summary_figure(report: dict[str, Any], title: str = ""):
    """CPR per task (groups) and method (bars), 95% intervals; held-out tasks starred."""
    plt = _pyplot()
    tasks = by_task(report)
    groups = {t: drawn(rows) for t, rows in tasks.items()}
    width = 0.84 / max(len(g) for g in groups.values())
    fig, ax = plt.subplots(figsize=(WIDTH, 3.3))
    labelled: set[str] = set()
    for i, (task, group) in enumerate(groups.items()):
        for j, (m, same) in enumerate(group.items()):
            row = tasks[task][m]
            lo, hi = row.get("cpr_ci") or (row["cpr"], row["cpr"])
            x = i - 0.42 + (j + 0.5) * width
            colour = _style(m)[0]
            ax.bar(
                x, row["cpr"], width, yerr=[[max(row["cpr"] - lo, 0.0)], [max(hi - row["cpr"], 0.0)]],
                color=colour, hatch=HATCHES.get(m, ""), edgecolor="white" if m not in HATCHES else "black",
                linewidth=0.3, capsize=1.2, error_kw={"lw": 0.6}, label=None if m in labelled else m,
            )  # fmt: skip
            labelled.add(m)
            if len(same) > 1:  # drawn once: say for whom
                ax.text(x, hi + 0.02, "= " + ", ".join(same[1:]), rotation=90, ha="center", va="bottom", fontsize=6)
    names = [f"{t}*" if _held_out(rows) else t for t, rows in tasks.items()]
    ax.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(names) - 0.4)
    top = max(1.0, *(r.get("cpr_ci", [0, r["cpr"]])[1] for rows in tasks.values() for r in rows.values()))
    ax.set_ylim(0, 1.25 * top)  # room for the "= twin" notes above the tallest bars
    ax.set_ylabel("CPR [95% interval]", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", lw=0.4, alpha=0.6)
    ax.set_axisbelow(True)
    note = "* held out of training (zero-shot)" if any(map(_held_out, tasks.values())) else ""
    head = title or f"{report.get('src', '?')} -> {report.get('tgt', '?')}"
    ax.set_title(f"{head}: CPR per task and method" + (f"; {note}" if note else ""), fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    order = _methods(tasks)
    pairs = sorted(zip(labels, handles, strict=True), key=lambda lh: order.index(lh[0]))
    ax.legend(
        [h for _, h in pairs], [lab for lab, _ in pairs], fontsize=7, ncols=min(len(pairs), 5),
        loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False,
    )  # fmt: skip
    return fig


def _methods(tasks: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    return list(dict.fromkeys(m for rows in tasks.values() for m in rows))


def curves_figure(report: dict[str, Any], title: str = ""):
    """Each task's faithfulness curves (log axis of circuit size) as small multiples, one legend."""
    plt = _pyplot()
    tasks = by_task(report)
    cols = min(4, len(tasks))
    rows_n = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(WIDTH, 1.75 * rows_n + 0.9), sharey=True, squeeze=False)
    handles: dict[str, Any] = {}
    for ax, (task, rows) in zip(axes.flat, tasks.items(), strict=False):
        group = drawn(rows)
        start = min(
            (f for m in group for f, v in rows[m].get("curve") or [] if v != 0), default=1e-3
        )  # the first size where any curve leaves 0: smaller sizes select no node
        for m, same in group.items():
            points = [(f, v) for f, v in rows[m].get("curve") or [] if f >= start]
            colour, marker, line = _style(m)
            (h,) = ax.plot(
                [f for f, _ in points], [v for _, v in points], color=colour, marker=marker, linestyle=line,
                ms=2.5, lw=1.0,
            )  # fmt: skip
            handles.setdefault(m, h)
        notes = [f"{m} = {', '.join(same[1:])}" for m, same in group.items() if len(same) > 1]
        if notes:  # drawn once: say for whom
            ax.text(0.03, 0.97, "\n".join(notes), transform=ax.transAxes, fontsize=6, va="top")
        ax.set_xscale("log")
        ax.set_title(f"{task} (held out)" if _held_out(rows) else task, fontsize=8)
        ax.tick_params(labelsize=6.5)
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.axhline(0.0, color="grey", lw=0.5)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.set_visible(False)
    fig.supylabel("faithfulness f(C)", fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel("circuit size (share of nodes)", fontsize=7)
    head = title or f"{report.get('src', '?')} -> {report.get('tgt', '?')}"
    fig.suptitle(f"{head}: faithfulness against circuit size, per task", fontsize=9)
    shown = [m for m in _methods(tasks) if m in handles]
    fig.tight_layout()
    fig.legend(  # below the panels (the saved figure is cut to include it)
        [handles[m] for m in shown], shown, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=min(len(shown), 7),
        fontsize=7, frameon=False,
    )  # fmt: skip
    return fig


def _save(fig, path: str | Path) -> Path:
    """A PNG at 200 dpi, cut to what is drawn (the legends outside the axes included)."""
    import matplotlib.pyplot as plt

    from dfa.core.io import atomic_write

    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=200, bbox_inches="tight"))
    finally:
        plt.close(fig)


def curves_path(path: str | Path) -> Path:
    """Where the per-task curves go beside a summary figure: `toy.png` -> `toy_curves.png`."""
    path = Path(path)
    return path.with_name(f"{path.stem}_curves{path.suffix or '.png'}")


def plot_report(report: dict[str, Any], path: str | Path, title: str = "") -> list[Path]:
    """The summary at `path` and the per-task curves beside it (`curves_path`)."""
    return [
        _save(summary_figure(report, title), path),
        _save(curves_figure(report, title), curves_path(path)),
    ]
