"""The val check: which map a task outside training gets, chosen on that task's own val prompts.

A run's zero-shot map (`dfa.training.zero_shot`) is one choice made before any new task is known.
The val check chooses per task, with no training on it: the maps the run holds (from its
`last.ckpt`, the map after each of the first `zero_shot_epochs` epochs, the epochs the inner folds
score too, and after the last epoch; and the kept map), each blended toward the start by `a` in
`BLENDS` (at most `4 * (zero_shot_epochs + 2)` candidates, whatever the run's length), and the
depth prior are all evaluated on the task's val prompts (forward passes of the target, no
gradient), on the same prompts with the same intervention. The candidate whose CPR (faithfulness
capped at 1, as selection reads it) beats depth's by the highest lower bound of its paired 95%
bootstrap interval over the val prompts is used; depth's own ranks when no lower bound is above 0.

The record says what was chosen, its val gain over depth with that interval (optimistic: the best
of several candidates), every candidate's, and the chosen circuit against random rankings on the
same prompts, so that a user reads, before relying on the map for the task, whether it has
anything to offer there. The test split is never read.

What it may spend: by default `CHECK_BUDGET` of the target rows gold costs on the task at the run's
`n_src` (`budgeted`: successive halving of the candidates at the sizes that decide CPR,
`dfa.experiments.val_race`; the same decision rule among the survivors); `full` (the run's
`check_budget`) reads every candidate, depth and random at every size on every val prompt. It reads
up to `n` val prompts (the run's `check_n`, else `n_val`), fewer where the split holds fewer, down to
`val_race.VAL_FLOOR`, saying so; its cost (forward passes only) is in the record (`dfa.core.cost`).

Its steps: `held_maps`, `blend`, `capped_gain`, `choose`, `val_check`, `checked_map`. Every epoch's
map is in `last.ckpt` (`dfa_selection.epoch_params`); the records stay on the run
(`dfa.experiments.runs.Run.checks`, `Run.checked_maps`), the methods reach the map through
`Inputs.checked` (`dfa-val`, `transfer`'s default), and LOTO's val-check table is
`dfa.report.zero_shot.val_check_table`.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dfa.core.cost import Cost
from dfa.core.evaluate import Curve, Evaluation, capped_cpr, evaluate_circuits, ranking
from dfa.core.graph import NodeGraph
from dfa.experiments.costs import predicted_gold_rows
from dfa.experiments.val_race import Race, check_sizes, race, val_prompts
from dfa.methods import DRAWS, score_methods

if TYPE_CHECKING:
    from dfa.experiments.runs import Run
    from dfa.methods import Inputs
    from dfa.store import ModelPool

BLENDS = (0.25, 0.5, 0.75, 1.0)
CHECK_BUDGET = 0.2  # the check's target rows: this share of gold's on the task at the run's n_src
RANDOM_DRAWS = 1  # random rankings a budgeted check reads (the circuit against random, no decision)
DEPTH_DRAWS = 2  # depth's tie orders a budgeted check reads (each is a circuit per size per prompt)
PRIOR = "depth"


def parse_check_budget(text: str | float) -> float | str:
    """A check budget as given (`--check-budget`, a config's `check_budget`): a positive share of
    gold's rows, or "full"; ValueError saying what is accepted otherwise."""
    if text == "full":
        return "full"
    try:
        share = float(text)
    except (TypeError, ValueError):
        share = -1.0
    if not share > 0 or share != share or share == float("inf"):
        raise ValueError(f"a positive share of gold's rows (as 0.2) or 'full', not {text!r}")
    return share


def held_maps(run: Run) -> tuple[dict[str, dict[str, torch.Tensor]], str]:
    """name -> parameters of the maps the run holds (from `last.ckpt`, each of the first
    `zero_shot_epochs` epochs' and the last epoch's; `kept`), and a note on what was read."""
    kept = {n: p.detach().cpu().clone() for n, p in run.map.named_parameters()}
    path = Path(run.folder) / "last.ckpt"
    if not path.is_file():
        return {"kept": kept}, f"no {path.name} in the run folder: the kept map only"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    saved = (ckpt.get("dfa_selection") or {}).get("epoch_params") or {}
    epochs = {e: p for e, p in saved.items() if e <= run.config.zero_shot_epochs}
    last = int(ckpt.get("epoch", -1)) + 1  # the checkpoint's own map: its last finished epoch
    own = {k.removeprefix("map."): v for k, v in ckpt["state_dict"].items() if k.startswith("map.")}
    if own and last > 0:
        epochs.setdefault(last, own)
    maps = {f"epoch {e}": {n: t.cpu() for n, t in p.items()} for e, p in sorted(epochs.items())}
    return {**maps, "kept": kept}, f"epochs {', '.join(str(e) for e in sorted(epochs))} and the kept map"


def start_params(run: Run) -> dict[str, torch.Tensor]:
    """The run's map at its start (what the blends move toward)."""
    from dfa.training.module import new_map

    src = run.meta.get("src_nodes") or list(run.map.src_names)
    tgt = run.meta.get("tgt_nodes") or list(run.map.tgt_names)
    return {n: p.detach().cpu().clone() for n, p in new_map(run.config, src, tgt).named_parameters()}


def blend(amap: Any, start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], a: float) -> Any:
    """A copy of `amap` (bound as it is) with parameters `start + a * (end - start)`."""
    out = copy.deepcopy(amap)
    with torch.no_grad():
        for n, p in out.named_parameters():
            s0 = start[n].to(p)
            p.copy_(s0 + a * (end[n].to(p) - s0))
    return out


