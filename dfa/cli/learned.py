"""`dfa map-nodes`: what a trained map learned across its training tasks, the target nodes it
raises into its top circuit for many tasks against those it raises for one
(`dfa.experiments.map_nodes`)."""

from __future__ import annotations

import argparse

from dfa.cli.flags import output_flag


def cmd_map_nodes(args: argparse.Namespace) -> int:
    from dfa.core.errors import DfaError
    from dfa.core.io import write_json
    from dfa.experiments.map_nodes import learned_nodes, learned_table
    from dfa.experiments.runs import Run
    from dfa.store import ModelPool

    if not 0 < args.top <= 1:
        raise DfaError(f"--top is a share of the mapped target nodes, in (0, 1]; got {args.top}.")
    result = learned_nodes(Run(args.map), ModelPool("cpu"), args.top)
    print(learned_table(result, args.most), end="")
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "map-nodes",
        help="the target nodes a trained map raises over its start, for many tasks or for one",
        description="For each training task of a run, the map's top circuit (--top of the mapped "
        "target nodes, from the task's cached source scores) against its start's (the relative-depth "
        "prior): the nodes it raises on the most tasks, then those it raises on one task only.",
    )
    p.add_argument("--map", required=True, help="a run folder (`dfa train` prints it)")
    p.add_argument("--top", type=float, default=0.1, help="the top circuit's share of the nodes (default: 0.1)")
    p.add_argument("--most", type=int, default=8, help="rows of nodes raised on several tasks (default: 8)")
    output_flag(p, "--json", kind="file", suffixes=(".json",), default=None, help="also write every node's row")
    p.set_defaults(func=cmd_map_nodes)
