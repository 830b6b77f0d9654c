"""The `dfa` command line: argument parsing and subcommands; the logic lives in the library."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from dfa.errors import DfaError
from dfa.ladders import LADDERS, PYTHIA_STEPS

_NAME_FORMS = """\
Model names, wherever a command takes --model:
  NAME                 a ladder model above, from the hub or its local cache
  NAME@stepN           a Pythia training checkpoint, e.g. pythia-160m@step3000
  NAME:random          the real architecture with random weights, offline (e.g. gpt2-large:random)
  ORG/NAME[@REV]       any Hugging Face hub id (GPT-2 or GPT-NeoX architecture is safest)
  PATH                 a local Hugging Face folder (config.json + weights + tokenizer)
Offline: HF_HUB_OFFLINE=1 makes hub names fail at once unless cached; tokenizers for
':random' come from $DFA_TOKENIZERS or shared/tokenizers beside the checkout."""


def _human(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


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
    print("nodes = input + heads + MLPs; params as published.\n")
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


def build_parser() -> argparse.ArgumentParser:
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DfaError as err:
        print(f"dfa {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
