"""`dfa check-cost`: the val check's cost at several budgets against gold's, and what each check's
circuit scores on the test split (`dfa.experiments.check_cost`)."""

from __future__ import annotations

import argparse

from dfa.cli.flags import output_flag, positive_int
from dfa.cli.map_flags import check_budget, device_args


def cmd_check_cost(args: argparse.Namespace) -> int:
    from dfa.core.io import write_json
    from dfa.experiments.check_cost import check_cost_cell, summary
    from dfa.experiments.runs import Run
    from dfa.store import ModelPool

    pool = ModelPool(args.device, args.dtype)
    cells = resumed(args)
    have = {(c["run"], c["task"]) for c in cells}
    for folder in args.maps:
        for task in Run(folder).config.holdout:
            if (str(folder), task) in have:
                continue
            cell = check_cost_cell(folder, task, args.budgets, pool, args.n, args.boot)
            cells.append(cell)
            print(
                f"{cell['src']} -> {cell['tgt']} {task}: gold {cell['gold_rows']} target rows, CPR "
                f"{cell['test_cpr']['gold']:.3f}; "
                + "; ".join(
                    f"{k}: {v['target_rows']} rows ({v['vs_gold']:.2f} x gold), chose {v['chosen']}, "
                    f"CPR {v['test_cpr']:.3f}"
                    for k, v in cell["checks"].items()
                ),
                flush=True,
            )
            if args.json:  # resumable: a finished cell is kept
                write_json(args.json, {"budgets": args.budgets, "split": "test", "n": args.n, "cells": cells})
        pool.release()
    lines = summary(cells)
    print("\n".join(lines))
    if args.json:
        report = {"budgets": args.budgets, "split": "test", "n": args.n, "summary": lines, "cells": cells}
        print(f"wrote {write_json(args.json, report)}")
    if args.plot:
        from dfa.report.costs import cost_figure

        print(f"wrote {cost_figure(cells, args.plot)}")
    return 0


def resumed(args: argparse.Namespace) -> list[dict]:
    """The cells `--json` holds from an earlier run with the same budgets and prompts (else none)."""
    import json
    from pathlib import Path

    path = Path(args.json) if args.json else None
    if path is None or not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    same = data.get("budgets") == args.budgets and data.get("n") == args.n
    return list(data.get("cells", [])) if same else []


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-cost",
        help="the val check's target cost at several budgets against gold's, and its circuits on test",
        description="For each run's held-out tasks: the val check at each budget (a share of gold's target "
        "rows, or full), its cost, and each chosen circuit's test CPR beside gold, depth, random and dfa.",
    )
    p.add_argument("--maps", nargs="+", required=True, help="run folders (each run's hold-outs are read)")
    p.add_argument(
        "--budgets",
        nargs="+",
        type=check_budget,
        default=[0.1, 0.2, 0.5, "full"],
        help="check budgets, the last the reference the others are paired with (default: 0.1 0.2 0.5 full)",
    )
    p.add_argument("--n", type=positive_int, default=100, help="test prompts per task (default: 100)")
    p.add_argument("--boot", type=positive_int, default=200, help="bootstrap resamples (default: 200)")
    output_flag(p, "--plot", kind="file", default=None, help="write the cost/quality figure here (PNG)")
    output_flag(
        p, "--json", kind="file", default=None,
        help="write the cells and the summary here (resumed: its cells of the same budgets and --n are kept)",
    )  # fmt: skip
    device_args(p)
    p.set_defaults(func=cmd_check_cost)
