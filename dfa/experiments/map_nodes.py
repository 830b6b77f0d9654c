"""What a trained map learned across its training tasks: the target nodes it raises into its top
circuit for most tasks, against those it raises for one task only.

For each training task the map's logits (from the task's source scores) and its start's (the
relative-depth prior the run began from, `dfa.training.module.new_map`) each give a top set: the
`top` share of the mapped target nodes. A node is *raised* on a task when the trained map puts it
in its top set and the start does not. A node raised on most tasks is something the map learned
for the pair (a node that matters whatever the task); a node raised on one task is task-specific.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from dfa.core.graph import NodeGraph
from dfa.core.mapping import AlignmentMap, MapError
from dfa.core.scores import scores_graph
from dfa.experiments.runs import Run
from dfa.methods import map_logits
from dfa.store import ModelPool
from dfa.training.module import new_map


def raised(map_z: torch.Tensor, start_z: torch.Tensor, top: float) -> torch.Tensor:
    """`[tasks, nodes]` bool: in the map's top `ceil(top * nodes)` and not in the start's (ties
    broken by node order, the same for both)."""
    k = max(1, math.ceil(top * map_z.shape[1]))

    def top_set(z: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(z, dtype=torch.bool)
        out.scatter_(1, torch.topk(z, k, dim=1, sorted=False).indices, True)
        return out

    return top_set(map_z) & ~top_set(start_z)


def node_counts(flags: torch.Tensor, names: Sequence[str], tasks: Sequence[str]) -> list[dict[str, Any]]:
    """One row per node raised on at least one task: its name, how many tasks, which; most first
    (then by name)."""
    rows = [
        {"node": name, "tasks": [t for t, f in zip(tasks, flags[:, j].tolist(), strict=True) if f]}
        for j, name in enumerate(names)
        if flags[:, j].any()
    ]
    for r in rows:
        r["n"] = len(r["tasks"])
    return sorted(rows, key=lambda r: (-r["n"], r["node"]))


def learned_nodes(run: Run, pool: ModelPool, top: float = 0.1) -> dict[str, Any]:
    """`node_counts` of a dense map's run over its training tasks (their cached source scores)."""
    if not isinstance(run.map, AlignmentMap):
        raise MapError("Which nodes a map raises is read off a dense map; this run holds a features map.")
    c = run.config
    tasks = c.train_tasks
    src_nodes, tgt_nodes = list(run.meta["src_nodes"]), list(run.meta["tgt_nodes"])
    start = new_map(c, src_nodes, tgt_nodes)
    map_z, start_z = [], []
    for task in tasks:
        s = run.scores(pool, run.src, task)
        src_graph = scores_graph(s)
        source = src_graph.mapped_scores(s.for_graph(src_graph, f"{run.src} scores on {task}"))
        map_z.append(map_logits(run.map, source))
        start_z.append(map_logits(start, source))
    flags = raised(torch.stack(map_z), torch.stack(start_z), top)
    names = NodeGraph.from_names(tgt_nodes).mapped_names
    return {"run": str(run.folder), "top": top, "tasks": tasks, "nodes": node_counts(flags, names, tasks)}


def learned_table(result: dict[str, Any], most: int = 8) -> str:
    """Markdown: the nodes raised on the most tasks, then those raised on one task (by task)."""
    n_tasks = len(result["tasks"])
    rows = result["nodes"]
    shared = [r for r in rows if r["n"] > 1][:most]
    single = [r for r in rows if r["n"] == 1]
    lines = [
        f"Target nodes a map raises into its top {result['top']:.0%} over its start, on {n_tasks} "
        "training tasks:",
        "",
        "| node | raised on | tasks |",
        "|---|---|---|",
    ]
    for r in shared:
        which = "all" if r["n"] == n_tasks else ", ".join(r["tasks"])
        lines.append(f"| {r['node']} | {r['n']} of {n_tasks} | {which} |")
    by_task: dict[str, list[str]] = {}
    for r in single:
        by_task.setdefault(r["tasks"][0], []).append(r["node"])
    for task, nodes in by_task.items():
        lines.append(f"| {', '.join(nodes)} | 1 of {n_tasks} | {task} only |")
    return "\n".join(lines) + "\n"
