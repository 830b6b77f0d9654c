"""Using a trained map: predicted target circuits for a task, and their evaluation against
`gold` (direct attribution on the target) and the baselines of `dfa.baselines`, on the same
prompts with the same intervention."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dfa.baselines import BASELINES, DRAWS
from dfa.circuits import task_prompts
from dfa.errors import DfaError
from dfa.evaluate import FRACTIONS, Evaluation, evaluate_circuits
from dfa.graph import NodeGraph
from dfa.interventions import mean_activations
from dfa.mapping import AlignmentMap, MapError
from dfa.scores import SIGN, NodeScores, graph_cfg
from dfa.tasks import get_task
from dfa.training import TrainConfig, shared_model

# What `scripts/evaluate.py` compares by default, then the role-based alignments (`dfa.roles`).
DEFAULT_METHODS = ("dfa", "gold", "depth", "random", "permuted", "scrambled")
METHODS = (*DEFAULT_METHODS, "role", "role-assign")


class Run:
    """A trained map's run folder: the map, its `map.json`, and the config it was trained with."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise MapError(
                f"No run folder {self.folder}. Runs live in checkpoints/<src>__<tgt>/<run> "
                "(scripts/train.py prints the path)."
            )
        self.map, self.meta = AlignmentMap.load(self.folder)
        hp = dict(self.meta.get("hyperparameters") or {})
        try:
            self.config = TrainConfig(**hp)
        except TypeError as e:
            raise MapError(f"{self.folder / 'map.json'} has unreadable hyperparameters ({e}).") from None

    @property
    def src(self) -> str:
        return self.config.src

    @property
    def tgt(self) -> str:
        return self.config.tgt

    def setting(self, task: str) -> str:
        return "in-distribution" if task in self.config.train_tasks else "zero-shot"

    def scores(self, model: str, task: str, model_obj: Any = None) -> NodeScores:
        """The cached attribution scores (the run's method, train split, prompt count, seed)."""
        return self.config.scores(model, task, model_obj)


def scores_graph(scores: NodeScores) -> NodeGraph:
    cfg = scores.meta.get("cfg") or {}
    if "n_layers" not in cfg:
        raise DfaError(f"Scores of {scores.meta.get('model', '?')} carry no model shape (cfg).")
    return NodeGraph(int(cfg["n_layers"]), int(cfg["n_heads"]))


def predicted_scores(
    run: Run, task: str, tgt_graph: NodeGraph
) -> tuple[torch.Tensor, NodeGraph, torch.Tensor]:
    """(source whole-graph scores, source graph, source mapped-node scores) for a task."""
    s = run.scores(run.src, task)
    src_graph = scores_graph(s)
    run.map.check_graphs(src_graph, tgt_graph, run.src, run.tgt)
    whole = s.for_graph(src_graph, f"{run.src} scores on {task}")
    keep = [n.index for n in src_graph if n.kind != "input"]
    return whole, src_graph, whole[keep]


def _role_profiles(run: Run, target: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Both models' head role profiles (`dfa.roles`, cached beside the run's node scores)."""
    from dfa.roles import cached_roles

    cache = run.config.cache_dir
    return cached_roles(run.src, cache).profile(), cached_roles(run.tgt, cache, model=target).profile()


def method_rankings(
    run: Run, task: str, target: Any, methods: Sequence[str] = DEFAULT_METHODS, draws: int = DRAWS
) -> dict[str, torch.Tensor | list[torch.Tensor]]:
    """Whole-target-graph scores (or seeded draws) for each method on `task`."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise DfaError(f"Unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}.")
    tgt_graph = NodeGraph.from_model(target)
    _, src_graph, src = predicted_scores(run, task, tgt_graph)
    out: dict[str, torch.Tensor | list[torch.Tensor]] = {}
    profiles: tuple[torch.Tensor, torch.Tensor] | None = None  # role profiles, loaded once
    for m in methods:
        if m == "gold":
            out[m] = run.scores(run.tgt, task, target).for_graph(tgt_graph, f"{run.tgt} scores on {task}")
        elif m in ("role", "role-assign"):
            from dfa.baselines import role_scores

            profiles = profiles or _role_profiles(run, target)
            out[m] = role_scores(src_graph, tgt_graph, src, *profiles, assign=m == "role-assign")
        else:
            out[m] = BASELINES["map" if m == "dfa" else m](
                run.map, src_graph, tgt_graph, src, run.config.seed, draws
            )
    return out


