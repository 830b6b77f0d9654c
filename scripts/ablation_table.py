"""The ablation table of the training objective, from results/main_toy.json and
results/ablation/*.json (written by scripts/ablation_toy.sh): test CPR per task of each map, its
in-distribution mean as a share of gold's, and its paired wins over depth. Printed here; the docs'
copy is written by scripts/docs_tables.py."""

import json
from pathlib import Path

from dfa.report.tables import wins

VARIANTS = [
    ("density-anchor10-last", "first objective (density, anchor 10), last epoch: the old default"),
    ("density-anchor1-best", "density, anchor 1, best epoch"),
    ("curve-anchor1-last", "curve, anchor 1, last epoch"),
    ("main", "curve, anchor 1, best epoch: the default"),
    ("curve-logitdiff-best", "curve with the logit-diff fit, best epoch"),
]


def load(name: str, root: Path = Path()) -> dict:
    path = root / ("results/main_toy.json" if name == "main" else f"results/ablation/{name}.json")
    return json.loads(path.read_text())


def markdown(root: Path = Path()) -> str:
    reports = {name: load(name, root) for name, _ in VARIANTS}
    tasks = list(dict.fromkeys(r["task"] for r in reports["main"]["results"]))
    lines = [
        "| map | " + " | ".join(tasks) + " | in-dist mean / gold | above depth (in-dist) |",
        "|---|" + "---|" * (len(tasks) + 2),
    ]
    for name, label in VARIANTS:
        rows = reports[name]["results"]
        cpr = {(r["task"], r["method"]): r["cpr"] for r in rows}
        ind = [t for t in tasks if any(r["task"] == t and r["setting"] == "in-distribution" for r in rows)]
        share = sum(cpr[(t, "dfa")] for t in ind) / sum(cpr[(t, "gold")] for t in ind)
        sub = {**reports[name], "results": [r for r in rows if r["task"] in ind]}
        w = wins(sub, ["depth"])["depth"]
        cells = " | ".join(f"{cpr[(t, 'dfa')]:.3f}" for t in tasks)
        counts = f"{w['wins']} above, {w['losses']} below of {w['of']}"
        lines.append(f"| {label} | {cells} | {share:.3f} | {counts} |")
    for method in ("depth", "gold"):
        cpr = {r["task"]: r["cpr"] for r in reports["main"]["results"] if r["method"] == method}
        lines.append(f"| {method} | " + " | ".join(f"{cpr[t]:.3f}" for t in tasks) + " | | |")
    return "\n".join(lines)


def main() -> None:
    print(markdown())


if __name__ == "__main__":
    main()
