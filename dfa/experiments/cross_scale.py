"""Cross-scale analysis: is a task's circuit a property of the algorithm, or of one model's size?

For each task, every model of a ladder gets its own circuit, discovered independently with the
same attribution method on the same number of its own train prompts, and cut at the same
fraction of its nodes (MIB's `k = int(fraction * N)`, `input` kept). A smaller model's circuit
`C_s` is carried to a larger model by role alignment: `phi(C_s)` is the `|C_l|` target nodes
with the most mass under the soft role map (`dfa.methods.role_matrix`: heads by role profile
x relative depth, MLPs by relative-depth overlap) of `C_s`'s indicator. The overlap is

    |phi(C_s) & C_l| / |C_l|

read as: >= 70% scale-invariant; 40-70% the core transfers and the periphery varies; < 30%
scale-specific (30-40% sits between the last two: "weak"). `chance` is the overlap a random
node set of the same size would have (`|C_l| / N_l`), and `depth_overlap` the same overlap with
relative-depth alignment alone (the role profiles switched off), so that what the roles add is
visible. Each circuit's faithfulness (patching, input kept) is measured on its own model's test
prompts at the same fraction.

Outputs: `cross_scale.json`, `cross_scale.md` and `cross_scale.png` (overlap against target
size per task, and each model's role census by relative depth).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfa.core.alignment import depth_matrix, role_matrix
from dfa.core.circuits import task_prompts
from dfa.core.errors import DfaError
from dfa.core.evaluate import circuit_nodes, circuit_size, evaluate_circuits
from dfa.core.graph import NodeGraph
from dfa.core.io import atomic_write, write_json
from dfa.core.roles import ROLES, RoleScores
from dfa.core.tasks import get_task, task_sources
from dfa.report.figures import cross_scale_plot
from dfa.report.tables import READINGS, cross_scale_markdown
from dfa.store import ModelPool, ScoreSpec, cached_roles, cached_scores


def reading(overlap: float) -> str:
    for floor, text in READINGS:
        if overlap >= floor:
            return text
    return "scale-specific"


def project(circuit: Sequence[str], R: torch.Tensor, src: NodeGraph, tgt: NodeGraph, k: int) -> list[str]:
    """The `k` target nodes (heads and MLPs) with the most mass of `circuit` under map `R`."""
    src_names, tgt_names = src.mapped_names, tgt.mapped_names
    members = set(circuit)
    member = torch.tensor([name in members for name in src_names], dtype=R.dtype)
    mass = member @ R
    order = sorted(range(len(tgt_names)), key=lambda j: (-float(mass[j]), j))
    return [tgt_names[j] for j in order[:k]]


def monotone(values: Sequence[float]) -> str:
    """How a sequence of overlaps moves with target scale."""
    steps = [b - a for a, b in itertools.pairwise(values)]
    if not steps:
        return "one pair"
    if all(s <= 0 for s in steps):
        return "non-increasing"
    if all(s >= 0 for s in steps):
        return "non-decreasing"
    return "not monotone"


def census_rows(roles: RoleScores, top: int = 3) -> dict[str, list[dict[str, Any]]]:
    """Per role, the `top` heads by score with their relative depth (a census at any threshold
    is these rows filtered)."""
    graph = NodeGraph(roles.n_layers, roles.n_heads, include_input=False)
    heads = graph.heads
    out = {}
    for r, role in enumerate(ROLES):
        col = roles.profile()[:, r]
        best = torch.argsort(col, descending=True, stable=True)[:top].tolist()
        out[role] = [
            {"head": heads[i].name, "depth": round(heads[i].depth, 3), "score": round(float(col[i]), 4)}
            for i in best
        ]
    return out


def discover(
    pool: ModelPool,
    cache: Path,
    order: Sequence[str],
    tasks: Sequence[str],
    spec: ScoreSpec,
    fraction: float,
    n_eval: int,
) -> tuple[dict[str, dict[str, list[str]]], dict[str, dict[str, float]]]:
    """Per task and model: its circuit at `fraction` (node names) and that circuit's faithfulness."""
    circuits: dict[str, dict[str, list[str]]] = {}
    faithful: dict[str, dict[str, float]] = {}
    for task in tasks:
        circuits[task], faithful[task] = {}, {}
        for m in order:
            model = pool.get(m)
            graph = NodeGraph.from_model(model)
            scores = cached_scores(pool, cache, m, task, spec)
            whole = scores.for_graph(graph, f"{m} scores on {task}")
            circuits[task][m] = circuit_nodes(whole, graph, fraction)
            prompts = task_prompts(model, task, "test", n_eval, spec.seed)
            with np.errstate(invalid="ignore", divide="ignore"):  # areas over one fraction are NaN
                ev = evaluate_circuits(
                    model,
                    graph,
                    prompts.batches,
                    prompts.data.metric,
                    {"circuit": whole},
                    (fraction,),
                    n_boot=10,
                )
            faithful[task][m] = float(ev.curves["circuit"].faithfulness[0])
    return circuits, faithful


