"""A features map applied to pairs it may never have trained on, against the dense map trained on
each pair itself, gold and its references (`gold-layer`, `direct`, `depth-direct`), depth, role and
the controls: one evaluation per (pair, task), every method on the same prompts, so each difference
has a paired interval (`dfa pair-agnostic`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dfa.config import split_pair
from dfa.core.circuits import task_prompts
from dfa.core.errors import DfaError
from dfa.core.evaluate import FRACTIONS, evaluate_circuits
from dfa.core.feature_map import FeatureMap
from dfa.core.graph import NodeGraph
from dfa.core.io import atomic_write, write_json
from dfa.experiments.runs import Run
from dfa.experiments.transfer import method_rankings
from dfa.methods import PAIR_AGNOSTIC_METHODS
from dfa.store import ModelPool

CONTROLS = ("random", "permuted", "scrambled")
# References whose share of the dense map the summary counts beside the features map's.
REFERENCES = ("gold-layer", "depth-direct")


def compare_cell(
    features: Run,
    dense: Run,
    pool: ModelPool,
    task: str,
    split: str,
    n: int,
    boot: int,
    draws: int,
    methods: Sequence[str] = PAIR_AGNOSTIC_METHODS,
) -> dict[str, Any]:
    """One (pair, task): the curves of the features map, the pair's dense map and `methods` on the
    same `n` prompts, and the features map's paired CPR difference to each."""
    ours = method_rankings(features, pool, task, ["dfa", *methods], draws)
    rankings = {
        "features": ours.pop("dfa"),
        "dense": method_rankings(dense, pool, task, ["dfa"], draws)["dfa"],
        **ours,
    }
    c = features.config
    target = pool.get(features.tgt, c.model_seed)
    prompts = task_prompts(target, task, split, n, c.data_seed)
    ev = evaluate_circuits(
        target, NodeGraph.from_model(target), prompts.batches, prompts.data.metric, rankings, FRACTIONS,
        ablation=c.ablation, n_boot=boot, seed=c.seed, families=prompts.families, prompts=prompts.texts,
    )  # fmt: skip
    cpr = {k: ev.curves[k].cpr for k in rankings}
    return {
        "src": features.src,
        "tgt": features.tgt,
        "task": task,
        "features_map": str(features.folder),
        "pair_seen": features.seen_pair,
        "task_seen": task in c.train_tasks,
        "cpr": cpr,
        "cpr_ci": {k: list(ev.curves[k].cpr_ci) for k in rankings},
        "paired": {f"features - {m}": ev.paired("features", m) for m in rankings if m != "features"},
        "dense_vs_depth": ev.paired("dense", "depth") if "depth" in rankings else None,
        # Each reference against depth, paired: what the target's own layers / direct effects add.
        "references_vs_depth": {
            m: ev.paired(m, "depth") for m in REFERENCES if m in rankings and "depth" in rankings
        },
        "share_of_dense": cpr["features"] / cpr["dense"] if cpr["dense"] else float("nan"),
        # A dense map whose selection kept its start (epoch 0) is the depth prior with noise: a
        # share of it says little about what training on the pair would reach.
        "dense_kept_epoch": (dense.meta.get("kept") or {}).get("epoch"),
        "n_prompts": ev.n_prompts,
        "n_distinct": ev.n_distinct,
    }


def pair_agnostic(
    features_run: str | Path,
    dense_runs: Sequence[str],
    tasks: Sequence[str],
    pool: ModelPool,
    split: str = "test",
    n: int = 100,
    boot: int = 500,
    draws: int = 3,
    held_out: Sequence[str | Path] = (),
    methods: Sequence[str] = PAIR_AGNOSTIC_METHODS,
) -> dict[str, Any]:
    """Every (pair, task) cell: `dense_runs` are `SRC:TGT=RUN` (a dense map trained on that pair;
    the features map is applied to the same pair). `held_out`: features maps trained with tasks
    held out (`holdout`), each evaluated on its held-out tasks on every pair (leave-one-task-out
    on top of leave-the-pair-out), against the same dense maps."""
    probe = Run(features_run)
    for folder in (features_run, *held_out):
        if not isinstance(Run(folder).map, FeatureMap):
            raise DfaError(f"{folder} holds a dense map: pass a features map's run (--map-kind features).")
    cells = []
    for spec in dense_runs:
        pair, sep, folder = spec.partition("=")
        if not sep:
            raise DfaError(
                f"Write each dense map as SRC:TGT=RUN (the pair, then its run folder), got {spec!r}."
            )
        src, tgt = split_pair(pair)
        dense = Run(folder, src, tgt)  # refuses a dense map trained on another pair, naming both
        jobs = [(Run(features_run, src, tgt), task) for task in tasks]
        for folder_h in held_out:
            run_h = Run(folder_h, src, tgt)
            jobs += [(run_h, task) for task in run_h.config.holdout]
        for features, task in jobs:
            start = time.perf_counter()
            cells.append(compare_cell(features, dense, pool, task, split, n, boot, draws, methods))
            print(f"{src} -> {tgt} {task}: {time.perf_counter() - start:.0f}s", flush=True)
    return {
        "features_map": str(features_run),
        "held_out_maps": [str(h) for h in held_out],
        "trained_pairs": [list(p) for p in probe.pairs],
        "trained_tasks": probe.config.train_tasks,
        "split": split,
        "input_node": "kept",
        "ablation": probe.config.ablation,
        "methods": list(methods),
        "cells": cells,
    }


