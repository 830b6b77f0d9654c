"""The `dfa` command line: argument parsing and subcommands; the logic lives in the library."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from dfa.errors import DfaError
from dfa.ladders import LADDERS, PYTHIA_STEPS
from dfa.zoo.spec import TOY_SPECS, zoo_root

_NAME_FORMS = """\
Model names, wherever a command takes --model:
  NAME                 a ladder model above, from the hub or its local cache (toy: shipped)
  NAME@stepN           a Pythia training checkpoint, e.g. pythia-160m@step3000
  NAME:random          the real architecture with random weights, offline (e.g. gpt2-large:random)
  ORG/NAME[@REV]       any Hugging Face hub id (GPT-2 or GPT-NeoX architecture is safest)
  PATH                 a local Hugging Face folder (config.json + weights + tokenizer)
Offline: HF_HUB_OFFLINE=1 makes hub names fail at once unless cached; tokenizers for
':random' come from $DFA_TOKENIZERS or shared/tokenizers beside the checkout."""


def _human(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _toy_params(name: str) -> int | None:
    from dfa.zoo.card import read_card

    folder = zoo_root() / name
    return read_card(folder)["n_params"] if (folder / "card.json").is_file() else None


def cmd_models(args: argparse.Namespace) -> int:
    if args.json:
        rows = [
            {
                "name": m.name,
                "family": m.family,
                "hf_id": m.hf_id,
                "tokenizer": m.tokenizer,
                "n_layers": m.n_layers,
                "n_heads": m.n_heads,
                "d_model": m.d_model,
                "n_nodes": m.n_nodes,
                "params": m.published_params,
                "checkpoints": [f"step{s}" for s in PYTHIA_STEPS] if m.has_checkpoints else [],
            }
            for m in LADDERS.values()
        ]
        rows += [
            {
                "name": t.name,
                "family": t.family,
                "hf_id": None,
                "tokenizer": "toy (saved with each model)",
                "n_layers": t.n_layers,
                "n_heads": t.n_heads,
                "d_model": t.d_model,
                "n_nodes": t.n_nodes + 1,
                "params": _toy_params(t.name),
                "checkpoints": [],
            }
            for t in TOY_SPECS.values()
        ]
        print(json.dumps(rows, indent=2))
        return 0
    header = f"  {'name':<22}{'layers':>7}{'heads':>7}{'d_model':>9}{'nodes':>7}{'params':>10}"
    for family, title in (
        ("gpt2", "GPT-2 ladder (hub: openai-community/NAME, tokenizer gpt2; no training checkpoints)"),
        (
            "pythia",
            (
                "Pythia ladder (hub: EleutherAI/NAME, tokenizer gpt-neox-20b; checkpoints "
                f"@step0 ... @step{PYTHIA_STEPS[-1]}, {len(PYTHIA_STEPS)} of them)"
            ),
        ),
    ):
        print(title)
        print(header)
        for m in LADDERS.values():
            if m.family == family:
                print(
                    f"  {m.name:<22}{m.n_layers:>7}{m.n_heads:>7}{m.d_model:>9}"
                    f"{m.n_nodes:>7}{_human(m.published_params):>10}"
                )
        print()
    print(f"Toy ladders (trained by dfa, shipped in {zoo_root()}; `dfa zoo info` for their cards)")
    print(header)
    for t in TOY_SPECS.values():
        params = _toy_params(t.name)
        shown = _human(params) if params else "not built"
        print(f"  {t.name:<22}{t.n_layers:>7}{t.n_heads:>7}{t.d_model:>9}{t.n_nodes + 1:>7}{shown:>10}")
    print()
    print("nodes = input + heads + MLPs; params as published (toy: as built).\n")
    print(_NAME_FORMS)
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    from dfa.graph import NodeGraph
    from dfa.models import load_model

    start = time.perf_counter()
    model = load_model(
        args.model, device=args.device, dtype=args.dtype, tokenizer=args.tokenizer, seed=args.seed
    )
    load_s = time.perf_counter() - start
    graph = NodeGraph.from_model(model)
    params = model.dfa_info.n_params
    cfg = model.cfg
    print(
        f"{args.model}: {cfg.n_layers} layers x {cfg.n_heads} heads, d_model {cfg.d_model}, "
        f"{_human(params)} parameters ({params:,}), loaded in {load_s:.1f}s on {cfg.device}"
    )
    print(repr(graph))
    if args.all:
        for n in graph:
            print(
                f"  {n.index:>5}  {n.name:<10}{n.kind:<6} layer {n.layer:>3}  depth {n.depth:.3f}  {n.hook}"
            )
    else:
        shown = graph.names[: 2 + graph.n_heads] + ["..."] + graph.names[-2:]
        print("  order: " + ", ".join(shown) + "  (--all lists every node with its hook)")
    if args.check:
        _check_hooks(model, graph, args.prompt)
    return 0


def _check_hooks(model, graph, prompt: str) -> None:
    """Run one forward pass with every node hook attached and report what each one saw."""
    import torch

    seen: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(act: torch.Tensor, hook) -> torch.Tensor:
            seen[name] = tuple(act.shape)
            return act

        return hook

    tokens = model.to_tokens(prompt)
    start = time.perf_counter()
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[(h, record(h)) for h in graph.hooks])
    forward_s = time.perf_counter() - start
    missing = [h for h in graph.hooks if h not in seen]
    if missing:
        raise DfaError(f"These node hooks never fired: {', '.join(missing)}.")
    top = logits[0, -1].topk(5).indices.tolist()
    print(
        f"forward on {tokens.shape[1]} tokens ({prompt!r}, BOS prepended): {forward_s * 1000:.0f} ms; "
        f"all {len(graph.hooks)} node hooks fired "
        f"(input {seen[graph.hooks[0]]}, heads {seen[graph.heads[0].hook]}, mlp {seen[graph.mlps[0].hook]})"
    )
    print(f"top-5 next tokens: {[model.tokenizer.decode([t]) for t in top]}")


def _show_ids(tokenizer, ids: tuple[int, ...]) -> str:
    """The first token of an answer set, and how many more the set holds."""
    more = f" (+{len(ids) - 1} more)" if len(ids) > 1 else ""
    return tokenizer.decode([ids[0]]) + more


def cmd_tasks(args: argparse.Namespace) -> int:
    from dfa.models import load_tokenizer, tokenizer_for
    from dfa.tasks import TASKS, get_task, survey

    if args.model and args.tokenizer:
        raise DfaError("Give --model or --tokenizer, not both.")
    source = args.model or args.tokenizer or "gpt2"
    tokenizer = tokenizer_for(source) if not args.tokenizer else load_tokenizer(args.tokenizer)
    families = args.families.split(",") if args.families else None
    names = args.task or list(TASKS)
    surveys = [
        survey(get_task(n), tokenizer, draws=args.draws, seed=args.seed, families=families) for n in names
    ]
    print(
        f"tokenizer of {source} (vocab {len(tokenizer)}); first {args.draws} candidates of each task, "
        f"seed {args.seed}, families {args.families or 'all'}"
    )
    print(f"  {'task':<16}{'metric':<12}{'usable':>7}{'train':>7}{'val':>6}{'test':>6}{'dup':>6}  dropped")
    for sv in surveys:
        task = TASKS[sv.task]
        drops = sv.report.drops(none="-")
        print(
            f"  {sv.task:<16}{task.metric:<12}{sv.report.kept:>7}{sv.usable['train']:>7}"
            f"{sv.usable['val']:>6}{sv.usable['test']:>6}{sv.report.duplicates:>6}  {drops}"
        )
    print("\nOne example each (clean | corrupt -> answer vs wrong):")
    for sv in surveys:
        ex = next(iter(sv.examples.values()), None)
        if ex is None:
            print(f"  {sv.task}: no usable example")
            continue
        answer, wrong = _show_ids(tokenizer, ex.answers), _show_ids(tokenizer, ex.wrongs)
        print(f"  {sv.task} [{ex.family}]: {ex.clean!r} | {ex.corrupt!r} -> {answer!r} vs {wrong!r}")
    return 0


def cmd_zoo_build(args: argparse.Namespace) -> int:
    from dfa.zoo.build import build_ladders
    from dfa.zoo.spec import FAMILY_ARCH

    out = Path(args.out).expanduser().resolve() if args.out else zoo_root()
    start = time.perf_counter()
    cards = build_ladders(args.family or list(FAMILY_ARCH), seed=args.seed, out=out, steps=args.steps)
    print(f"built {len(cards)} models in {out} in {(time.perf_counter() - start) / 60:.1f} min\n")
    _print_cards(cards, out)
    return 0 if all(c["test"]["passes"] for c in cards) else 1


def cmd_zoo_info(args: argparse.Namespace) -> int:
    from dfa.zoo.card import read_card

    root = Path(args.dir).expanduser().resolve() if args.dir else zoo_root()
    cards, missing = [], []
    for name in TOY_SPECS:
        if (root / name / "config.json").is_file():
            cards.append(read_card(root / name))
        else:
            missing.append(name)
    if not cards:
        raise DfaError(f"No toy models in {root}; build them with `dfa zoo build --out {root}`.")
    if args.json:
        print(json.dumps(cards, indent=2))
    else:
        _print_cards(cards, root)
        if missing:
            print(f"\nnot built in {root}: {', '.join(missing)}")
    return 0


def _print_cards(cards: list[dict], root: Path) -> None:
    from dfa.zoo.card import MAX_CORRUPT_SHARE, MIN_ACCURACY

    print(f"toy models in {root}")
    print(
        f"  {'name':<13}{'arch':<18}{'layers':>7}{'heads':>6}{'d_model':>8}{'nodes':>6}{'params':>8}"
        f"{'steps':>7}{'seed':>5}{'train':>8}  bar"
    )
    for c in cards:
        print(
            f"  {c['name']:<13}{c['architecture']:<18}{c['n_layers']:>7}{c['n_heads']:>6}{c['d_model']:>8}"
            f"{c['n_nodes']:>6}{_human(c['n_params']):>8}{c['steps']:>7}{c['seed']:>5}"
            f"{c['train_seconds']:>7.0f}s  {'pass' if c['test']['passes'] else 'FAIL'}"
        )
    print(
        f"\ntest split: accuracy (clean metric > 0, bar {MIN_ACCURACY:.0%}) / mean clean metric / mean "
        f"corrupt as a share of clean (bar {MAX_CORRUPT_SHARE:.0%}); greater_than's metric is prob_diff"
    )
    tasks = list(cards[0]["test"]["tasks"])
    print(f"  {'task':<16}" + "".join(f"{c['name']:>22}" for c in cards))
    for task in tasks:
        cells = []
        for c in cards:
            t = c["test"]["tasks"][task]
            flag = " " if t["passes"] else "!"
            share = "  n/a" if t["corrupt_share"] is None else f"{t['corrupt_share']:>5.0%}"
            cells.append(f"{t['accuracy']:.2f} {t['clean']:>6.2f} {share}{flag}")
        print(f"  {task:<16}" + "".join(f"{cell:>22}" for cell in cells))
    n = {c["test"]["tasks"][t]["n"] for c in cards for t in tasks}
    print(f"  pairs per task: {min(n)} to {max(n)}; '!' marks a task below the bar")


def _load(args: argparse.Namespace):
    from dfa.models import load_model

    return load_model(args.model, device=args.device, dtype=args.dtype, seed=args.model_seed)


def cmd_attribute(args: argparse.Namespace) -> int:
    from dfa.circuits import score_nodes

    out = Path(args.out)
    if out.suffix not in (".json", ".safetensors"):
        raise DfaError(f"--out must end in .json (importances) or .safetensors, not {out.name!r}.")
    model = _load(args)
    scores = score_nodes(
        model,
        args.task,
        args.method,
        args.split,
        args.n,
        args.seed,
        args.ablation,
        args.ig_steps,
        args.batch_size,
        progress=True,
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


def cmd_evaluate_circuit(args: argparse.Namespace) -> int:
    from dfa.circuits import evaluate_scores
    from dfa.evaluate import overlap, plot_curves
    from dfa.graph import NodeGraph
    from dfa.io import write_json
    from dfa.scores import NodeScores

    loaded: dict[str, NodeScores] = {}
    for path in args.scores:
        s = NodeScores.load(path)
        label = str(s.meta.get("method") or Path(path).stem)
        loaded[label if label not in loaded else Path(path).stem] = s
    model = _load(args)
    for label, s in loaded.items():
        if s.meta.get("task") not in (None, args.task):
            print(
                f"note: {label} scores were computed on {s.meta['task']!r}, evaluated here on {args.task!r}"
            )
    ev = evaluate_scores(
        model,
        args.task,
        loaded,
        args.split,
        args.n,
        args.seed,
        args.ablation,
        keep_input=not args.ablate_input,
        rank=args.rank,
        n_random=args.random,
        n_boot=args.boot,
        batch_size=args.batch_size,
        progress=True,
    )
    print(
        f"{args.model} on {args.task} ({args.split} split, {ev.n_prompts} prompts, {ev.ablation}); "
        f"input node {ev.input_node}; metric clean {ev.clean:.3f}, empty circuit {ev.empty:.3f}"
    )
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
    graph = NodeGraph.from_model(model)
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
            "split": args.split,
            "scores": {k: str(p) for k, p in zip(loaded, args.scores, strict=True)},
            **ev.to_json(per_prompt=args.per_prompt),
            "worst_prompts": {k: ev.failures(k, args.worst) for k in labels},
        }
        print(f"wrote {write_json(args.json, report)}")
    if args.plot:
        print(f"wrote {plot_curves(ev, args.plot, f'{args.model} / {args.task}')}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import logging

    from dfa.training import make_config, train

    # Lightning's start-up chatter (accelerator lines, tips); our own lines say what matters.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    overrides = {
        "src": args.src,
        "tgt": args.tgt,
        "tasks": args.tasks,
        "holdout": args.holdout,
        "method": args.method,
        "max_epochs": None if args.resume else args.max_epochs,
        "seed": args.seed,
        "out": args.out,
        "run": args.run,
        "sparsity": args.sparsity,
        "lr": args.lr,
        "loss": args.loss,
        "normalise": args.normalise,
        "init": args.init,
        "anchor": args.anchor,
        "accelerator": args.accelerator,
    }
    config = make_config(args.config, **overrides)
    start = time.perf_counter()
    run = train(config, resume=args.resume, overwrite=args.overwrite, max_epochs=args.max_epochs)
    info = json.loads((run / "map.json").read_text())
    m = info["final_metrics"]
    shown = ", ".join(f"{k} {v:.3f}" for k, v in m.items() if k.startswith("val/cpr") and k.count("/") == 1)
    print(
        f"trained {info['src']} -> {info['tgt']} map in {time.perf_counter() - start:.0f}s "
        f"({info['epochs']} epochs, {info['steps']} steps; {shown})"
    )
    print(f"run folder: {run}  (tensorboard --logdir {run / 'tensorboard'})")
    print(f"evaluate it: python scripts/evaluate.py --map {run}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from dfa.evaluate import plot_grid
    from dfa.io import write_json
    from dfa.transfer import evaluate_run, table, wins

    report, evals = evaluate_run(
        args.map, args.tasks, args.methods, args.split, args.n, args.boot, progress=True, draws=args.draws
    )
    print(
        f"{report['src']} -> {report['tgt']} map {report['map']} on the {args.split} split; "
        f"CPR [95% CI] ({report['ablation']}, input node kept, {report['attribution']} source scores)"
    )
    print(table(report))
    if "dfa" in args.methods:
        for setting in ("in-distribution", "zero-shot"):
            sub = {**report, "results": [r for r in report["results"] if r["setting"] == setting]}
            if sub["results"]:
                w = wins(sub, [m for m in args.methods if m not in ("dfa", "gold")])
                print(
                    f"  dfa beats ({setting}): "
                    + ", ".join(f"{b} {v['wins']}/{v['of']}" for b, v in w.items())
                )
    if args.json:
        print(f"wrote {write_json(args.json, report)}")
    if args.plot:
        title = f"{report['src']} -> {report['tgt']}"
        print(f"wrote {plot_grid(evals, args.plot, title)}")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from dfa.transfer import transfer

    predicted, paths, ev = transfer(
        args.map,
        args.task,
        args.out,
        not args.no_eval,
        args.methods,
        args.split,
        args.n,
        args.boot,
        args.draws,
    )
    meta = predicted.meta
    print(f"{meta['src']} -> {meta['model']} predicted circuit for {args.task} ({meta['setting']}):")
    print("  " + ", ".join(str(p) for p in paths))
    top = sorted(predicted.as_dict().items(), key=lambda kv: -kv[1])[1 : args.top + 1]
    print("  top nodes by mask: " + ", ".join(f"{n} {v:.2f}" for n, v in top))
    if ev is not None:
        print(
            f"  on {ev.n_prompts} {args.split} prompts: "
            + ", ".join(
                f"{c.label} CPR {c.cpr:.3f} [{c.cpr_ci[0]:.2f}, {c.cpr_ci[1]:.2f}]"
                for c in ev.curves.values()
            )
        )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from dfa.sweep import main as sweep_main

    return sweep_main(args.rest)


def _map_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--split", default="test", choices=["train", "val", "test"], help="prompt split (default test)"
    )
    p.add_argument("--n", type=int, default=200, help="prompts per task (default 200)")
    p.add_argument(
        "--boot", type=int, default=1000, help="bootstrap resamples for the CPR interval (default 1000)"
    )
    p.add_argument(
        "--draws", type=int, default=5, help="seeded draws averaged per control: random, permuted, scrambled"
    )


def _model_args(p: argparse.ArgumentParser) -> None:
    from dfa.interventions import ABLATIONS

    p.add_argument("--model", required=True, help="model name (see `dfa models`)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16, float16")
    p.add_argument("--model-seed", type=int, default=0, help="weight seed for NAME:random models")
    p.add_argument("--seed", type=int, default=0, help="prompt seed (which pairs; random rankings)")
    p.add_argument("--ablation", default="patching", choices=list(ABLATIONS), help="how nodes are ablated")
    p.add_argument("--batch-size", type=int, default=50, help="prompts per batch (default 50)")


def build_parser() -> argparse.ArgumentParser:
    from dfa.attribution import METHODS

    parser = argparse.ArgumentParser(
        prog="dfa", description="Transfer circuits between language models of different sizes."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the model ladders and the model-name forms")
    p.add_argument("--json", action="store_true", help="machine-readable list")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("nodes", help="load a model and print its node graph")
    p.add_argument("--model", required=True, help="model name (see `dfa models`)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16, float16")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder, ladder name or hub id")
    p.add_argument("--seed", type=int, default=0, help="weight seed for NAME:random models")
    p.add_argument("--all", action="store_true", help="list every node with its hook")
    p.add_argument("--check", action="store_true", help="run a forward pass through every node hook")
    p.add_argument("--prompt", default="When Mary and John went to the store, John gave a drink to")
    p.set_defaults(func=cmd_nodes)

    p = sub.add_parser("tasks", help="per-task usable pair counts and an example, for a tokenizer")
    p.add_argument(
        "--model", default=None, help="use this model's tokenizer (default gpt2); the model is not loaded"
    )
    p.add_argument("--tokenizer", default=None, help="a tokenizer folder, ladder name or hub id")
    p.add_argument("--task", action="append", help="only this task (repeatable)")
    p.add_argument("--families", default=None, help="comma-separated variation families (default: all)")
    p.add_argument("--draws", type=int, default=4000, help="candidates drawn per task (default 4000)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("attribute", help="score a model's nodes on a task (EAP, EAP-IG, exact patching)")
    _model_args(p)
    p.add_argument("--task", required=True, help="task name (see `dfa tasks`)")
    p.add_argument(
        "--method",
        default="eap-ig-inputs",
        choices=list(METHODS),
        help="attribution method (default eap-ig-inputs)",
    )
    p.add_argument(
        "--ig-steps", type=int, default=5, help="integration steps of the EAP-IG methods (default 5)"
    )
    p.add_argument(
        "--split", default="train", choices=["train", "val", "test"], help="prompt split (default train)"
    )
    p.add_argument("--n", type=int, default=200, help="prompts to score on (default 200)")
    p.add_argument("--out", required=True, help="scores file: .json (EAP-IG/MIB importances) or .safetensors")
    p.add_argument("--top", type=int, default=10, help="print this many top nodes")
    p.set_defaults(func=cmd_attribute)

    p = sub.add_parser(
        "evaluate-circuit", help="faithfulness curves, CPR and CMD of circuits from node scores"
    )
    _model_args(p)
    p.add_argument("--task", required=True, help="task name (see `dfa tasks`)")
    p.add_argument(
        "--scores", required=True, action="append", help="scores file (.json or .safetensors; repeatable)"
    )
    p.add_argument(
        "--split", default="test", choices=["train", "val", "test"], help="prompt split (default test)"
    )
    p.add_argument("--n", type=int, default=200, help="prompts to evaluate on (default 200)")
    p.add_argument(
        "--random", type=int, default=5, help="random rankings averaged into the baseline (default 5)"
    )
    p.add_argument(
        "--boot", type=int, default=1000, help="bootstrap resamples for the CPR interval (default 1000)"
    )
    p.add_argument(
        "--rank", default="abs", choices=["abs", "signed"], help="rank nodes by |score| (default) or score"
    )
    p.add_argument(
        "--ablate-input", action="store_true", help="rank the input node too instead of always keeping it"
    )
    p.add_argument(
        "--overlap-fraction", type=float, default=0.1, help="circuit size for overlaps (default 0.1)"
    )
    p.add_argument("--worst", type=int, default=5, help="list this many worst-served prompts")
    p.add_argument("--per-prompt", action="store_true", help="put every prompt's CPR in the JSON")
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument("--plot", default=None, help="write the curves here (PNG)")
    p.set_defaults(func=cmd_evaluate_circuit)

    from dfa.mapping import NORMALISATIONS
    from dfa.training import INITS
    from dfa.transfer import DEFAULT_METHODS
    from dfa.transfer import METHODS as MAP_METHODS

    p = sub.add_parser("train", help="train an alignment map from a source model to a target model")
    p.add_argument("--config", default=None, help="YAML config (configs/*.yaml); flags override it")
    p.add_argument("--src", default=None, help="source model (default toy-gpt2-s)")
    p.add_argument("--tgt", default=None, help="target model (default toy-gpt2-l)")
    p.add_argument("--tasks", nargs="+", default=None, help="tasks to use (default: all)")
    p.add_argument(
        "--holdout",
        action="append",
        default=None,
        help="task left out of training, evaluated zero-shot (repeatable)",
    )
    p.add_argument(
        "--method", default=None, choices=list(METHODS), help="source attribution (default eap-ig-inputs)"
    )
    p.add_argument(
        "--max-epochs", type=int, default=None, help="epochs (default 6); with --resume, extends the run"
    )
    p.add_argument("--seed", type=int, default=None, help="map initialisation and batch order (default 0)")
    p.add_argument("--sparsity", type=float, default=None, help="lambda of the sparsity penalty")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate")
    p.add_argument(
        "--normalise",
        default=None,
        choices=list(NORMALISATIONS),
        help="per-task source-score normalisation (default zscore)",
    )
    p.add_argument(
        "--init",
        default=None,
        choices=list(INITS),
        help="W's start: the depth map (default) or noise",
    )
    p.add_argument("--anchor", type=float, default=None, help="pull of W back to its start (default 10)")
    p.add_argument(
        "--loss", default=None, choices=["kl", "logit_diff"], help="faithfulness loss (default kl)"
    )
    p.add_argument("--accelerator", default=None, help="auto (default), cpu or cuda")
    p.add_argument("--out", default=None, help="checkpoint root (default checkpoints)")
    p.add_argument("--run", default=None, help="run name (default from the hold-outs and seed)")
    p.add_argument("--resume", action="store_true", help="continue the run folder's last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="a trained map's circuits against gold, depth and control baselines")
    p.add_argument("--map", required=True, help="run folder (checkpoints/<src>__<tgt>/<run>)")
    p.add_argument("--tasks", nargs="+", default=None, help="tasks (default: the run's tasks and hold-outs)")
    p.add_argument(
        "--methods",
        nargs="+",
        default=list(DEFAULT_METHODS),
        choices=list(MAP_METHODS),
        help="what to compare (default: all but role and role-assign)",
    )
    _map_eval_args(p)
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument("--plot", default=None, help="write the curves here (PNG, one panel per task)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("transfer", help="reuse a trained map on a task: predicted circuit and its evaluation")
    p.add_argument("--map", required=True, help="run folder (checkpoints/<src>__<tgt>/<run>)")
    p.add_argument("--task", required=True, help="task name, seen in training or not")
    p.add_argument(
        "--out", default=None, help="output stem (default RUN/transfer/TASK): .json and .safetensors"
    )
    p.add_argument("--no-eval", action="store_true", help="write the circuit only")
    p.add_argument(
        "--methods", nargs="+", default=["dfa", "depth", "random"], choices=list(MAP_METHODS), help="compared"
    )
    p.add_argument("--top", type=int, default=10, help="print this many top nodes")
    _map_eval_args(p)
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser(
        "sweep",
        add_help=False,
        help="every pair of a ladder: maps, baselines, tables (see `dfa sweep --help`)",
    )
    p.set_defaults(func=cmd_sweep)  # main() hands everything after `sweep` to dfa.sweep

    p = sub.add_parser("zoo", help="the toy ladders: build them, or print their cards")
    zoo = p.add_subparsers(dest="zoo_command", required=True)
    q = zoo.add_parser("build", help="train a toy ladder on the tasks' train splits and save it")
    q.add_argument("--family", action="append", help="toy-gpt2 or toy-neox (repeatable; default: both)")
    q.add_argument("--seed", type=int, default=0, help="training seed (the shipped ladders use 0)")
    q.add_argument("--out", default=None, help="folder to write the models to (default: the zoo root)")
    q.add_argument("--steps", type=int, default=None, help="override the training steps (quick trials)")
    q.set_defaults(func=cmd_zoo_build)
    q = zoo.add_parser("info", help="print the toy models' cards: sizes and test-split quality")
    q.add_argument("--dir", default=None, help="zoo folder (default: $DFA_ZOO or the shipped ladders)")
    q.add_argument("--json", action="store_true", help="the cards as JSON")
    q.set_defaults(func=cmd_zoo_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sweep"]:  # its own parser (dfa.sweep.main), flags and --help included
        args = argparse.Namespace(command="sweep", rest=argv[1:], func=cmd_sweep)
    else:
        args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DfaError as err:
        print(f"dfa {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