def overlap_pairs(
    order: Sequence[str],
    graphs: dict[str, NodeGraph],
    roles: dict[str, RoleScores],
    circuits: dict[str, dict[str, list[str]]],
    faithful: dict[str, dict[str, float]],
    tasks: Sequence[str],
) -> list[dict[str, Any]]:
    """Every (small, large) pair and task: the role-aligned and depth-aligned overlaps."""
    pairs = []
    for i, small in enumerate(order):
        for large in order[i + 1 :]:
            gs, gl = graphs[small], graphs[large]
            R = role_matrix(roles[small].profile(), roles[large].profile(), gs, gl)
            D = depth_matrix(gs, gl)
            for task in tasks:
                c_s, c_l = circuits[task][small], set(circuits[task][large])
                k = len(c_l)
                if k == 0:
                    continue
                by_role = len(set(project(c_s, R, gs, gl, k)) & c_l) / k
                pairs.append(
                    {
                        "task": task,
                        "small": small,
                        "large": large,
                        "overlap": by_role,
                        "reading": reading(by_role),
                        "depth_overlap": len(set(project(c_s, D, gs, gl, k)) & c_l) / k,
                        "chance": k / len(gl.mapped),
                        "k_small": len(c_s),
                        "k_large": k,
                        "faithfulness_small": faithful[task][small],
                        "faithfulness_large": faithful[task][large],
                    }
                )
    return pairs


def run_cross_scale(
    models: Sequence[str],
    tasks: Sequence[str],
    cache: Path,
    pool: ModelPool,
    method: str = "eap-ig-inputs",
    fraction: float = 0.1,
    n: int = 100,
    n_eval: int = 50,
    seed: int = 0,
    ig_steps: int = 5,
    threshold: float = 0.5,
) -> dict[str, Any]:
    if len(models) < 2:
        raise DfaError("Cross-scale analysis needs at least two models (small to large).")
    for t in tasks:
        get_task(t)
    graphs = {m: NodeGraph.from_model(pool.get(m)) for m in models}
    roles = {m: cached_roles(pool, cache, m) for m in models}
    order = sorted(models, key=lambda m: len(graphs[m]))  # small -> large by node count
    spec = ScoreSpec(method, "train", n, seed, "patching", ig_steps)
    circuits, faithful = discover(pool, cache, order, tasks, spec, fraction, n_eval)
    pairs = overlap_pairs(order, graphs, roles, circuits, faithful, tasks)
    trend = {}
    for task in tasks:
        seq = [p["overlap"] for p in pairs if p["task"] == task and p["small"] == order[0]]
        trend[task] = {"from": order[0], "overlaps": seq, "with_scale": monotone(seq)}
    return {
        "models": order,
        "tasks": list(tasks),
        "task_files": task_sources(tasks),
        "method": method,
        "fraction": fraction,
        "circuit_sizes": {m: circuit_size(fraction, len(graphs[m]) - 1) for m in order},
        "n_prompts": {"discovery": n, "faithfulness": n_eval},
        "readings": "overlap >= 0.7 scale-invariant; 0.4-0.7 core transfers, periphery varies; "
        "0.3-0.4 weak; < 0.3 scale-specific",
        "pairs": pairs,
        "trend": trend,
        "faithfulness": faithful,
        "circuits": circuits,
        "census": {
            m: {
                "threshold": threshold,
                "above": {r: [h._asdict() for h in heads] for r, heads in roles[m].census(threshold).items()},
                "top": census_rows(roles[m]),
            }
            for m in order
        },
    }


def write_cross_scale(report: dict[str, Any], out: Path) -> str:
    """`cross_scale.json`, `.md` and `.png` in `out`; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "cross_scale.json", report)
    text = cross_scale_markdown(report)
    atomic_write(out / "cross_scale.md", lambda tmp: tmp.write_text(text))
    cross_scale_plot(report, out / "cross_scale.png")
    return text