def capped_gain(ev: Evaluation, a: str, b: str) -> dict[str, Any]:
    """Capped `CPR(a) - CPR(b)` on the evaluation's prompts, with its paired 95% bootstrap interval."""
    return curve_gain(ev.curves[a], ev.curves[b])


def curve_gain(ca: Curve, cb: Curve) -> dict[str, Any]:
    """Capped `CPR(ca) - CPR(cb)` of two curves on the same prompts, with the paired interval."""
    diff = capped_cpr(ca.faithfulness, ca.fractions) - capped_cpr(cb.faithfulness, cb.fractions)
    ci = [float("nan"), float("nan")]
    if ca.boot_faith is not None and cb.boot_faith is not None:
        x = np.asarray(ca.fractions, dtype=float)
        boot = [np.trapezoid(np.minimum(c.boot_faith, 1.0), x, axis=0) for c in (ca, cb)]  # [B]
        ci = [float(v) for v in np.nanpercentile(boot[0] - boot[1], [2.5, 97.5])]
    return {"diff": float(diff), "ci": ci}


def choose(gains: dict[str, dict[str, Any]]) -> str:
    """The candidate with the highest lower bound (then the higher gain, the earlier listed);
    `PRIOR` when no lower bound is above 0."""
    order = list(gains)
    best = max(order, key=lambda k: (gains[k]["ci"][0], gains[k]["diff"], -order.index(k)), default=None)
    return PRIOR if best is None or not gains[best]["ci"][0] > 0 else best


def val_check(
    run: Run, pool: ModelPool, task: str, x: Inputs, n: int | None = None, n_boot: int = 1000
) -> tuple[Any, dict[str, Any]]:
    """The map `task` gets (None: depth's ranks) and the check's record, read on up to `n` val
    prompts (default: the run's `check_n`, else its `n_val`; a shorter split down to `VAL_FLOOR`),
    within the run's `check_budget` (a share of gold's target rows, `val_race`; "full": every
    candidate on every prompt at every size). `x`: the task's method inputs (the map bound)."""
    c = run.config
    n = n or run.check_n or c.n_val
    share = CHECK_BUDGET if run.check_budget is None else run.check_budget
    start = start_params(run)
    held, read = held_maps(run)
    maps = {f"{name} x {a:g}": blend(x.amap, start, p, a) for name, p in held.items() for a in BLENDS}
    rankings = {
        name: score_methods(dataclasses.replace(x, amap=m, prior=False), ["dfa"])["dfa"]
        for name, m in maps.items()
    }
    # Its own draws whatever the caller's (`transfer` scores one): one check, one interval.
    rankings.update(score_methods(dataclasses.replace(x, draws=DRAWS), [PRIOR, "random"]))
    target = pool.get(run.tgt, c.model_seed)
    prompts, note = val_prompts(target, task, n, c.data_seed)
    if share != "full":
        return budgeted(run, target, prompts, maps, rankings, read, float(share), n, note, n_boot)
    ev = evaluate_circuits(
        target, NodeGraph.from_model(target), prompts.batches, prompts.data.metric, rankings,
        ablation=c.ablation, n_boot=n_boot, seed=c.seed, families=prompts.families,  # type: ignore[arg-type]
        prompts=prompts.texts, max_rows=c.max_rows, cost=(cost := Cost()),
    )  # fmt: skip
    gains = {name: capped_gain(ev, name, PRIOR) for name in maps}
    chosen = choose(gains)
    capped = {k: capped_cpr(v.faithfulness, v.fractions) for k, v in ev.curves.items()}
    record = {
        "split": "val",
        "n_prompts": ev.n_prompts,
        "n_distinct": ev.n_distinct,
        "read": read,
        "chosen": chosen,
        "gain": gains[chosen] if chosen != PRIOR else {"diff": 0.0, "ci": [0.0, 0.0]},
        "cpr": capped[chosen],
        "depth_cpr": capped[PRIOR],
        "random_cpr": capped["random"],
        "vs_random": capped_gain(ev, chosen, "random"),
        "candidates": {k: {**g, "cpr": capped[k]} for k, g in gains.items()},
        "capped": True,
        "cost": cost.to_json(),  # the check's passes of the target (`dfa.core.cost`), forward only
        "budget": {"share": "full", "note": note},
    }
    record["why"] = why(record)
    return (maps[chosen] if chosen != PRIOR else None), record