def evaluate_task(
    run: Run,
    task: str,
    target: Any,
    methods: Sequence[str] = DEFAULT_METHODS,
    split: str = "test",
    n: int = 200,
    n_boot: int = 1000,
    fractions: Sequence[float] = FRACTIONS,
    progress: bool = False,
    draws: int = DRAWS,
) -> Evaluation:
    get_task(task)
    c = run.config
    graph = NodeGraph.from_model(target)
    rankings = method_rankings(run, task, target, methods, draws)
    prompts = task_prompts(target, task, split, n, c.data_seed)
    means = mean_activations(target, graph, prompts.batches) if c.ablation == "mean" else None
    return evaluate_circuits(
        target,
        graph,
        prompts.batches,
        prompts.data.metric,
        rankings,
        fractions,
        c.ablation,  # type: ignore[arg-type]
        True,
        "abs",
        n_boot,
        c.seed,
        means,
        prompts.families,
        prompts.texts,
        progress,
    )


def result_rows(run: Run, task: str, ev: Evaluation) -> list[dict[str, Any]]:
    """One row per method, in the JSON schema of `scripts/evaluate.py`."""
    rows = []
    for label, curve in ev.curves.items():
        rows.append(
            {
                "task": task,
                "setting": run.setting(task),
                "method": label,
                "cpr": curve.cpr,
                "cpr_ci": list(curve.cpr_ci),
                "cmd": curve.cmd,
                "cpr_log": curve.cpr_log,
                "curve": [[f, v] for f, v in zip(curve.fractions, curve.faithfulness, strict=True)],
                "n_prompts": ev.n_prompts,
                "n_draws": curve.n_draws,
            }
        )
    return rows


def evaluate_run(
    folder: str | Path,
    tasks: Sequence[str] | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    split: str = "test",
    n: int = 200,
    n_boot: int = 1000,
    progress: bool = False,
    draws: int = DRAWS,
) -> tuple[dict[str, Any], dict[str, Evaluation]]:
    """Every task's evaluation (default: the run's training tasks and hold-outs)."""
    run = Run(folder)
    tasks = list(tasks) if tasks else run.config.eval_tasks
    for t in tasks:
        get_task(t)
    c = run.config
    target = shared_model(run.tgt, dtype=c.dtype, seed=c.model_seed)
    evals: dict[str, Evaluation] = {}
    rows: list[dict[str, Any]] = []
    for task in tasks:
        evals[task] = evaluate_task(
            run, task, target, methods, split, n, n_boot, progress=progress, draws=draws
        )
        rows += result_rows(run, task, evals[task])
    report = {
        "src": run.src,
        "tgt": run.tgt,
        "map": str(run.folder),
        "split": split,
        "input_node": "kept",
        "ablation": c.ablation,
        "attribution": c.method,
        "holdout": c.holdout,
        "results": rows,
    }
    return report, evals


def table(report: dict[str, Any]) -> str:
    """Tasks x methods: CPR [95% CI], with the setting of each task."""
    methods = list(dict.fromkeys(r["method"] for r in report["results"]))
    tasks = list(dict.fromkeys(r["task"] for r in report["results"]))
    by = {(r["task"], r["method"]): r for r in report["results"]}
    width = 22
    lines = [f"  {'task':<15}{'setting':<17}" + "".join(f"{m:>{width}}" for m in methods)]
    for t in tasks:
        setting = next(r["setting"] for r in report["results"] if r["task"] == t)
        cells = []
        for m in methods:
            r = by.get((t, m))
            if r is None:
                cells.append(f"{'-':>{width}}")
                continue
            lo, hi = (x if x is not None else float("nan") for x in r["cpr_ci"])
            cells.append(f"{r['cpr']:>7.3f} [{lo:5.2f},{hi:5.2f}]".rjust(width))
        lines.append(f"  {t:<15}{setting:<17}" + "".join(cells))
    return "\n".join(lines)


def wins(
    report: dict[str, Any], against: Sequence[str] = ("depth", "random", "permuted", "scrambled")
) -> dict[str, Any]:
    """Per setting and baseline: on how many tasks the map's CPR beats the baseline's."""
    by = {(r["task"], r["method"]): r["cpr"] for r in report["results"]}
    tasks = list(dict.fromkeys(r["task"] for r in report["results"]))
    out: dict[str, Any] = {}
    for b in against:
        cells = [t for t in tasks if (t, b) in by and (t, "dfa") in by]
        out[b] = {"wins": sum(by[(t, "dfa")] > by[(t, b)] for t in cells), "of": len(cells)}
    return out


