"""A features map applied to pairs it may never have trained on, against the dense map trained on
each pair itself, depth and random maps: one evaluation per (pair, task), every method on the same
prompts, so each difference has a paired interval (`dfa pair-agnostic`)."""

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
from dfa.experiments.transfer import Run, method_rankings
from dfa.store import ModelPool

COMPARED = ("depth", "dense", "random")  # the features map against each, paired


def compare_cell(
    features: Run, dense: Run, pool: ModelPool, task: str, split: str, n: int, boot: int, draws: int
) -> dict[str, Any]:
    """One (pair, task): the curves of the features map, the pair's dense map, depth and random
    maps on the same `n` prompts, and the features map's paired CPR differences."""
    ours = method_rankings(features, pool, task, ["dfa", "depth", "random"], draws)
    rankings = {
        "features": ours["dfa"],
        "dense": method_rankings(dense, pool, task, ["dfa"])["dfa"],
        "depth": ours["depth"],
        "random": ours["random"],
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
        "pair_seen": features.seen_pair,
        "task_seen": task in c.train_tasks,
        "cpr": cpr,
        "cpr_ci": {k: list(ev.curves[k].cpr_ci) for k in rankings},
        "paired": {f"features - {m}": ev.paired("features", m) for m in COMPARED},
        "dense_vs_depth": ev.paired("dense", "depth"),
        "share_of_dense": cpr["features"] / cpr["dense"] if cpr["dense"] else float("nan"),
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
) -> dict[str, Any]:
    """Every (pair, task) cell: `dense_runs` are `SRC:TGT=RUN` (a dense map trained on that pair;
    the features map is applied to the same pair)."""
    probe = Run(features_run)
    if not isinstance(probe.map, FeatureMap):
        raise DfaError(f"{features_run} holds a dense map: pass a features map's run (--map-kind features).")
    cells = []
    for spec in dense_runs:
        pair, sep, folder = spec.partition("=")
        if not sep:
            raise DfaError(
                f"Write each dense map as SRC:TGT=RUN (the pair, then its run folder), got {spec!r}."
            )
        src, tgt = split_pair(pair)
        dense = Run(folder, src, tgt)  # refuses a dense map trained on another pair, naming both
        features = Run(features_run, src, tgt)
        for task in tasks:
            start = time.perf_counter()
            cells.append(compare_cell(features, dense, pool, task, split, n, boot, draws))
            print(f"{src} -> {tgt} {task}: {time.perf_counter() - start:.0f}s", flush=True)
    return {
        "features_map": str(features_run),
        "trained_pairs": [list(p) for p in probe.pairs],
        "trained_tasks": probe.config.train_tasks,
        "split": split,
        "input_node": "kept",
        "ablation": probe.config.ablation,
        "cells": cells,
    }


def markdown(report: dict[str, Any]) -> str:
    """The cells as a table: CPR of each map, the features map's paired differences (+ / - where
    the interval is above / below 0) and its share of the dense map's CPR."""
    trained = ", ".join(f"{s} -> {t}" for s, t in report["trained_pairs"])
    lines = [
        (
            f"Features map trained on {trained} (tasks {', '.join(report['trained_tasks'])}); "
            f"{report['split']} split, {report['ablation']}, input kept. Paired 95% intervals."
        ),
        "",
        (
            "| pair | task | features | dense (that pair) | depth | random | features - depth | "
            "features - dense | features / dense |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report["cells"]:
        diffs = []
        for m in ("depth", "dense"):
            d = c["paired"][f"features - {m}"]
            mark = "+" if d["ci"][0] > 0 else "-" if d["ci"][1] < 0 else ""
            diffs.append(f"{d['diff']:+.3f} [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}]{mark}")
        seen = "" if c["pair_seen"] else " (unseen)"
        cpr = c["cpr"]
        lines.append(
            f"| {c['src']} -> {c['tgt']}{seen} | {c['task']} | {cpr['features']:.3f} | {cpr['dense']:.3f} | "
            f"{cpr['depth']:.3f} | {cpr['random']:.3f} | {diffs[0]} | {diffs[1]} | {c['share_of_dense']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], stem: Path) -> list[Path]:
    text = markdown(report)
    return [
        write_json(stem.with_suffix(".json"), report),
        atomic_write(stem.with_suffix(".md"), lambda tmp: tmp.write_text(text)),
    ]
