"""`dfa attribute`, `evaluate-circuit`, `circuits-table` and `bench`: node scores and circuits of one model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from dfa.cli.flags import add_config_flags, config_values, output_flag, positive_int
from dfa.cli.help_times import help_times
from dfa.config import build
from dfa.experiments.configs import CircuitsTableConfig
from dfa.core.errors import DfaError

if TYPE_CHECKING:
    from dfa.core.graph import NodeGraph
    from dfa.core.scores import NodeScores


def _load(args: argparse.Namespace):
    from dfa.core.models import load_model

    return load_model(args.model, device=args.device, dtype=args.dtype, seed=args.model_seed)


def cmd_attribute(args: argparse.Namespace) -> int:
    from dfa.core.circuits import score_nodes
    from dfa.core.tasks import get_task

    out = Path(args.out)
    if out.suffix not in (".json", ".safetensors"):
        raise DfaError(f"--out must end in .json (importances) or .safetensors, not {out.name!r}.")
    get_task(args.task)  # a task file is read and checked before the model loads
    model = _load(args)
    scores = score_nodes(
        model,
        args.task,
        args.method,
        args.split,
        args.n,
        args.data_seed,
        args.ablation,
        args.ig_steps,
        args.batch_size,
        progress=True,
        max_rows=args.max_rows,
    )
    path = scores.save(out)
    meta = scores.meta
    print(
        f"{meta['method']} scores of {meta['model']} on {args.task} ({meta['split']} split, "
        f"{meta['n_prompts']} prompts, {meta['ablation']}) in {meta['seconds']:.1f}s -> {path}"
    )
    top = sorted(scores.as_dict().items(), key=lambda kv: -abs(kv[1]))[: args.top]
    print(f"top {len(top)} by |score| ({meta['sign']}):")
    for name, value in top:
        print(f"  {name:<10}{value:+.4f}")
    return 0


def _load_scores(paths: list[str]) -> dict[str, NodeScores]:
    """Each `--scores` file by its method's label (or its file stem where two share a method)."""
    from dfa.core.scores import NodeScores

    loaded: dict[str, NodeScores] = {}
    for path in paths:
        if not Path(path).is_file():
            raise DfaError(f"No scores file at {path}. Make one with `dfa attribute ... --out {path}`.")
        s = NodeScores.load(path)
        label = str(s.meta.get("method") or Path(path).stem)
        loaded[label if label not in loaded else Path(path).stem] = s
    return loaded


def _unscored_notes(
    loaded: dict[str, NodeScores], graph: NodeGraph, keep_input: bool, random: bool
) -> dict[str, list[str]]:
    """Say how many nodes each scores file leaves unscored (NaN or missing), which every circuit
    keeps, and that the random baseline ranks the same scored nodes. Returns them by label."""
    out = {}
    for label, s in loaded.items():
        out[label] = [n for n in s.unscored(graph, label) if not (keep_input and n == "input")]
        if out[label]:
            shown = ", ".join(out[label][:6]) + (" ..." if len(out[label]) > 6 else "")
            print(
                f"note: {label} leaves {len(out[label])} of {len(graph)} nodes unscored (NaN or missing: "
                f"{shown}); they are kept in every circuit"
            )
    kept = sorted({n for names in out.values() for n in names}, key=graph.index)
    if random and kept:
        print(f"note: the random baseline keeps the same {len(kept)} unscored nodes and ranks the rest")
    return out


def _print_curves(ev) -> None:
    """Each ranking's CPR, interval, CMD, log-x area and curve, then its CPR per family."""
    first = next(iter(ev.curves.values()))
    print(f"  {'ranking':<20}{'CPR':>7}  {'95% CI':<17}{'CMD':>7}{'log-x':>7}   f at k = {first.ks}")
    for c in ev.curves.values():
        ci = f"[{c.cpr_ci[0]:.3f}, {c.cpr_ci[1]:.3f}]"
        curve = " ".join(f"{v:.2f}" for v in c.faithfulness)
        print(f"  {c.label:<20}{c.cpr:>7.3f}  {ci:<17}{c.cmd:>7.3f}{c.cpr_log:>7.3f}   {curve}")
    print(
        "  per family CPR: "
        + "; ".join(
            f"{c.label} " + ", ".join(f"{k} {v:.3f}" for k, v in c.family_cpr.items())
            for c in ev.curves.values()
            if c.label != "random"
        )
    )