def _mark(d: dict[str, Any]) -> str:
    return "+" if d["ci"][0] > 0 else "-" if d["ci"][1] < 0 else ""


def summary(report: dict[str, Any]) -> list[str]:
    """Per group of cells (unseen pairs with trained / held-out tasks, seen pairs): how often the
    features map's interval is above / below depth's, above every control, and its share of the
    dense map (the layer-blind reference's share beside it)."""
    lines = []
    groups = [
        ("unseen pairs, trained tasks", lambda c: not c["pair_seen"] and c["task_seen"]),
        ("unseen pairs, held-out tasks", lambda c: not c["pair_seen"] and not c["task_seen"]),
        ("seen pairs", lambda c: c["pair_seen"]),
    ]
    for name, keep in groups:
        cells = [c for c in report["cells"] if keep(c)]
        if not cells:
            continue
        marks = [_mark(c["paired"]["features - depth"]) for c in cells if "features - depth" in c["paired"]]
        present = [m for m in CONTROLS if all(f"features - {m}" in c["paired"] for c in cells)]
        above = sum(all(c["paired"][f"features - {m}"]["ci"][0] > 0 for m in present) for c in cells)
        share = [c["share_of_dense"] for c in cells]
        text = f"- {name} ({len(cells)} cells): "
        if marks:
            text += f"above depth on {marks.count('+')}, level on {marks.count('')}, below on {marks.count('-')}; "
        if present:
            text += f"above every control on {above}; "
        text += (
            f"{100 * sum(share) / len(share):.0f}% of the dense map's CPR on average, 90% or more on "
            f"{sum(x >= 0.9 for x in share)}"
        )
        refs = []
        for m in REFERENCES:
            shares = [c["cpr"][m] / c["cpr"]["dense"] for c in cells if c["cpr"].get(m) and c["cpr"]["dense"]]
            if shares:
                text_m = f"{m}: {sum(x >= 0.9 for x in shares)} of {len(shares)}"
                vs = [
                    _mark(c["references_vs_depth"][m]) for c in cells if m in c.get("references_vs_depth", {})
                ]
                if vs:
                    text_m += f", above / below depth on {vs.count('+')} / {vs.count('-')}"
                refs.append(text_m)
        if refs:
            text += f" ({'; '.join(refs)})"
        trained = [c["share_of_dense"] for c in cells if c.get("dense_kept_epoch") != 0]
        if len(trained) < len(cells):
            text += f"; where the dense map moved from its start ({len(trained)} cells): " + (
                f"{100 * sum(trained) / len(trained):.0f}%, 90% or more on {sum(x >= 0.9 for x in trained)}"
                if trained
                else "none"
            )
        lines.append(text + ".")
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The cells as a table: CPR of each map and method, the features map's paired differences to
    depth and the dense map (+ / - where the interval is above / below 0), its share of the dense
    map's CPR and the layer-blind reference's (`gold-layer`); then `summary`."""
    trained = ", ".join(f"{s} -> {t}" for s, t in report["trained_pairs"])
    held = report.get("held_out_maps") or []
    lines = [
        (
            f"Features map trained on {trained} (tasks {', '.join(report['trained_tasks'])})"
            + (
                f"; rows marked (held out): a features map trained without that task ({len(held)} maps)"
                if held
                else ""
            )
            + f"; {report['split']} split, {report['ablation']}, input kept. Paired 95% intervals. "
            "gold-layer: the target's own scores averaged over each layer's heads (a layer-blind reference); "
            "direct: the target's direct effects on the answer logits (forward passes); depth-direct: depth plus "
            "direct, each scaled to a maximum of 1 (both read the target on the task's train prompts)."
        ),
        "",
        (
            "| pair | task | features | dense (that pair) | gold | gold-layer | direct | depth-direct | depth | "
            "role | random / permuted / scrambled | features - depth | features - dense | features / dense | "
            "gold-layer / dense | depth-direct / dense |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def val(c: dict[str, Any], m: str) -> str:
        v = c["cpr"].get(m)
        return "-" if v is None else f"{v:.3f}"

    for c in report["cells"]:
        diffs = []
        for m in ("depth", "dense"):
            d = c["paired"].get(f"features - {m}")
            diffs.append(
                "-" if d is None else f"{d['diff']:+.3f} [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}]{_mark(d)}"
            )
        seen = "" if c["pair_seen"] else " (unseen)"
        task = c["task"] + ("" if c["task_seen"] else " (held out)")
        cpr = c["cpr"]
        layer, direct = (
            f"{cpr[m] / cpr['dense']:.2f}" if cpr.get(m) and cpr["dense"] else "-" for m in REFERENCES
        )
        controls = " / ".join(val(c, m) for m in CONTROLS)
        lines.append(
            f"| {c['src']} -> {c['tgt']}{seen} | {task} | {val(c, 'features')} | {val(c, 'dense')} | "
            f"{val(c, 'gold')} | {val(c, 'gold-layer')} | {val(c, 'direct')} | {val(c, 'depth-direct')} | "
            f"{val(c, 'depth')} | {val(c, 'role')} | {controls} | "
            f"{diffs[0]} | {diffs[1]} | {c['share_of_dense']:.2f} | {layer} | {direct} |"
        )
    return "\n".join([*lines, "", *summary(report)]) + "\n"


def write_report(report: dict[str, Any], stem: Path) -> list[Path]:
    text = markdown(report)
    return [
        write_json(stem.with_suffix(".json"), report),
        atomic_write(stem.with_suffix(".md"), lambda tmp: tmp.write_text(text)),
    ]
