"""Figures: faithfulness curves, the map's weights, the sweep heatmap, the cross-scale plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dfa.core.errors import DfaError
from dfa.core.evaluate import Evaluation
from dfa.core.mapping import AlignmentMap
from dfa.core.roles import ROLES
from dfa.report.tables import READINGS, heatmap_matrix

# One look per method in every figure: a colour, a marker and a line, no two alike (the
# controls dashed or dotted), so that random and permuted, say, are told apart at a glance.
STYLES: dict[str, tuple[str, str, Any]] = {
    "dfa": ("tab:blue", "o", "-"),
    "dfa-val": ("mediumvioletred", "H", "-"),  # not a second blue: it sits beside dfa
    "gold": ("tab:orange", "D", "-"),
    "gold-layer": ("goldenrod", "d", "-"),
    "direct": ("tab:olive", "P", "-"),
    "depth-direct": ("darkolivegreen", "X", "-"),
    "depth": ("tab:brown", "s", "-"),
    "depth-order": ("rosybrown", "p", "-"),
    "role": ("tab:purple", "v", "-"),
    "role-assign": ("orchid", "<", "-"),
    "random": ("dimgray", "x", (0, (1, 1.5))),
    "permuted": ("tab:green", "^", "--"),
    "scrambled": ("tab:cyan", "*", "-."),
}
_EXTRA = [("tab:red", "h", ":"), ("tab:pink", ">", "--"), ("black", "+", "-")]


def _style(label: str) -> tuple[str, str, Any]:
    """(colour, marker, line style) of a method; labels the table does not know get one of a few
    spare looks, by hash of the label so it stays the same from panel to panel."""
    if label in STYLES:
        return STYLES[label]
    return _EXTRA[sum(map(ord, label)) % len(_EXTRA)]


def smallest_size(evaluation: Evaluation) -> float:
    """The smallest circuit fraction that holds at least one node in every curve (1/N for N
    ranked nodes): where a log axis should start, as smaller fractions select nothing."""
    firsts = [min(f for f, k in zip(c.fractions, c.ks, strict=True) if k >= 1) for c in evaluation.curves.values()]
    return max(firsts) if firsts else 1e-3


def draw_curves(
    ax,
    evaluation: Evaluation,
    title: str = "",
    legend_size: int = 8,
    xscale: str = "log",
    legend: bool = True,
) -> None:
    """Faithfulness against circuit size on `ax` (`xscale` log, from the smallest size that holds
    one node, or linear: the axis CPR is the area on), one look per method (`STYLES`); the legend
    gives each ranking's CPR [95% CI]."""
    start = smallest_size(evaluation) if xscale == "log" else 0.0
    for curve in evaluation.curves.values():
        colour, marker, line = _style(curve.label)
        lo, hi = curve.cpr_ci
        label = f"{curve.label}  {curve.cpr:.3f} [{lo:.2f}, {hi:.2f}]"
        points = [(f, v) for f, v in zip(curve.fractions, curve.faithfulness, strict=True) if f >= start]
        ax.plot(
            [f for f, _ in points], [v for _, v in points], linestyle=line, marker=marker, ms=4, lw=1.4,
            label=label, color=colour,
        )  # fmt: skip
    ax.set_xscale(xscale)
    if xscale == "linear":
        ax.set_xlim(0, 1)
    else:  # ticks at the scored sizes: a log axis from 0.02 would otherwise show one label
        ax.set_xlim(start / 1.25, 1.25)
        sizes = sorted({f for c in evaluation.curves.values() for f in c.fractions if f >= start})
        ax.set_xticks(sizes, [f"{f:g}" for f in sizes])
        ax.minorticks_off()
    ax.axhline(1.0, color="grey", lw=0.6)
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_xlabel(f"circuit size (fraction of ranked nodes, {xscale} axis)")
    ax.set_ylabel("faithfulness f(C)")
    note = (
        f"input node {evaluation.input_node}, {evaluation.ablation}, {evaluation.n_prompts} prompts "
        f"({evaluation.n_distinct} distinct)"
    )
    ax.set_title(f"{title}\n{note}" if title else note, fontsize=9)
    if legend:
        ax.legend(  # beside the panel, where it hides no curve
            fontsize=legend_size, loc="upper left", bbox_to_anchor=(1.02, 1.0), title="CPR [95% CI]",
            title_fontsize=legend_size, frameon=False,
        )  # fmt: skip


