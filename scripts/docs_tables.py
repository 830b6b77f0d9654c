"""Write every results table of README.md and docs/ from the committed results/*.json.

`python scripts/docs_tables.py` rewrites, in place, each block between
`<!-- generated: NAME -->` and `<!-- /generated -->` in README.md and docs/**/*.md with the table
NAME renders from its JSON (after a rerun of any results file, run it and commit the diff);
`--check` rewrites nothing and exits 1 naming every block that differs from its JSON (the tests
run it). Nothing in those blocks is written by hand.

The site's CLI reference (from `dfa.cli.build_parser`) and its figures come from
`scripts/docs_hooks.py`; the site is `docs/` with `mkdocs.yml` (`mkdocs build --strict`, run by
`.ci/run`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ablation_table import markdown as ablation_markdown

from dfa.experiments.loto_ceiling import ceiling_table
from dfa.experiments.map_nodes import learned_table
from dfa.experiments.pair_agnostic import markdown as pair_agnostic_markdown
from dfa.experiments.pair_agnostic import summary as pair_agnostic_summary
from dfa.experiments.real_models import first_token_table
from dfa.experiments.real_models import markdown_table as real_models_markdown
from dfa.experiments.real_models import summary_table as real_models_summary
from dfa.experiments.real_models import kinds_table as real_models_kinds
from dfa.report.tables import COLUMNS, circuits_markdown, loto_table, prompt_notes, prompts, recovery, wins
from dfa.report.zero_shot import claimed, map_given

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- /generated -->)", re.DOTALL)
EVAL_METHODS = (
    "dfa", "dfa-val", "gold", "depth", "depth-order", "role", "role-assign", "direct", "depth-direct", "random", "permuted",
    "scrambled",
)  # fmt: skip
# A sweep's summary columns: the per-pair table's (label, which map, method), depth-order after depth.
_AFTER_DEPTH = [c[0] for c in COLUMNS].index("depth") + 1
SWEEP_COLUMNS = (*COLUMNS[:_AFTER_DEPTH], ("depth-order", "all", "depth-order"), *COLUMNS[_AFTER_DEPTH:])


def load(name: str) -> Any:
    return json.loads((ROOT / "results" / name).read_text())


def evaluation_markdown(report: dict[str, Any]) -> str:
    """A `dfa evaluate --json` report as Markdown: per task its setting, prompts, each method's CPR
    [95% CI] and dfa minus depth with its paired interval; then dfa's paired wins per setting."""
    rows = report["results"]
    methods = [m for m in EVAL_METHODS if any(r["method"] == m for r in rows)]
    by = {(r["task"], r["method"]): r for r in rows}
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    maps = [m for m in ("dfa", "dfa-val") if m in methods]
    lines = [
        "| task | setting | prompts | " + " | ".join(methods) + " | "
        + " | ".join(f"{m} - depth [paired 95%]" for m in maps) + " |",
        "|" + "---|" * (len(methods) + 3 + len(maps)),
    ]  # fmt: skip
    for t in tasks:
        cells = []
        for m in methods:
            r = by.get((t, m))
            cells.append("-" if r is None else f"{r['cpr']:.3f} [{r['cpr_ci'][0]:.2f}, {r['cpr_ci'][1]:.2f}]")
        for m in maps:
            d = (by.get((t, m), {}).get("paired") or {}).get("depth")
            cells.append("-" if d is None else f"{d['diff']:+.3f} [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}]")
        first = by[(t, "dfa")]
        lines.append(f"| {t} | {first['setting']} | {prompts(first)} | " + " | ".join(cells) + " |")
    lines += ["", "prompts: test pairs / distinct clean prompts (the units each interval resamples)."]
    lines += [n.removeprefix("note: ") + "." for n in prompt_notes(rows)]
    ind = [t for t in tasks if by[(t, "dfa")]["setting"] == "in-distribution" and (t, "gold") in by]
    if ind:
        dfa_mean, gold_mean = (sum(by[(t, m)]["cpr"] for t in ind) / len(ind) for m in ("dfa", "gold"))
        lines.append(
            f"dfa's mean in-distribution CPR, {dfa_mean:.3f}, is {100 * dfa_mean / gold_mean:.1f}% of gold's "
            f"{gold_mean:.3f} ({len(ind)} tasks)."
        )
    for label in maps:
        for setting in dict.fromkeys(r["setting"] for r in rows):
            if label == "dfa-val" and setting != "zero-shot":
                continue  # on a training task dfa-val is dfa
            sub = {**report, "results": [r for r in rows if r["setting"] == setting]}
            against = [m for m in methods if m not in ("dfa", "dfa-val", "gold")]
            counts = ", ".join(
                f"{m} {w['wins']} above / {w['losses']} below" for m, w in wins(sub, against, label).items()
            )
            n = len({r["task"] for r in sub["results"]})
            tasks_n = f"{n} task" + ("s" if n != 1 else "")
            lines.append(
                f"{label} against each method, {setting} ({tasks_n}; paired interval above / below 0): {counts}."
            )
    checks = [r for r in rows if r["method"] == "dfa-val" and (r.get("val_check") or {}).get("candidates")]
    lines += [f"val check, {r['task']}: {r['val_check']['why']}." for r in checks]
    return "\n".join(lines)


