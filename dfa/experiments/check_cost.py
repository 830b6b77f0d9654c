"""What the val check costs and buys, per run and held-out task: the check at several budgets and in
full (every candidate on every val prompt), each one's target rows against gold's, and the circuit
each chose scored on the test split beside gold, depth, random and the unchecked map, all on the
same prompts (`dfa check-cost`; `results/check_cost_toy.json`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from dfa.core.circuits import task_prompts
from dfa.core.cost import Cost
from dfa.core.evaluate import evaluate_circuits
from dfa.core.graph import NodeGraph
from dfa.experiments.costs import predicted_gold_rows
from dfa.experiments.runs import Run
from dfa.experiments.transfer import method_inputs
from dfa.methods import score_methods
from dfa.store import ModelPool

REFERENCES = ("gold", "depth", "random", "dfa")


def check_cost_cell(
    folder: str, task: str, budgets: Sequence[float | str], pool: ModelPool, n: int = 100, n_boot: int = 200
) -> dict[str, Any]:
    """One run's held-out `task`: per budget (a share of gold's rows, or "full"), the val check's
    record and cost; every check's chosen circuit, gold, depth, random and `dfa` on `n` test prompts."""
    rankings: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    for budget in budgets:
        run = Run(folder)
        run.check_budget = budget
        label = f"dfa-val@{budget}"
        start = time.perf_counter()
        rankings[label] = score_methods(method_inputs(run, pool, task), ["dfa-val"])["dfa-val"]
        rec = run.checks[task]
        checks[label] = {
            "budget": budget,
            "chosen": rec["chosen"],
            "gain": rec["gain"],
            "n_prompts": rec["n_prompts"],
            "target_rows": Cost.from_json(rec["cost"]).rows(run.tgt),
            "cost": rec["cost"],
            "seconds": round(time.perf_counter() - start, 2),
            "rounds": (rec.get("budget") or {}).get("rounds"),
        }
    run = Run(folder)
    x = method_inputs(run, pool, task)
    rankings.update(score_methods(x, list(REFERENCES)))
    c = run.config
    target = pool.get(run.tgt, c.model_seed)
    graph = NodeGraph.from_model(target)
    gold_cost = Cost.from_json(x.costs.get("gold"))
    gold_rows = gold_cost.rows(run.tgt) or predicted_gold_rows(c.method, c.n_src, c.ig_steps, len(graph))
    prompts = task_prompts(target, task, "test", n, c.data_seed)
    ev = evaluate_circuits(
        target, graph, prompts.batches, prompts.data.metric, rankings,
        ablation=c.ablation, n_boot=n_boot,  # type: ignore[arg-type] seed=c.seed, prompts=prompts.texts, max_rows=c.max_rows,
    )  # fmt: skip
    cpr = {k: v.cpr for k, v in ev.curves.items()}
    for label, check in checks.items():
        check.update(
            vs_gold=check["target_rows"] / gold_rows,
            test_cpr=cpr[label],
            recovery=cpr[label] / cpr["gold"] if cpr["gold"] > 0 else None,
            vs_depth=ev.paired(label, "depth"),
            vs_full=ev.paired(label, f"dfa-val@{budgets[-1]}") if label != f"dfa-val@{budgets[-1]}" else None,
        )
    return {
        "src": run.src,
        "tgt": run.tgt,
        "run": str(folder),
        "task": task,
        "n_prompts": ev.n_prompts,
        "gold_rows": gold_rows,
        "gold_cost": gold_cost.to_json(),
        "test_cpr": {k: cpr[k] for k in REFERENCES},
        "checks": checks,
    }


def summary(cells: Sequence[dict[str, Any]]) -> list[str]:
    """Per pair and budget: the check's cost against gold's (largest, mean), how often it is below
    depth on test (paired interval), and the recovery of gold (summed CPR / gold's, as LOTO's)."""
    lines = []
    for src, tgt in dict.fromkeys((c["src"], c["tgt"]) for c in cells):
        mine = [c for c in cells if (c["src"], c["tgt"]) == (src, tgt)]
        lines += [f"{src} -> {tgt} ({len(mine)} held-out tasks):", *("  " + t for t in _summary(mine))]
    return lines


def _summary(cells: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    labels = list(dict.fromkeys(k for c in cells for k in c["checks"]))
    gold = sum(c["test_cpr"]["gold"] for c in cells)
    for label in labels:
        mine = [c["checks"][label] for c in cells if label in c["checks"]]
        ratios = [m["vs_gold"] for m in mine]
        below = sum(m["vs_depth"]["ci"][1] < 0 for m in mine)
        rec = sum(m["test_cpr"] for m in mine) / gold if gold > 0 else float("nan")
        lines.append(
            f"{label}: target rows x gold {max(ratios):.2f} at most, {sum(ratios) / len(ratios):.2f} mean; "
            f"below depth on test in {below} of {len(mine)}; recovery of gold {rec:.3f}"
        )
    for ref in ("dfa", "depth", "random"):
        lines.append(f"{ref}: recovery of gold {sum(c['test_cpr'][ref] for c in cells) / gold:.3f}")
    return lines