def draw_summary(ax, evaluations: dict[str, Evaluation], settings: dict[str, str], title: str = "") -> None:
    """CPR per task (groups) and method (bars in their `STYLES` colour), with the 95% intervals;
    zero-shot tasks' names in red."""
    import numpy as np

    methods = list(dict.fromkeys(m for ev in evaluations.values() for m in ev.curves))
    width = 0.8 / max(len(methods), 1)
    for j, m in enumerate(methods):
        xs, ys, errs = [], [], [[], []]
        for i, ev in enumerate(evaluations.values()):
            c = ev.curves.get(m)
            if c is None:
                continue
            xs.append(i - 0.4 + (j + 0.5) * width)
            ys.append(c.cpr)
            errs[0].append(max(c.cpr - c.cpr_ci[0], 0.0))
            errs[1].append(max(c.cpr_ci[1] - c.cpr, 0.0))
        colour, _, line = _style(m)
        dashed = not isinstance(line, str) or line != "-"
        ax.bar(
            xs, ys, width, yerr=np.array(errs), color=colour, label=m, capsize=1.5, ecolor="black",
            error_kw={"lw": 0.8}, hatch="//" if dashed else None, edgecolor="white", linewidth=0.3,
        )  # fmt: skip
    names = list(evaluations)
    ax.set_xticks(range(len(names)))
    labels = ax.set_xticklabels(
        [f"{n}\n(zero-shot)" if settings.get(n) == "zero-shot" else n for n in names], fontsize=9
    )
    for label, n in zip(labels, names, strict=True):
        if settings.get(n) == "zero-shot":
            label.set_color("tab:red")
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(0, 1.05 * max(1.0, *(c.cpr_ci[1] for ev in evaluations.values() for c in ev.curves.values())))
    ax.set_ylabel("CPR (area under f, linear axis)")
    ax.grid(axis="y", lw=0.4, alpha=0.6)
    ax.set_axisbelow(True)
    head = "CPR per task and method, 95% intervals (controls hatched)"
    ax.set_title(f"{title}: {head}" if title else head, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _mark_zero_shot(ax) -> None:
    """A zero-shot (held-out) task's panel: red title and frame."""
    ax.title.set_color("tab:red")
    for spine in ax.spines.values():
        spine.set_edgecolor("tab:red")
        spine.set_linewidth(1.5)


def _pyplot():
    """`matplotlib.pyplot` on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    from dfa.core.io import atomic_write

    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)


def curve_figure(evaluations: dict[str, Evaluation], title: str = "", settings: dict[str, str] | None = None):
    """With several evaluations (e.g. one per task), first a summary panel (`draw_summary`); then
    one row per evaluation: the curves on a log axis (small circuits visible) and on the linear
    axis (CPR is the area under it, the legend's CPR), zero-shot tasks (`settings[name] ==
    "zero-shot"`) marked in red."""
    plt = _pyplot()
    if not evaluations:
        raise DfaError("Nothing to plot.")
    settings = settings or {}
    summary = len(evaluations) > 1
    rows = len(evaluations) + summary
    fig = plt.figure(figsize=(15.5, 4.4 * rows))
    grid = fig.add_gridspec(rows, 2)
    if summary:
        draw_summary(fig.add_subplot(grid[0, :]), evaluations, settings, title)
    for r, (name, ev) in enumerate(evaluations.items(), start=summary):
        log_ax, lin_ax = fig.add_subplot(grid[r, 0]), fig.add_subplot(grid[r, 1])
        setting = settings.get(name)
        head = f"{title} / {name}" if title and name else title or name
        head = f"{head} ({setting})" if setting else head
        draw_curves(log_ax, ev, head, xscale="log", legend=False)
        draw_curves(lin_ax, ev, head, xscale="linear")
        if setting == "zero-shot":
            _mark_zero_shot(log_ax)
            _mark_zero_shot(lin_ax)
    return fig


def plot_curves(evaluation: Evaluation, path: str | Path, title: str = "") -> Path:
    """One evaluation's curves as a PNG (log and linear axis side by side)."""
    return _save_figure(curve_figure({"": evaluation}, title), path)


def plot_grid(
    evaluations: dict[str, Evaluation],
    path: str | Path,
    title: str = "",
    settings: dict[str, str] | None = None,
) -> Path:
    """Several evaluations (e.g. one per task) as rows of one PNG (`curve_figure`)."""
    return _save_figure(curve_figure(evaluations, title, settings), path)


def weight_figure(amap: AlignmentMap):
    plt = _pyplot()

    W = amap.W.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(8, 4))
    lim = float(abs(W).max()) or 1.0
    im = ax.imshow(W, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_xlabel(f"target node ({amap.n_tgt})")
    ax.set_ylabel(f"source node ({amap.n_src})")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def sweep_heatmap(result: dict[str, Any], path: Path) -> Path | None:
    import numpy as np

    plt = _pyplot()
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


def cross_scale_plot(report: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()

    models = report["models"]
    fig, axes = plt.subplots(1, 1 + len(models), figsize=(4.2 * (1 + len(models)), 3.6))
    ax = axes[0]
    for task in report["tasks"]:
        rows = [p for p in report["pairs"] if p["task"] == task and p["small"] == models[0]]
        ax.plot([p["large"] for p in rows], [p["overlap"] for p in rows], marker="o", label=task)
    for floor, _ in READINGS[:2]:
        ax.axhline(floor, color="grey", lw=0.6, ls="--")
    ax.set(ylim=(0, 1), ylabel=f"overlap with {models[0]}'s circuit (role-aligned)", title="overlap vs scale")
    ax.legend(fontsize=7)
    for ax, m in zip(axes[1:], models, strict=True):
        top = report["census"][m]["top"]
        for role in ROLES:
            ax.scatter([h["depth"] for h in top[role]], [h["score"] for h in top[role]], label=role, s=14)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="relative depth", title=f"{m}: top heads per role")
    axes[-1].legend(fontsize=6)
    fig.tight_layout()
    return _save_figure(fig, path)
