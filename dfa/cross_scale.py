"""Cross-scale analysis: is a task's circuit a property of the algorithm, or of one model's size?

For each task, every model of a ladder gets its own circuit, discovered independently with the
same attribution method on the same number of its own train prompts, and cut at the same
fraction of its nodes (MIB's `k = int(fraction * N)`, `input` kept). A smaller model's circuit
`C_s` is carried to a larger model by role alignment: `phi(C_s)` is the `|C_l|` target nodes
with the most mass under the soft role map (`dfa.baselines.role_matrix`: heads by role profile
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
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfa.baselines import depth_matrix, role_matrix
from dfa.circuits import task_prompts
from dfa.errors import DfaError
from dfa.evaluate import circuit_nodes, circuit_size, evaluate_circuits
from dfa.graph import NodeGraph
from dfa.io import atomic_write, write_json
from dfa.roles import ROLES, RoleScores, cached_roles
from dfa.tasks import get_task

READINGS = ((0.7, "scale-invariant"), (0.4, "core transfers, periphery varies"), (0.3, "weak"))


def reading(overlap: float) -> str:
    for floor, text in READINGS:
        if overlap >= floor:
            return text
    return "scale-specific"


def project(circuit: Sequence[str], R: torch.Tensor, src: NodeGraph, tgt: NodeGraph, k: int) -> list[str]:
    """The `k` target nodes (heads and MLPs) with the most mass of `circuit` under map `R`."""
    src_names = [n.name for n in src if n.kind != "input"]
    tgt_names = [n.name for n in tgt if n.kind != "input"]
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


def run_cross_scale(
    models: Sequence[str],
    tasks: Sequence[str],
    cache: Path,
    method: str = "eap-ig-inputs",
    fraction: float = 0.1,
    n: int = 100,
    n_eval: int = 50,
    seed: int = 0,
    ig_steps: int = 5,
    threshold: float = 0.5,
) -> dict[str, Any]:
    from dfa.training import cached_scores, shared_model

    if len(models) < 2:
        raise ValueError("Cross-scale analysis needs at least two models (small to large).")
    for t in tasks:
        get_task(t)
    loaded = {m: shared_model(m) for m in models}
    graphs = {m: NodeGraph.from_model(model) for m, model in loaded.items()}
    roles = {m: cached_roles(m, cache, model=model) for m, model in loaded.items()}
    order = sorted(models, key=lambda m: len(graphs[m]))  # small -> large by node count
    circuits: dict[str, dict[str, list[str]]] = {}
    faithful: dict[str, dict[str, float]] = {}
    for task in tasks:
        circuits[task], faithful[task] = {}, {}
        for m in order:
            model, graph = loaded[m], graphs[m]
            scores = cached_scores(m, task, method, "train", n, seed, cache, ig_steps=ig_steps, model=model)
            whole = scores.for_graph(graph, f"{m} scores on {task}")
            circuits[task][m] = circuit_nodes(whole, graph, fraction)
            prompts = task_prompts(model, task, "test", n_eval, seed)
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
    pairs = []
    for i, small in enumerate(order):
        for large in order[i + 1 :]:
            gs, gl = graphs[small], graphs[large]
            R = role_matrix(roles[small].profile(), roles[large].profile(), gs, gl)
            D = depth_matrix(gs, gl)
            n_large = len([x for x in gl if x.kind != "input"])
            for task in tasks:
                c_s, c_l = circuits[task][small], set(circuits[task][large])
                k = len(c_l)
                if k == 0:
                    continue
                by_role = len(set(project(c_s, R, gs, gl, k)) & c_l) / k
                by_depth = len(set(project(c_s, D, gs, gl, k)) & c_l) / k
                pairs.append(
                    {
                        "task": task,
                        "small": small,
                        "large": large,
                        "overlap": by_role,
                        "reading": reading(by_role),
                        "depth_overlap": by_depth,
                        "chance": k / n_large,
                        "k_small": len(c_s),
                        "k_large": k,
                        "faithfulness_small": faithful[task][small],
                        "faithfulness_large": faithful[task][large],
                    }
                )
    trend = {}
    for task in tasks:
        seq = [p["overlap"] for p in pairs if p["task"] == task and p["small"] == order[0]]
        trend[task] = {"from": order[0], "overlaps": seq, "with_scale": monotone(seq)}
    return {
        "models": order,
        "tasks": list(tasks),
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


def markdown(report: dict[str, Any]) -> str:
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


def plot(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dfa.evaluate import _save_figure

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


def main(argv: Sequence[str] | None = None) -> int:
    """`scripts/cross_scale.py`: circuits of a ladder aligned by roles, with their overlaps."""
    import argparse

    p = argparse.ArgumentParser(description=(main.__doc__ or "").split("\n")[0])
    p.add_argument("--models", nargs="+", default=["toy-gpt2-s", "toy-gpt2-m", "toy-gpt2-l"])
    p.add_argument("--tasks", nargs="+", default=["ioi", "sva"])
    p.add_argument("--method", default="eap-ig-inputs")
    p.add_argument("--fraction", type=float, default=0.1, help="circuit size as a share of nodes")
    p.add_argument("--n", type=int, default=100, help="train prompts per model for discovery")
    p.add_argument("--n-eval", type=int, default=50, help="test prompts for each circuit's faithfulness")
    p.add_argument("--cache", default="checkpoints/cache", help="score and role cache")
    p.add_argument("--out", default="results/cross_scale", help="output folder")
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        report = run_cross_scale(
            args.models, args.tasks, Path(args.cache), args.method, args.fraction, args.n, args.n_eval
        )
    except (DfaError, ValueError) as err:
        print(f"cross_scale: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "cross_scale.json", report)
    text = markdown(report)
    atomic_write(out / "cross_scale.md", lambda tmp: tmp.write_text(text))
    plot(report, out / "cross_scale.png")
    print(text)
    print(f"wrote {out}/cross_scale.json, .md, .png ({time.perf_counter() - start:.0f}s)")
    return 0
