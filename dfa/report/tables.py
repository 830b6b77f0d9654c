"""Tables: Markdown and text renderings of evaluations, LOTO runs, sweeps, cross-scale reports and
the circuits table.

Where pairs share clean prompts, the tables show `pairs/distinct` and a note (`prompts`,
`prompt_notes`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from dfa.core.roles import ROLES
from dfa.methods import METHODS
from dfa.report.costs import cost_table
from dfa.report.zero_shot import estimate_table, val_check_table, zero_shot_text

# (column label, which map's evaluation: "all" or "loto", method) of a sweep's per-pair table.
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
# Fewer distinct clean prompts than this behind a number: its interval rests on few units.
FEW_PROMPTS = 30
# Cross-scale overlap readings: (floor, text), highest first; below the last, "scale-specific".
READINGS = ((0.7, "scale-invariant"), (0.4, "core transfers, periphery varies"), (0.3, "weak"))


def _ci(row: dict[str, Any]) -> tuple[float, float]:
    """A row's CPR interval; NaN where there is none (no bootstrap: `null`s in the JSON, or no
    `cpr_ci` at all)."""
    ci = row.get("cpr_ci") or (None, None)
    lo, hi = (x if x is not None else float("nan") for x in ci)
    return lo, hi


def prompts(row: dict[str, Any]) -> str:
    """`pairs/distinct clean prompts` behind a row (`?` where the JSON predates the count)."""
    distinct = row.get("n_distinct", row.get("n_distinct_prompts"))
    return f"{row.get('n_prompts', '?')}/{'?' if distinct is None else distinct}"


def prompt_notes(rows: Sequence[dict[str, Any]], split: str = "test") -> list[str]:
    """One line per task whose pairs rest on fewer than `FEW_PROMPTS` distinct clean prompts:
    its intervals resample those few (the table's `pairs/distinct` column shows every task's)."""
    notes = []
    for task, r in {r["task"]: r for r in rows}.items():
        n, distinct = r.get("n_prompts"), r.get("n_distinct", r.get("n_distinct_prompts"))
        if n is None or distinct is None or distinct >= min(n, FEW_PROMPTS):
            continue
        notes.append(
            f"note: {task}: its {n} {split} pairs hold only {distinct} distinct clean prompts, too few "
            f"for a tight interval (under {FEW_PROMPTS}); its intervals resample the {distinct} "
            f"(read them as {distinct} observations, not {n})"
        )
    return notes


def _task_width(tasks: Sequence[str]) -> int:
    """The task column: 15 wide, wider where a name (a task file's path) needs it."""
    return max([15, *(len(t) + 1 for t in tasks)])


def table(report: dict[str, Any]) -> str:
    """Tasks x methods: CPR [95% CI], with the setting of each task and its prompts (pairs /
    distinct clean prompts, the units the interval resamples)."""
    methods = list(dict.fromkeys(r["method"] for r in report["results"]))
    tasks = list(dict.fromkeys(r["task"] for r in report["results"]))
    by = {(r["task"], r["method"]): r for r in report["results"]}
    width = 22
    tw = _task_width(tasks)
    lines = [f"  {'task':<{tw}}{'setting':<17}{'prompts':>9}" + "".join(f"{m:>{width}}" for m in methods)]
    for t in tasks:
        first = next(r for r in report["results"] if r["task"] == t)
        setting = first["setting"]
        cells = []
        for m in methods:
            r = by.get((t, m))
            if r is None:
                cells.append(f"{'-':>{width}}")
                continue
            lo, hi = _ci(r)
            cells.append(f"{r['cpr']:>7.3f} [{lo:5.2f},{hi:5.2f}]".rjust(width))
        lines.append(f"  {t:<{tw}}{setting:<17}{prompts(first):>9}" + "".join(cells))
    return "\n".join(lines)


def wins(
    report: dict[str, Any],
    against: Sequence[str] = ("depth", "random", "permuted", "scrambled"),
    label: str = "dfa",
) -> dict[str, Any]:
    """Per baseline: on how many tasks the map (`label`: dfa or dfa-val) wins, counted only where
    the paired 95% interval of `CPR(map) - CPR(baseline)` is above 0 (`wins`), and where it is below
    0 (`losses`); rows without a paired interval (results written before it) count a higher CPR as
    a win."""
    by = {(r["task"], r["method"]): r for r in report["results"]}
    tasks = list(dict.fromkeys(r["task"] for r in report["results"]))
    out: dict[str, Any] = {}
    for b in against:
        cells = [t for t in tasks if (t, b) in by and (t, label) in by]
        won = lost = 0
        for t in cells:
            lo, hi = _paired_ci(by[(t, label)], by[(t, b)])
            won += lo > 0
            lost += hi < 0
        out[b] = {"wins": won, "losses": lost, "of": len(cells)}
    return out


def _paired_ci(dfa_row: dict[str, Any], other: dict[str, Any]) -> tuple[float, float]:
    """The paired interval of `CPR(dfa) - CPR(other)`; a zero-width one at the difference when
    the row has none."""
    paired = (dfa_row.get("paired") or {}).get(other["method"])
    if paired and all(x is not None and math.isfinite(x) for x in paired["ci"]):
        return float(paired["ci"][0]), float(paired["ci"][1])
    d = dfa_row["cpr"] - other["cpr"]
    return d, d


def paired_table(report: dict[str, Any], label: str = "dfa") -> str:
    """Tasks x methods: `CPR(label) - CPR(method)` with its paired 95% interval, `+` where the
    interval is above 0 and `-` where it is below (`label`: dfa, or dfa-val on its zero-shot rows)."""
    rows = [r for r in report["results"] if r["method"] == label and r.get("paired")]
    if label != "dfa":
        rows = [r for r in rows if r["setting"] == "zero-shot"]
    if not rows:
        return ""
    others = list(dict.fromkeys(m for r in rows for m in r["paired"]))
    width = 24
    tw = _task_width([r["task"] for r in rows])
    lines = [f"  {'task':<{tw}}" + "".join(f"{label + ' - ' + m:>{width}}" for m in others)]
    for r in rows:
        cells = []
        for m in others:
            p = r["paired"].get(m)
            if p is None:
                cells.append(f"{'-':>{width}}")
                continue
            lo, hi = (float("nan") if x is None else x for x in p["ci"])
            mark = "+" if lo > 0 else "-" if hi < 0 else " "
            cells.append(f"{p['diff']:+7.3f} [{lo:+5.2f},{hi:+5.2f}]{mark}".rjust(width))
        lines.append(f"  {r['task']:<{tw}}" + "".join(cells))
    return "\n".join(lines)


def against_reference(report: dict[str, Any], reference: dict[str, Any], tol: float = 5e-4) -> str:
    """How a report's CPRs compare with a reference report's (a committed results JSON), row by
    row (task, method): the largest difference, the rows that differ by more than `tol` (what a
    table printed to 3 decimals can show), and the rows either one lacks."""
    ours = {(r["task"], r["method"]): r["cpr"] for r in report["results"]}
    theirs = {(r["task"], r["method"]): r["cpr"] for r in reference["results"]}
    both = sorted(set(ours) & set(theirs))
    if not both:
        return "against the reference: no (task, method) row in common"
    diffs = {k: ours[k] - theirs[k] for k in both}
    worst = max(both, key=lambda k: abs(diffs[k]))
    off = [k for k in both if abs(diffs[k]) > tol]
    text = (
        f"against the reference: {len(both)} rows (task, method) in common, largest |CPR difference| "
        f"{abs(diffs[worst]):.4f} ({worst[0]} {worst[1]}); {len(off)} differ by more than {tol:g}"
    )
    if off:
        text += (
            ": "
            + ", ".join(f"{t} {m} {diffs[t, m]:+.4f}" for t, m in off[:8])
            + (" ..." if len(off) > 8 else "")
        )
    only = sorted(set(ours) ^ set(theirs))
    if only:
        text += f"; {len(only)} rows in one of the two only"
    return text


def loto_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: pair x held-out task, each method's zero-shot CPR [CI], and the map's wins."""
    present = {r["method"] for r in rows}
    methods = [m for m in METHODS if m in present]
    lines = [
        "| pair | held-out task | prompts | " + " | ".join(methods) + " |",
        "|" + "---|" * (len(methods) + 3),
    ]
    by = {(r["src"], r["tgt"], r["task"], r["method"]): r for r in rows}
    keys = list(dict.fromkeys((r["src"], r["tgt"], r["task"]) for r in rows))
    maps = [m for m in ("dfa", "dfa-val") if m in present]  # the map's rows, each against the rest
    wins = {(a, m): 0 for a in maps for m in methods if m not in (a, "dfa", "gold")}
    losses = dict.fromkeys(wins, 0)
    for src, tgt, task in keys:
        cells = []
        for m in methods:
            r = by.get((src, tgt, task, m))
            if r is None:
                cells.append("-")
                continue
            lo, hi = _ci(r)
            cells.append(f"{r['cpr']:.3f} [{lo:.2f}, {hi:.2f}]")
        for a, m in wins:
            mine, other = by.get((src, tgt, task, a)), by.get((src, tgt, task, m))
            if mine is not None and other is not None:
                lo, hi = _paired_ci(mine, other)
                wins[(a, m)] += lo > 0
                losses[(a, m)] += hi < 0
        n = prompts(by[(src, tgt, task, "dfa")])
        lines.append(f"| {src} -> {tgt} | {task} | {n} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("prompts: test pairs / distinct clean prompts (the units each interval resamples).")
    for a in maps:
        lines.append(
            f"{a}'s zero-shot CPR against each method (cells where the paired 95% interval of the "
            "difference is above 0 / below 0): "
            + ", ".join(f"{m} {wins[(b, m)]} above / {losses[(b, m)]} below of {len(keys)}" for b, m in wins if b == a)
        )
    for src, tgt in dict.fromkeys((k[0], k[1]) for k in keys):
        share = recovery(rows, src, tgt)
        if share:
            lines.append(
                f"{src} -> {tgt}: recovery of gold (summed CPR over the held-out tasks / gold's): "
                + ", ".join(f"{m} {v:.2f}" for m, v in share.items())
            )
    extra = [t for t in (estimate_table(rows), val_check_table(rows), cost_table(rows)) if t]
    return "\n\n".join(["\n".join(lines), *extra])


def recovery(rows: list[dict[str, Any]], src: str, tgt: str) -> dict[str, float]:
    """Per method, its CPR summed over a pair's tasks as a share of gold's on the same tasks."""
    by = {(r["task"], r["method"]): r["cpr"] for r in rows if r["src"] == src and r["tgt"] == tgt}
    tasks = [t for t, m in by if m == "gold"]
    gold = sum(by[(t, "gold")] for t in tasks)
    methods = list(dict.fromkeys(m for _, m in by if m != "gold"))
    return {
        m: sum(by[(t, m)] for t in tasks) / gold
        for m in methods
        if gold > 0 and all((t, m) in by for t in tasks)
    }


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


def sweep_markdown(result: dict[str, Any]) -> str:
    rows, tasks, pairs = result["rows"], result["tasks"], result["pairs"]
    lines = [f"# Sweep: {result['ladder']} ({', '.join(tasks)})", ""]
    lines += [
        (
            "CPR on 'test' prompts (patching, input kept). dfa (in-dist): the map trained on every "
            "task; dfa (zero-shot): the map trained without the task; controls from the zero-shot map. "
            "prompts: test pairs / distinct clean prompts (the units each interval resamples)."
        ),
        "",
    ]
    counted = {
        (r["src"], r["tgt"], r["task"]): r for r in rows if r["map"] == "all" and r["method"] == "gold"
    }
    summary = []
    role_wins = [0, 0]
    for src, tgt, kind in pairs:
        table = pair_table(rows, src, tgt, tasks)
        lines += [
            f"## {src} -> {tgt} ({kind})",
            "",
            "| task | prompts | " + " | ".join(label for label, _, _ in COLUMNS) + " |",
        ]
        lines.append("|---" * (len(COLUMNS) + 2) + "|")
        for t, vals in zip(tasks, table, strict=True):
            shown = prompts(counted[(src, tgt, t)]) if (src, tgt, t) in counted else "-"
            lines.append(f"| {t} | {shown} | " + " | ".join(_fmt(v) for v in vals) + " |")
            zs, role = vals[2], vals[3]
            if zs is not None and role is not None:
                role_wins[0] += zs > role
                role_wins[1] += 1
        means = [_mean([vals[j] for vals in table]) for j in range(len(COLUMNS))]
        lines.append("| mean | | " + " | ".join(_fmt(v) for v in means) + " |")
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


def cross_scale_markdown(report: dict[str, Any]) -> str:
    sizes = ", ".join(f"{m} {k}" for m, k in report["circuit_sizes"].items())
    lines = [
        f"# Cross-scale circuits: {', '.join(report['models'])}",
        "",
        (
            f"Circuits: {report['method']} on {report['n_prompts']['discovery']} train prompts per "
            f"model, top {report['fraction']:g} of the nodes ({sizes} nodes), input kept; faithfulness "
            f"on {report['n_prompts']['faithfulness']} test prompts. Overlap = |phi(C_small) & "
            f"C_large| / |C_large|, phi = role alignment. {report['readings']}."
        ),
        "",
        "| task | small -> large | overlap | reading | depth-only overlap | chance | faithfulness small / large |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in report["pairs"]:
        lines.append(
            f"| {p['task']} | {p['small']} -> {p['large']} | {p['overlap']:.2f} | {p['reading']} | "
            f"{p['depth_overlap']:.2f} | {p['chance']:.2f} | "
            f"{p['faithfulness_small']:.2f} / {p['faithfulness_large']:.2f} |"
        )
    lines += ["", "Overlap with scale (from the smallest model):", ""]
    for task, t in report["trend"].items():
        lines.append(f"- {task}: {', '.join(f'{v:.2f}' for v in t['overlaps'])} ({t['with_scale']})")
    lines += [
        "",
        f"## Role census (heads scoring above {next(iter(report['census'].values()))['threshold']})",
        "",
    ]
    lines += [
        "| model | role | heads above the threshold | top heads (score, relative depth) |",
        "|---|---|---|---|",
    ]
    for m, c in report["census"].items():
        for role in ROLES:
            above = ", ".join(f"{h['name']} ({h['depth']:.2f})" for h in c["above"][role]) or "none"
            top = ", ".join(f"{h['head']} {h['score']:.3f} @{h['depth']:.2f}" for h in c["top"][role])
            lines.append(f"| {m} | {role} | {above} | {top} |")
    return "\n".join(lines) + "\n"


def _cell(result: dict[str, Any], label: str) -> str:
    c = result["curves"][label]
    return f"{c['cpr']:.3f} [{c['cpr_ci'][0]:.2f}, {c['cpr_ci'][1]:.2f}]"


def circuits_markdown(results: list[dict[str, Any]], methods: Sequence[str]) -> str:
    """Rows of model x task: its prompts (pairs / distinct), each method's CPR [95% CI], random's,
    and each method's margin."""
    head = ["model", "task", "prompts", *methods, "random", *[f"{m} - random" for m in methods]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        rand = r["curves"]["random"]["cpr"]
        margins = [f"{r['curves'][m]['cpr'] - rand:+.3f}" for m in methods]
        cells = [
            r["model"], r["task"], prompts(r), *[_cell(r, m) for m in methods], _cell(r, "random"), *margins
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluation_text(report: dict[str, Any], methods: Sequence[str]) -> str:
    """An evaluation's tables as `dfa evaluate` and `dfa transfer` print them: the zero-shot map's
    estimate (when a task is zero-shot), CPR per task and method, the prompts behind each row, and
    the map paired against each other method with the counts of wins."""
    from dfa.methods import names

    split, out = report["split"], []
    if any(r["setting"] == "zero-shot" for r in report["results"]) and "dfa" in methods:
        out.append(zero_shot_text(report.get("zero_shot")))
    out.append(table(report))
    out.append(f"prompts: {split} pairs / distinct clean prompts (the units each interval resamples)")
    out += prompt_notes(report["results"], split)
    if "dfa" not in methods:
        return "\n".join(out)
    against = [m for m in methods if m in names("alignment", "control")]
    for label in [m for m in ("dfa", "dfa-val") if m in methods]:
        paired = paired_table(report, label)
        if paired:
            out += [f"\npaired: CPR({label}) - CPR(method) on the same prompts [95% CI]; + above 0, - below", paired]
        for setting in ("in-distribution", "zero-shot") if label == "dfa" else ("zero-shot",):
            sub = {**report, "results": [r for r in report["results"] if r["setting"] == setting]}
            if sub["results"] and against:
                w = wins(sub, against, label)
                out.append(
                    f"  {label} vs ({setting}; paired interval above / below 0): "
                    + ", ".join(f"{b} {v['wins']} up {v['losses']} down of {v['of']}" for b, v in w.items())
                )
    checks = [r for r in report["results"] if r["method"] == "dfa-val" and r["setting"] == "zero-shot"]
    out += [f"val check, {r['task']}: {r['val_check']['why']}" for r in checks if r.get("val_check")]
    costs = cost_table(report["results"], report.get("training_cost"), report.get("source_cost"))
    return "\n".join([*out, *(["", costs] if costs else [])])