def transfer(
    folder: str | Path,
    task: str,
    out: str | Path | None = None,
    evaluate: bool = True,
    methods: Sequence[str] = ("dfa", "depth", "random"),
    split: str = "test",
    n: int = 200,
    n_boot: int = 1000,
    draws: int = DRAWS,
) -> tuple[NodeScores, list[Path], Evaluation | None]:
    """Reuse a saved map on `task` without training: source scores -> predicted target circuit
    (written as EAP-IG/MIB `importances.json` and `.safetensors`), and its evaluation."""
    get_task(task)
    run = Run(folder)
    c = run.config
    target = shared_model(run.tgt, dtype=c.dtype, seed=c.model_seed)
    tgt_graph = NodeGraph.from_model(target)
    scores = method_rankings(run, task, target, ["dfa"])["dfa"]
    assert isinstance(scores, torch.Tensor)
    meta = {
        "model": run.tgt,
        "task": task,
        "method": "dfa",
        "map": str(run.folder),
        "src": run.src,
        "source_method": c.method,
        "setting": run.setting(task),
        "split": "train",
        "n_prompts": c.n_src,
        "seed": c.data_seed,
        "ablation": c.ablation,
        "score": "mask probability sigmoid((s @ W + b) / T); input kept at 1",
        "sign": SIGN,
        "cfg": graph_cfg(target, tgt_graph),
    }
    predicted = NodeScores(tgt_graph.names, scores, meta)
    out = Path(out) if out else run.folder / "transfer" / task
    paths = [predicted.save(out.with_suffix(".json")), predicted.save(out.with_suffix(".safetensors"))]
    ev = evaluate_task(run, task, target, methods, split, n, n_boot, draws=draws) if evaluate else None
    return predicted, paths, ev


def loto_main(argv: Sequence[str] | None = None) -> int:
    """Leave-one-task-out on the toy ladders: per pair and task, a map trained on the other tasks
    (configs/toy.yaml otherwise), evaluated zero-shot on the held-out task. Resumable."""
    import argparse
    import json
    import time

    from dfa.io import write_json
    from dfa.tasks import TASKS
    from dfa.training import make_config, train

    p = argparse.ArgumentParser(description=loto_main.__doc__.split("\n")[0])
    p.add_argument("--pairs", nargs="+", default=["toy-gpt2-s:toy-gpt2-l", "toy-neox-s:toy-neox-l"])
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--config", default="configs/toy.yaml")
    p.add_argument("--n", type=int, default=100, help="test prompts per task (default 100)")
    p.add_argument("--boot", type=int, default=200)
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=list(METHODS))
    p.add_argument("--out", default="checkpoints")
    p.add_argument("--json", default="results/loto_toy.json")
    args = p.parse_args(argv)
    path = Path(args.json)
    done: list[dict[str, Any]] = json.loads(path.read_text())["results"] if path.is_file() else []
    have = {(r["src"], r["tgt"], r["task"]) for r in done}
    for pair in args.pairs:
        src, tgt = pair.split(":")
        for task in args.tasks:
            if (src, tgt, task) in have:
                continue
            start = time.perf_counter()
            c = make_config(args.config, src=src, tgt=tgt, holdout=[task], out=args.out, run=f"loto-{task}")
            run = c.run_dir()
            if not (run / "map.json").is_file():
                run = train(c, overwrite=True, progress=False)
            report, _ = evaluate_run(run, [task], args.methods, "test", args.n, args.boot)
            for r in report["results"]:
                r.pop("curve")
                done.append({"src": src, "tgt": tgt, **r})
            write_json(path, {"config": args.config, "input_node": "kept", "results": done})
            cells = {r["method"]: r["cpr"] for r in report["results"]}
            print(
                f"{src} -> {tgt} {task}: "
                + ", ".join(f"{m} {v:.3f}" for m, v in cells.items())
                + f" ({time.perf_counter() - start:.0f}s)",
                flush=True,
            )
    print(loto_table(done))
    return 0


def loto_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: pair x held-out task, each method's zero-shot CPR [CI], and the map's wins."""
    present = {r["method"] for r in rows}
    methods = [m for m in METHODS if m in present]
    lines = ["| pair | held-out task | " + " | ".join(methods) + " |", "|" + "---|" * (len(methods) + 2)]
    by = {(r["src"], r["tgt"], r["task"], r["method"]): r for r in rows}
    keys = list(dict.fromkeys((r["src"], r["tgt"], r["task"]) for r in rows))
    wins = {m: 0 for m in methods if m not in ("dfa", "gold")}
    for src, tgt, task in keys:
        cells = []
        for m in methods:
            r = by.get((src, tgt, task, m))
            cells.append("-" if r is None else f"{r['cpr']:.3f} [{r['cpr_ci'][0]:.2f}, {r['cpr_ci'][1]:.2f}]")
        dfa = by[(src, tgt, task, "dfa")]["cpr"]
        for m in wins:
            wins[m] += (src, tgt, task, m) in by and dfa > by[(src, tgt, task, m)]["cpr"]
        lines.append(f"| {src} -> {tgt} | {task} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("dfa's zero-shot CPR beats: " + ", ".join(f"{m} {w}/{len(keys)}" for m, w in wins.items()))
    return "\n".join(lines)
