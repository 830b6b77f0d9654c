"""What zero-shot transfer could get from the other tasks at best, for a linear map: per model pair
and held-out task, a map fitted (ridge, closed form) to the TARGET's own gold scores on the other
tasks, applied to the held-out task's source scores, evaluated as LOTO evaluates the trained map.

It is not a method a user could run (it reads the target's gold circuits of the training tasks,
which a trained map only sees through the target's behaviour), but a reference for the LOTO table:
where even this map does not beat `depth` on a held-out task, a map trained on the same tasks has
nothing to learn that would. The fit is of the residual from the depth map: with `d_u` the
relative-depth projection of task `u`'s source scores and `g_u` the ranks of its gold scores (both
in [0, 1]), `W` minimises `sum_u |g_u - d_u - rbar - s_u W|^2 + lam |W|^2` over the other tasks
(`s_u` z-scored source scores, `rbar` their mean residual, which plays the map's offset `b`), and
the held-out task is ranked by `d_t + rbar + s_t W`.

`ridge_residual` fits the map, `ceiling_rankings` ranks the held-out tasks; `dfa loto-ceiling` runs
it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from dfa.core.circuits import task_prompts
from dfa.core.errors import DfaError
from dfa.core.evaluate import evaluate_circuits
from dfa.core.graph import NodeGraph
from dfa.core.io import write_json
from dfa.core.mapping import normalise_scores
from dfa.core.scores import scores_graph
from dfa.experiments.loto import parse_pair
from dfa.methods import depth_scores, depth_tie_scores
from dfa.store import ModelPool, ScoreSpec, cached_scores


def ridge_residual(X: torch.Tensor, R: torch.Tensor, x: torch.Tensor, lam: float) -> torch.Tensor:
    """`rbar + x @ W` for `W` the ridge fit of the centred rows of `R` `[m, n_tgt]` on the rows of
    `X` `[m, n_src]` (dual form, so `lam = 0` is the minimum-norm interpolation: a training row's
    `x` gives its own residual back)."""
    rbar = R.mean(0)
    gram = X @ X.T + lam * torch.eye(len(X), dtype=X.dtype)
    return rbar + (x @ X.T) @ torch.linalg.solve(gram, R - rbar)


def _unit(v: torch.Tensor) -> torch.Tensor:
    v = v.double()
    return (v - v.min()) / (v.max() - v.min()).clamp_min(1e-12)


def ceiling_rankings(
    source: dict[str, torch.Tensor],
    gold: dict[str, torch.Tensor],
    src_graph: NodeGraph,
    tgt_graph: NodeGraph,
    task: str,
    lams: list[float],
    seed: int = 0,
) -> dict[str, Any]:
    """Whole-target-graph rankings for `task` held out: gold, depth (random tie orders) and the
    ridge map of each `lam` (`ridge-LAM`); `source` and `gold` hold mapped-node scores per task."""
    others = [u for u in source if u != task]
    if len(others) < 2:
        raise DfaError("The ceiling needs at least two other tasks to fit a map on.")

    def depth(u: str) -> torch.Tensor:
        return _unit(tgt_graph.mapped_scores(depth_scores(src_graph, tgt_graph, source[u])))

    def z(u: str) -> torch.Tensor:
        return normalise_scores(source[u], "zscore").double()

    X = torch.stack([z(u) for u in others])
    R = torch.stack([normalise_scores(gold[u], "rank").double() - depth(u) for u in others])
    out: dict[str, Any] = {
        "gold": tgt_graph.with_input(gold[task].float()),
        "depth": depth_tie_scores(src_graph, tgt_graph, source[task], seed),
    }
    held, x = depth(task), z(task)
    for lam in lams:
        scores = held + ridge_residual(X, R, x, lam)
        # Circuits take the largest |score|: shifted to >= 0, the predicted order is the ranking.
        out[f"ridge-{lam:g}"] = tgt_graph.with_input((scores - scores.min()).float())
    return out


def run_ceiling(
    pairs: list[str],
    tasks: list[str],
    pool: ModelPool,
    lams: list[float],
    split: str = "val",
    n: int = 100,
    boot: int = 200,
    cache: Path = Path("checkpoints/cache"),
    out: Path | None = None,
) -> list[dict[str, Any]]:
    """Every (pair, held-out task) cell: rows of `{src, tgt, task, method, cpr, cpr_ci, paired}`
    (`paired`: the difference to depth and its paired bootstrap interval), written to `out`. The
    source and gold scores are the training run's (`ScoreSpec()`: 100 train prompts), cached."""
    spec, rows = ScoreSpec(), []
    for pair in pairs:
        src, tgt = parse_pair(pair)
        start = time.perf_counter()
        target = pool.get(tgt)
        tgt_graph = NodeGraph.from_model(target)
        s_scores = {t: cached_scores(pool, cache, src, t, spec) for t in tasks}
        src_graph = scores_graph(s_scores[tasks[0]])
        source = {
            t: src_graph.mapped_scores(v.for_graph(src_graph, f"{src} on {t}")) for t, v in s_scores.items()
        }
        gold = {
            t: tgt_graph.mapped_scores(
                cached_scores(pool, cache, tgt, t, spec).for_graph(tgt_graph, f"{tgt} on {t}")
            )
            for t in tasks
        }
        for task in tasks:
            rankings = ceiling_rankings(source, gold, src_graph, tgt_graph, task, lams)
            p = task_prompts(target, task, split, n, 0)
            ev = evaluate_circuits(
                target, tgt_graph, p.batches, p.data.metric, rankings, n_boot=boot, families=p.families,
                prompts=p.texts,
            )  # fmt: skip
            for label, c in ev.curves.items():
                row = {
                    "src": src,
                    "tgt": tgt,
                    "task": task,
                    "method": label,
                    "cpr": c.cpr,
                    "cpr_ci": list(c.cpr_ci),
                }
                if label != "depth":
                    row["paired"] = {"depth": ev.paired(label, "depth")}
                row.update(n_prompts=ev.n_prompts, n_distinct=ev.n_distinct)
                rows.append(row)
            cells = ", ".join(f"{k} {v.cpr:.3f}" for k, v in ev.curves.items())
            print(f"{src} -> {tgt} {task}: {cells} ({time.perf_counter() - start:.0f}s)", flush=True)
        pool.release(src, tgt)
    if out is not None:
        write_json(Path(out), {"split": split, "n": n, "lams": lams, "results": rows})
    return rows