def cmd_evaluate_circuit(args: argparse.Namespace) -> int:
    from dfa.core.circuits import evaluate_scores
    from dfa.core.evaluate import overlap
    from dfa.core.graph import NodeGraph
    from dfa.core.io import write_json
    from dfa.core.tasks import get_task, task_sources
    from dfa.report.figures import plot_curves
    from dfa.report.tables import prompt_notes

    get_task(args.task)  # a task file is read and checked before the model loads
    loaded = _load_scores(args.scores)
    model = _load(args)
    graph = NodeGraph.from_model(model)
    for label, s in loaded.items():
        if s.meta.get("task") not in (None, args.task):
            print(
                f"note: {label} scores were computed on {s.meta['task']!r}, evaluated here on {args.task!r}"
            )
    unscored = _unscored_notes(loaded, graph, keep_input=not args.ablate_input, random=args.random > 0)
    ev = evaluate_scores(
        model,
        args.task,
        loaded,
        args.split,
        args.n,
        args.data_seed,
        args.ablation,
        keep_input=not args.ablate_input,
        rank=args.rank,
        n_random=args.random,
        n_boot=args.boot,
        batch_size=args.batch_size,
        progress=True,
        max_rows=args.max_rows,
    )
    print(
        f"{args.model} on {args.task} ({args.split} split, {ev.n_prompts} prompts, {ev.n_distinct} "
        f"distinct clean prompts, {ev.ablation}); "
        f"input node {ev.input_node}; metric clean {ev.clean:.3f}, empty circuit {ev.empty:.3f}"
    )
    for note in prompt_notes([{"task": args.task, "n_prompts": ev.n_prompts, "n_distinct": ev.n_distinct}]):
        print(note)
    _print_curves(ev)
    labels = [k for k in loaded]
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            o = overlap(loaded[a].for_graph(graph), loaded[b].for_graph(graph), graph, args.overlap_fraction)
            print(
                f"  overlap {a} / {b} at {o['fraction']}: {o['shared']} of {o['k']} nodes ({o['share']:.0%})"
            )
    if labels:
        worst = ev.failures(labels[0], args.worst)
        if worst:
            print(f"  prompts {labels[0]}'s circuits serve worst (per-prompt CPR):")
            for r in worst:
                print(f"    {r['cpr']:+.3f}  [{r['family']}] {r['prompt']!r}")
    if args.json:
        report = {
            "model": args.model,
            "task": args.task,
            "task_files": task_sources([args.task]),
            "split": args.split,
            "scores": {k: str(p) for k, p in zip(loaded, args.scores, strict=True)},
            "unscored": unscored,
            **ev.to_json(per_prompt=args.per_prompt),
            "worst_prompts": {k: ev.failures(k, args.worst) for k in labels},
        }
        print(f"wrote {write_json(args.json, report)}")
    if args.plot:
        print(f"wrote {plot_curves(ev, args.plot, f'{args.model} / {args.task}')}")
    return 0


def cmd_circuits_table(args: argparse.Namespace) -> int:
    from dfa.core.outputs import check_config_outputs
    from dfa.experiments.circuits_table import run_circuits_table
    from dfa.report.tables import circuits_markdown
    from dfa.store import ModelPool

    cfg = build(CircuitsTableConfig, config_values(args, CircuitsTableConfig))
    check_config_outputs(cfg)  # a YAML's paths too, before any model loads
    rows = run_circuits_table(cfg, ModelPool(cfg.device, cfg.dtype))
    print(circuits_markdown(rows, cfg.methods))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.help_times:
        rows = help_times(args.parser, args.repeats)
        for r in rows:
            heavy = ", ".join(r["heavy"]) if r["heavy"] else "none"
            print(f"{r['seconds']:6.2f} s  {r['command']:<40} heavy modules loaded: {heavy}")
        print(f"slowest: {max(r['seconds'] for r in rows):.2f} s (target: under 2 s)")
        return 0 if all(r["rc"] == 0 for r in rows) else 1
    from dfa.experiments.bench import run, run_training

    if args.memory:
        from dfa.experiments.bench_memory import run_memory

        result = run_memory(
            args.memory,
            args.task,
            args.batch_size,
            args.ig_steps,
            args.device,
            args.dtype,
            args.max_rows,
            tokenizer=args.tokenizer,
        )
    elif args.training:
        result = run_training(args.training, 156, args.task, args.batch_size, args.repeats, args.device)
    else:
        result = run(args.model, args.task, args.batch_size, args.ig_steps, args.repeats, args.device)
    print(json.dumps(result, indent=2))
    return 0


def model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """The flags of every command that loads one model."""
    p.add_argument("--model", required=required, help="model name (see `dfa models`)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (CUDA when visible)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--model-seed", type=int, default=0, help="weight seed of NAME:random models")


