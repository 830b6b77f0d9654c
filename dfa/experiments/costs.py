"""What each method's circuit costs on a task, on the target and on the source: the passes its
ranking needs (the source's scores, gold's own scores, the val check, direct effects, role
profiles), each counted where it ran (`dfa.core.cost`) and read back with its cache, so a method's
cost is what its ranking costs to make, whether or not this run had to; its ratio to gold's on the
same task (the pay-off line, after how many new tasks a trained map has paid for its training
against gold: `dfa.report.costs`).

The curves that judge a method (`Evaluation.judge_cost`) are no method's cost. Costs compare in
forward-equivalent rows (`forward + 2 * backward` prompt rows, `dfa.core.cost.ModelCost.rows`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dfa.core.attribution import attribution_rows
from dfa.core.cost import BACKWARD_WEIGHT, Cost, ratio

# Methods whose ranking reads no source scores: the target's own.
TARGET_ONLY = ("gold", "gold-layer", "direct")


def method_cost(
    method: str, parts: Mapping[str, Mapping[str, Any] | None], used: Sequence[str], src: str, tgt: str
) -> dict[str, Any]:
    """`method`'s cost from the costs of the inputs it read (`parts`: name -> cost JSON, None where
    not known, e.g. scores cached before costs were kept): the source's scores unless the method is
    the target's own, and the lazy inputs it `used`."""
    reads = ([] if method in TARGET_ONLY else ["source"]) + sorted(used)
    total = Cost()
    for part in reads:
        total.add(parts.get(part))
    # The source's scores cost the source alone; role profiles both models; the rest the target.
    known_tgt = all(parts.get(p) is not None for p in reads if p != "source")
    known_src = all(parts.get(p) is not None for p in reads if p in ("source", "profiles"))
    return {
        "reads": reads,
        "target": total.models[tgt].to_json() if tgt in total.models else {},
        "source": total.models[src].to_json() if src in total.models else {},
        "target_rows": total.rows(tgt) if known_tgt else None,
        "source_rows": total.rows(src) if known_src else None,
    }


def predicted_gold_rows(method: str, n_src: int, ig_steps: int, n_nodes: int) -> int:
    """Gold's forward-equivalent target rows before it runs: the run's attribution method on the
    run's `n_src` prompts (`dfa.core.attribution.attribution_rows`)."""
    fwd, bwd = attribution_rows(method, n_src, ig_steps, n_nodes)
    return fwd + BACKWARD_WEIGHT * bwd


def with_ratios(costs: dict[str, dict[str, Any]], predicted_gold: int) -> dict[str, Any]:
    """Each method's cost with `vs_gold`, its target rows over gold's on this task (gold's measured
    rows where gold was scored with its cost known, else `predicted_gold`)."""
    measured = (costs.get("gold") or {}).get("target_rows")
    gold = measured if measured else predicted_gold
    origin = "measured" if measured else "predicted"
    for c in costs.values():
        c.update(vs_gold=ratio(c["target_rows"], gold), gold_rows=gold, gold_rows_from=origin)
    return {"gold_rows": gold, "gold_rows_from": origin, "methods": costs}