def ceiling_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: pair x held-out task, each ranking's CPR; per ridge map, the cells above / below
    depth by the paired interval and the summed CPR against depth's."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["src"], r["tgt"], r["task"], r["method"]): r for r in rows}
    keys = list(dict.fromkeys((r["src"], r["tgt"], r["task"]) for r in rows))
    lines = ["| pair | held-out task | " + " | ".join(methods) + " |", "|" + "---|" * (len(methods) + 2)]
    for src, tgt, task in keys:
        cells = [f"{by[(src, tgt, task, m)]['cpr']:.3f}" for m in methods]
        lines.append(f"| {src} -> {tgt} | {task} | " + " | ".join(cells) + " |")
    lines.append("")
    for src, tgt in dict.fromkeys((k[0], k[1]) for k in keys):
        cell = [k for k in keys if k[:2] == (src, tgt)]
        total = {m: sum(by[(*k, m)]["cpr"] for k in cell) for m in methods}
        for m in (m for m in methods if m.startswith("ridge")):
            ci = [by[(*k, m)]["paired"]["depth"]["ci"] for k in cell]
            above, below = sum(lo > 0 for lo, _ in ci), sum(hi < 0 for _, hi in ci)
            lines.append(
                f"{src} -> {tgt}, {m}: above depth on {above}, below on {below} of {len(cell)}; "
                f"summed CPR {total[m]:.3f} (depth {total['depth']:.3f}, gold {total['gold']:.3f})"
            )
    return "\n".join(lines)