def budgeted(
    run: Run, target: Any, prompts: Any, maps: dict, rankings: dict, read: str, share: float, n: int,
    note: str, n_boot: int,
) -> tuple[Any, dict[str, Any]]:
    """The check within `share` of gold's predicted target rows on the task (`val_race`), scaled by
    the val prompts the split holds against the `n` asked for."""
    c = run.config
    graph = NodeGraph.from_model(target)
    draws = {k: v if isinstance(v, list) else [v] for k, v in rankings.items()}
    gold = predicted_gold_rows(c.method, c.n_src, c.ig_steps, len(graph))
    budget = int(share * gold * min(1.0, len(prompts.data) / n))
    sizes = check_sizes(len(ranking(draws[PRIOR][0], graph)[1]))
    draws["random"] = draws["random"][:RANDOM_DRAWS]  # what random reads is no part of the decision
    draws[PRIOR] = draws[PRIOR][:DEPTH_DRAWS]
    with (cost := Cost()).watch(target, run.tgt):  # mean ablation's means (Race) count too
        rc = Race(target, graph, prompts, sizes, c.ablation, c.max_rows, c.seed)
        out = race(rc, {k: draws[k] for k in maps}, draws[PRIOR], draws["random"], budget, curve_gain, n_boot)
    chosen = choose(out["gains"])  # among the survivors: the full check's rule
    everyone = {k: {**out["dropped"], **out["gains"]}[k] for k in maps}  # each at its last reading
    curves = {k: rc.curve(k, rc.keys(draws[k]), n_boot=n_boot) for k in dict.fromkeys([chosen, PRIOR])}
    capped = {k: capped_cpr(v.faithfulness, v.fractions) for k, v in curves.items()}
    rand = rc.curve("random", rc.keys(draws["random"]), n_boot=n_boot)
    vs_random, random_cpr = curve_gain(curves[chosen], rand), capped_cpr(rand.faithfulness, rand.fractions)
    spent = cost.rows(run.tgt)
    record = {
        "split": "val",
        "n_prompts": rc.read,
        "n_distinct": len(set(prompts.texts[: rc.read])),
        "read": read,
        "chosen": chosen,
        "gain": everyone[chosen] if chosen != PRIOR else {"diff": 0.0, "ci": [0.0, 0.0]},
        "cpr": capped[chosen],
        "depth_cpr": capped[PRIOR],
        "random_cpr": random_cpr,
        "vs_random": vs_random,
        "candidates": everyone,
        "capped": True,
        "cost": cost.to_json(),
        "budget": {
            "share": share, "gold_rows": gold, "rows": budget, "spent": spent, "sizes": sizes,
            "rounds": out["rounds"], "note": note,
        },
    }  # fmt: skip
    record["why"] = why(record)
    return (maps[chosen] if chosen != PRIOR else None), record


def why(r: dict[str, Any]) -> str:
    """The check's reading in words."""
    g, vr = r["gain"], r["vs_random"]
    head = (
        f"on {r['n_prompts']} val prompts, {r['chosen']} beats depth by {g['diff']:+.3f} "
        f"[{g['ci'][0]:+.3f}, {g['ci'][1]:+.3f}] (the best of {len(r['candidates'])} candidates: optimistic)"
        if r["chosen"] != PRIOR
        else f"on {r['n_prompts']} val prompts no map the run holds beats depth by its interval: depth is used"
    )
    if vr["ci"][0] > 0:
        tail = f"; above random rankings by {vr['diff']:+.3f} [{vr['ci'][0]:+.3f}, {vr['ci'][1]:+.3f}]"
    else:
        who = "neither the map nor depth has anything" if r["chosen"] == PRIOR else "the map has nothing"
        tail = (
            f"; NOT above random rankings ({r['cpr']:.3f} against {r['random_cpr']:.3f}, "
            f"{vr['diff']:+.3f} [{vr['ci'][0]:+.3f}, {vr['ci'][1]:+.3f}]): {who} to offer this task"
        )
    b = r.get("budget") or {}
    if b.get("share") not in (None, "full"):
        tail += (
            f" (budgeted: {b['spent']} target rows of {b['rows']}, "
            f"{b['share']:.0%} of gold's {b['gold_rows']}; "
            f"{len(b['rounds'])} rounds at sizes {', '.join(f'{s:g}' for s in b['sizes'])})"
        )
    return head + tail + (f"; note: {b['note']}" if b.get("note") else "")


def checked_map(run: Run, pool: ModelPool, task: str, x: Inputs) -> Any:
    """The map the `dfa-val` method ranks `task` by (None: depth's ranks), checked once per run
    and task; the record goes to `run.checks[task]`. A training task gets the kept map."""
    if run.setting(task) == "in-distribution":
        run.checks[task] = {"chosen": "kept", "why": "a training task: the kept (in-distribution) map"}
        return x.amap
    if task not in run.checked_maps:
        run.checked_maps[task], run.checks[task] = val_check(run, pool, task, x)
    return run.checked_maps[task]
