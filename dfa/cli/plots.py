"""`dfa plot`: an evaluation's figures redrawn from its results JSON (`dfa evaluate --json`), with no
model loaded: the summary and, beside it, each task's curves (`dfa.report.summary`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dfa.cli.flags import output_flag


def read_report(path: str) -> dict:
    """A results JSON with a `results` list (`dfa evaluate --json`), or a clear error."""
    from dfa.core.errors import DfaError

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DfaError(f"Cannot read the results JSON {path}: {err}.") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise DfaError(f"{path} is not a results JSON of `dfa evaluate --json` (no `results` list).")
    return data


def cmd_plot(args: argparse.Namespace) -> int:
    from dfa.report.summary import plot_report

    paths = plot_report(read_report(args.report), args.out, args.title or "")
    print(f"wrote {', '.join(map(str, paths))}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot", help="an evaluation's figures from its results JSON: the summary, and each task's curves"
    )
    p.add_argument("--report", required=True, help="a results JSON of `dfa evaluate --json`")
    output_flag(
        p, "--out", kind="file", suffixes=(".png",), required=True,
        help="the summary PNG; the per-task curves go beside it as NAME_curves.png",
    )  # fmt: skip
    p.add_argument("--title", default=None, help="the figures' title (default: SRC -> TGT)")
    p.set_defaults(func=cmd_plot)