def _prompt_args(p: argparse.ArgumentParser, split: str) -> None:
    from dfa.core.names import ABLATIONS

    p.add_argument("--task", required=True, help="task name (see `dfa tasks`)")
    p.add_argument(
        "--data-seed", type=int, default=0, help="the tasks' split seed (which pairs; random rankings)"
    )
    p.add_argument("--ablation", default="patching", choices=list(ABLATIONS), help="how nodes are ablated")
    p.add_argument("--batch-size", type=int, default=50, help="prompts per batch (default: 50)")
    p.add_argument(
        "--split", default=split, choices=["train", "val", "test"], help=f"prompt split (default: {split})"
    )
    p.add_argument("--n", type=positive_int, default=200, help="prompts (default: 200)")
    p.add_argument(
        "--max-rows",
        type=int,
        default=None,
        help="memory budget: prompt rows per forward pass when IG steps or circuits are stacked "
        "(default: one batch, the memory of one plain pass; more rows, fewer passes)",
    )


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from dfa.core.names import ATTRIBUTIONS

    p = sub.add_parser("attribute", help="score a model's nodes on a task (EAP, EAP-IG, exact patching)")
    model_args(p)
    _prompt_args(p, "train")
    p.add_argument("--method", default="eap-ig-inputs", choices=list(ATTRIBUTIONS), help="attribution method")
    p.add_argument(
        "--ig-steps", type=int, default=5, help="integration steps of the EAP-IG methods (default: 5)"
    )
    output_flag(
        p, "--out", kind="file", required=True, help="scores file: .json (EAP-IG/MIB importances) or .safetensors"
    )
    p.add_argument("--top", type=positive_int, default=10, help="print this many top nodes")
    p.set_defaults(func=cmd_attribute)

    p = sub.add_parser(
        "evaluate-circuit", help="faithfulness curves, CPR and CMD of circuits from node scores"
    )
    model_args(p)
    _prompt_args(p, "test")
    p.add_argument(
        "--scores", required=True, action="append", help="scores file (.json or .safetensors; repeatable)"
    )
    p.add_argument(
        "--random", type=int, default=5, help="random rankings averaged into the baseline (default: 5)"
    )
    p.add_argument(
        "--boot", type=positive_int, default=1000, help="bootstrap resamples for the CPR interval (default: 1000)"
    )
    p.add_argument(
        "--rank", default="abs", choices=["abs", "signed"], help="rank nodes by |score| or by score"
    )
    p.add_argument(
        "--ablate-input", action="store_true", help="rank the input node too instead of always keeping it"
    )
    p.add_argument(
        "--overlap-fraction", type=float, default=0.1, help="circuit size for overlaps (default: 0.1)"
    )
    p.add_argument("--worst", type=int, default=5, help="list this many worst-served prompts")
    p.add_argument("--per-prompt", action="store_true", help="put every prompt's CPR in the JSON")
    output_flag(p, "--json", kind="file", default=None, help="write the report here")
    output_flag(p, "--plot", kind="file", suffixes=(".png",), default=None, help="write the curves here (PNG)")
    p.set_defaults(func=cmd_evaluate_circuit)

    p = sub.add_parser("circuits-table", help=(CircuitsTableConfig.__doc__ or "").split(": ", 1)[-1].strip())
    add_config_flags(p, CircuitsTableConfig)
    p.set_defaults(func=cmd_circuits_table)

    _bench_parser(sub)


def _bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time attribution, a curve, or a training step against plain passes")
    p.add_argument("--model", default="gpt2:random", help="model name (default: gpt2:random, offline)")
    p.add_argument("--task", default="ioi")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--ig-steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (CUDA when visible)")
    p.add_argument(
        "--training",
        default=None,
        metavar="TARGET",
        help="instead: time one map training step on TARGET (e.g. gpt2-medium:random) against a plain fwd+bwd",
    )
    p.add_argument(
        "--memory",
        default=None,
        metavar="MODEL",
        help="instead: peak memory of eap-ig-inputs and of a curve on MODEL (e.g. pythia-160m:random) "
        "against one plain forward+backward of the same batch",
    )
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--max-rows", type=int, default=None, help="with --memory: the runs' memory budget")
    p.add_argument(
        "--tokenizer",
        default=None,
        help="with --memory: the model's tokenizer (a folder, ladder name or hub id; e.g. gpt2 for "
        "gemma-3-270m:random, whose own tokenizer is not stored offline)",
    )
    p.add_argument(
        "--help-times",
        action="store_true",
        help="instead: time `dfa --help` and every subcommand's --help, each in a fresh interpreter",
    )
    p.set_defaults(func=cmd_bench)