def depth_counts(cells: list[dict[str, Any]]) -> tuple[int, int, int]:
    """Cells whose paired interval is above depth, below depth, and above random."""
    up = sum(r["paired"]["depth"]["ci"][0] > 0 for r in cells)
    down = sum(r["paired"]["depth"]["ci"][1] < 0 for r in cells)
    chance = sum(r["paired"]["random"]["ci"][0] > 0 for r in cells)
    return up, down, chance


def loto_summary(rows: list[dict[str, Any]]) -> str:
    """LOTO per pair, for each way a held-out task gets its map (`dfa`: the run's zero-shot map;
    `dfa-val`: the val check's): cells above / below depth and above random by the paired
    interval, recovery of gold, and cells where the map claimed a gain (interval above 0) that the
    test shows as a loss."""
    lines = [
        (
            "| pair | held-out task gets | above depth | below depth | above random | recovery of gold (depth's) "
            "| claimed gain, test loss |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    what = {"dfa": "`dfa`: the run's zero-shot map", "dfa-val": "`dfa-val`: the val check's choice"}
    for src, tgt in dict.fromkeys((r["src"], r["tgt"]) for r in rows):
        share = recovery(rows, src, tgt)
        for m in [m for m in what if any(r["method"] == m for r in rows)]:
            cells = [r for r in rows if (r["src"], r["tgt"], r["method"]) == (src, tgt, m)]
            up, down, chance = depth_counts(cells)
            claim = (lambda r: claimed(r["zero_shot"])["ci"][0]) if m == "dfa" else (lambda r: r["val_check"]["gain"]["ci"][0])
            wrong = sum(claim(r) > 0 and r["paired"]["depth"]["ci"][1] < 0 for r in cells)
            lines.append(
                f"| {src} -> {tgt} | {what[m]} | {up} of {len(cells)} | {down} of {len(cells)} | {chance} of {len(cells)} | "
                f"{share[m]:.2f} ({share['depth']:.2f}) | {wrong} of {len(cells)} |"
            )
    return "\n".join(lines)


def held_out_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """A `dfa evaluate --json` report's zero-shot rows as LOTO rows (pair on each row, the run's
    zero-shot estimate on `dfa`'s), for `loto_summary`."""
    rows = []
    for r in report["results"]:
        if r.get("setting") == "zero-shot":
            extra = {"zero_shot": report["zero_shot"]} if r["method"] == "dfa" else {}
            rows.append({"src": report["src"], "tgt": report["tgt"], **r, **extra})
    return rows


def groups_summary(groups: dict[str, list[dict[str, Any]]]) -> str:
    """One row per held-out group of the real pair (its LOTO-style rows): how many tasks its map
    trained on (its inner folds' task count), and per way a new task gets its map the cells above /
    below depth and above random by the paired interval, and the recovery of gold (depth's)."""
    lines = [
        "| held-out group | training tasks | `dfa` is | `dfa` above / below depth, above random | "
        "`dfa-val` above / below depth, above random | recovery of gold: dfa, dfa-val (depth) |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in groups.items():
        r0 = rows[0]
        share = recovery(rows, r0["src"], r0["tgt"])
        zs = next(r["zero_shot"] for r in rows if r["method"] == "dfa")
        counts = []
        for m in ("dfa", "dfa-val"):
            cells = [r for r in rows if r["method"] == m]
            up, down, chance = depth_counts(cells)
            counts.append(f"{up} / {down}, {chance} of {len(cells)}")
        lines.append(
            f"| {name} | {zs['n_tasks']} | {'the map, ' if zs['epoch'] else ''}{map_given(zs)} | {counts[0]} | {counts[1]} | "
            f"{share['dfa']:.2f}, {share['dfa-val']:.2f} ({share['depth']:.2f}) |"
        )
    return "\n".join(lines)


def real_groups() -> dict[str, list[dict[str, Any]]]:
    """The real pair's held-out groups: the suite config's own four, then each LOTO group."""
    report = load("real_suite_holdout.json")
    out = {f"the suite's: {' + '.join(report['holdout'])}": held_out_rows(report)}
    loto = load("loto_real_suite.json")
    for name, tasks in loto["groups"].items():
        out[f"{name}: {' + '.join(tasks)}"] = [r for r in loto["results"] if r.get("group") == name]
    return out


def sweep_summary() -> str:
    """Both toy sweeps: per forward and cross pair, each column's CPR averaged over the tasks."""
    lines = [
        "| pair | " + " | ".join(c[0] for c in SWEEP_COLUMNS) + " |",
        "|" + "---|" * (len(SWEEP_COLUMNS) + 1),
    ]
    for ladder in ("toy-gpt2", "toy-neox"):
        result = load(f"sweep/sweep_{ladder}.json")
        by = {(r["src"], r["tgt"], r["map"], r["task"], r["method"]): r["cpr"] for r in result["rows"]}
        for src, tgt, kind in result["pairs"]:
            if kind == "reverse":
                continue
            cells = []
            for _, which, method in SWEEP_COLUMNS:
                maps = {t: "all" if which == "all" else f"loto-{t}" for t in result["tasks"]}
                vals = [by.get((src, tgt, maps[t], t, method)) for t in result["tasks"]]
                vals = [v for v in vals if v is not None]
                cells.append(f"{sum(vals) / len(vals):.3f}" if vals else "-")
            short = tgt.rsplit("-", 1)[1] if kind == "forward" else tgt
            lines.append(f"| {src} -> {short} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


TABLES: dict[str, Callable[[], str]] = {
    "main_toy": lambda: evaluation_markdown(load("main_toy.json")),
    "main_toy_direct": lambda: evaluation_markdown(load("main_toy_direct.json")),
    "real_pair": lambda: evaluation_markdown(load("real_pair.json")),
    "loto_toy": lambda: loto_table(load("loto_toy.json")["results"]),
    "loto_toy_summary": lambda: loto_summary(load("loto_toy.json")["results"]),
    "loto_real_pair": lambda: loto_table(load("loto_real_pair.json")["results"]),
    "loto_real_pair_summary": lambda: loto_summary(load("loto_real_pair.json")["results"]),
    "loto_ceiling_val": lambda: ceiling_table(load("loto_ceiling_val.json")["results"]),
    "real_suite_holdout": lambda: evaluation_markdown(load("real_suite_holdout.json")),
    "real_suite_holdout_summary": lambda: loto_summary(held_out_rows(load("real_suite_holdout.json"))),
    "real_groups_summary": lambda: groups_summary(real_groups()),
    "loto_real_suite": lambda: loto_table(load("loto_real_suite.json")["results"]),
    "loto_real_suite_summary": lambda: loto_summary(load("loto_real_suite.json")["results"]),
    "map_nodes_real_suite": lambda: learned_table(load("map_nodes_real_suite.json")),
    "real_models": lambda: real_models_markdown(load("real_models.json")).rstrip("\n"),
    "real_models_summary": lambda: real_models_summary(load("real_models.json")).rstrip("\n"),
    "real_models_kinds": lambda: real_models_kinds(load("real_models.json")).rstrip("\n"),
    "real_bos": lambda: first_token_table(load("real_bos.json")),
    "ablation": lambda: ablation_markdown(ROOT),
    "circuits_toy": lambda: circuits_markdown(
        *(load("circuits_toy.json")[k] for k in ("results", "methods"))
    ),
    "sweep_summary": sweep_summary,
    "pair_agnostic_toy": lambda: pair_agnostic_markdown(load("pair_agnostic_toy.json")).rstrip("\n"),
    "pair_agnostic_toy_8_summary": lambda: "\n".join(pair_agnostic_summary(load("pair_agnostic_toy_8.json"))),
}


def documents(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def render(text: str, where: str = "") -> tuple[str, list[str]]:
    """`text` with every generated block rewritten, and the names of the blocks that changed."""
    changed: list[str] = []

    def fill(m: re.Match[str]) -> str:
        name = m.group(2)
        if name not in TABLES:
            raise SystemExit(f"{where}: unknown generated table {name!r} (known: {', '.join(TABLES)})")
        body = TABLES[name]() + "\n"
        if body != m.group(3):
            changed.append(f"{where}: {name}")
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(fill, text), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="rewrite nothing; exit 1 if a table is stale")
    args = parser.parse_args(argv)
    stale: list[str] = []
    for path in documents():
        text = path.read_text()
        new, changed = render(text, str(path.relative_to(ROOT)))
        stale += changed
        if changed and not args.check:
            path.write_text(new)
    for line in stale:
        print(("stale: " if args.check else "rewrote: ") + line)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
