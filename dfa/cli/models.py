"""`dfa models`, `nodes`, `tasks` and `zoo`: what models and tasks exist, and the toy ladders."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from dfa.cli.circuits import model_args
from dfa.cli.flags import output_flag, positive_int
from dfa.cli.numbers import human_count
from dfa.cli.real import add_real_parsers, print_real, real_rows
from dfa.core.errors import DfaError
from dfa.core.ladders import LADDERS, PYTHIA_STEPS
from dfa.zoo.spec import TOY_SPECS, zoo_root

_NAME_FORMS = """\
Model names, wherever a command takes --model:
  NAME                 a ladder model above, from the hub or its local cache (toy: shipped)
  NAME@stepN           a Pythia training checkpoint, e.g. pythia-160m@step3000
  NAME:random          the real architecture with random weights, offline (e.g. gpt2-large:random)
  ORG/NAME[@REV]       any Hugging Face hub id (GPT-2 or GPT-NeoX architecture is safest)
  PATH                 a local Hugging Face folder (config.json + weights + tokenizer)
  PATH.gguf            a llama.cpp GGUF file (read by transformers, dequantized to --dtype)
  REAL                 a real pretrained model above, once `dfa fetch REAL` has converted it
Offline: HF_HUB_OFFLINE=1 makes hub names fail at once unless cached; tokenizers for
':random' come from $DFA_TOKENIZERS (when set, only there) or shared/tokenizers beside the
checkout (gpt2 and gpt-neox-20b ship there); a random-weight model runs with any tokenizer no
larger than its vocabulary: --tokenizer toy-gpt2-s ships with dfa."""


def _toy_params(name: str) -> int | None:
    from dfa.zoo.card import read_card

    folder = zoo_root() / name
    return read_card(folder)["n_params"] if (folder / "card.json").is_file() else None


_FAMILY_TITLES: dict[str, str] = {
    "gpt2": "GPT-2 ladder (hub: openai-community/NAME, tokenizer gpt2; no training checkpoints)",
    "pythia": (
        "Pythia ladder (hub: EleutherAI/NAME, tokenizer gpt-neox-20b; checkpoints "
        f"@step0 ... @step{PYTHIA_STEPS[-1]}, {len(PYTHIA_STEPS)} of them)"
    ),
    "llama3": "Llama-3 ladder (hub: meta-llama/..., gated; grouped-query attention, RMSNorm, gated MLPs)",
    "qwen2.5": "Qwen2.5 ladder (hub: Qwen/Qwen2.5-...; grouped-query attention, q/k/v biases)",
    "gemma3": "Gemma-3 ladder (hub: google/NAME, gated; one key/value head, sliding-window layers)",
    "smollm2": "SmolLM2 ladder (hub: HuggingFaceTB/SmolLM2-...; Llama architecture)",
}


def _ladder_row(m) -> dict:
    return {
        "name": m.name,
        "family": m.family,
        "hf_id": m.hf_id,
        "tokenizer": m.tokenizer,
        "n_layers": m.n_layers,
        "n_heads": m.n_heads,
        "n_kv_heads": m.n_kv_heads,
        "d_model": m.d_model,
        "n_nodes": m.n_nodes,
        "params": m.published_params,
        "checkpoints": [f"step{s}" for s in PYTHIA_STEPS] if m.has_checkpoints else [],
    }


def cmd_models(args: argparse.Namespace) -> int:
    if args.json:
        rows = [_ladder_row(m) for m in LADDERS.values()]
        rows += [
            {
                "name": t.name,
                "family": t.family,
                "hf_id": None,
                "tokenizer": "toy (saved with each model)",
                "n_layers": t.n_layers,
                "n_heads": t.n_heads,
                "n_kv_heads": t.n_heads,
                "d_model": t.d_model,
                "n_nodes": t.n_nodes + 1,
                "params": _toy_params(t.name),
                "checkpoints": [],
            }
            for t in TOY_SPECS.values()
        ]
        rows += real_rows()
        print(json.dumps(rows, indent=2))
        return 0
    header = f"  {'name':<22}{'layers':>7}{'heads':>7}{'kv':>5}{'d_model':>9}{'nodes':>7}{'params':>10}"
    for family, title in _FAMILY_TITLES.items():
        print(title)
        print(header)
        for m in LADDERS.values():
            if m.family == family:
                print(
                    f"  {m.name:<22}{m.n_layers:>7}{m.n_heads:>7}{m.n_kv_heads:>5}{m.d_model:>9}"
                    f"{m.n_nodes:>7}{human_count(m.published_params):>10}"
                )
        print()
    print(f"Toy ladders (trained by dfa, shipped in {zoo_root()}; `dfa zoo info` for their cards)")
    print(header)
    for t in TOY_SPECS.values():
        params = _toy_params(t.name)
        shown = human_count(params) if params else "not built"
        print(
            f"  {t.name:<22}{t.n_layers:>7}{t.n_heads:>7}{t.n_heads:>5}{t.d_model:>9}{t.n_nodes + 1:>7}{shown:>10}"
        )
    print()
    print_real()
    print(
        "heads = query heads (one node each); kv = key/value heads (fewer under grouped-query "
        "attention); nodes = input + heads + MLPs; params as published (toy: as built).\n"
    )
    print(_NAME_FORMS)
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    from dfa.core.graph import NodeGraph
    from dfa.core.models import load_model

    start = time.perf_counter()
    model = load_model(
        args.model, device=args.device, dtype=args.dtype, tokenizer=args.tokenizer, seed=args.model_seed
    )
    load_s = time.perf_counter() - start
    graph = NodeGraph.from_model(model)
    params = model.dfa_info.n_params
    cfg = model.cfg
    kv = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
    grouped = f" ({kv} key/value head{'s' if kv > 1 else ''})" if kv != cfg.n_heads else ""
    print(
        f"{args.model}: {cfg.n_layers} layers x {cfg.n_heads} heads{grouped}, d_model {cfg.d_model}, "
        f"{human_count(params)} parameters ({params:,}), loaded in {load_s:.1f}s on {cfg.device}"
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
    # A random-weight model may predict ids past a stand-in tokenizer's vocabulary: show those as ids.
    shown = [model.tokenizer.decode([t]) if t < len(model.tokenizer) else f"<id {t}>" for t in top]
    print(f"top-5 next tokens: {shown}")


def _show_ids(tokenizer, ids: tuple[int, ...]) -> str:
    """The first token of an answer set, and how many more the set holds."""
    more = f" (+{len(ids) - 1} more)" if len(ids) > 1 else ""
    return tokenizer.decode([ids[0]]) + more


def cmd_tasks(args: argparse.Namespace) -> int:
    from dfa.core.hub import load_tokenizer
    from dfa.core.models import tokenizer_for
    from dfa.core.outputs import shown_path
    from dfa.core.tasks import BUILTIN, TASKS, get_task, survey

    if args.model and args.tokenizer:
        raise DfaError("Give --model or --tokenizer, not both.")
    source = args.model or args.tokenizer or "gpt2"
    families = args.families.split(",") if args.families else None
    if args.out and not args.export:
        raise DfaError("--out is where --export writes: give --export TASK too.")
    names = args.task or list(BUILTIN if args.all else TASKS)
    # every file is read and checked before the tokenizer loads (a missing file is no tokenizer's fault)
    tasks = {n: get_task(n) for n in names} if not args.export else {}
    tokenizer = tokenizer_for(source) if not args.tokenizer else load_tokenizer(args.tokenizer)
    if args.export:
        return _export_task(args, tokenizer, source, families)
    surveys = [
        survey(tasks[n], tokenizer, draws=args.draws, seed=args.data_seed, families=families) for n in names
    ]
    print(
        f"tokenizer of {source} (vocab {len(tokenizer)}); first {args.draws} candidates of each task "
        f"(every row of a task file), data seed {args.data_seed}, families {args.families or 'all'}"
    )
    width = max(16, *(len(n) + 2 for n in names))
    print(
        f"  {'task':<{width}}{'metric':<12}{'usable':>7}{'train':>7}{'val':>6}{'test':>6}{'dup':>6}  dropped"
    )
    for name, sv in zip(names, surveys):
        drops = sv.report.drops(none="-")
        print(
            f"  {name:<{width}}{tasks[name].metric:<12}{sv.report.kept:>7}{sv.usable['train']:>7}"
            f"{sv.usable['val']:>6}{sv.usable['test']:>6}{sv.report.duplicates:>6}  {drops}"
        )
    print("\nOne example each (clean | corrupt -> answer vs wrong):")
    for name, sv in zip(names, surveys):
        ex = next(iter(sv.examples.values()), None)
        if ex is None:
            print(f"  {name}: no usable example")
            continue
        answer, wrong = _show_ids(tokenizer, ex.answers), _show_ids(tokenizer, ex.wrongs)
        print(f"  {name} [{ex.family}]: {ex.clean!r} | {ex.corrupt!r} -> {answer!r} vs {wrong!r}")
    for name, sv in zip(names, surveys):
        src = tasks[name].source
        if src is None:
            continue
        print(f"\n{name}: {src.format} file {shown_path(src.path)}, sha256 {src.sha256[:16]}..., {sv.report.drawn} rows")
        from dfa.experiments.val_race import enough_for

        print(f"  enough for: {enough_for(sv.usable)}")
        for why, n in sv.report.dropped.most_common():
            c = sv.report.first_dropped[why]
            print(
                f"  dropped {n} ({why}), e.g. row {c.row}: {c.clean!r} | {c.corrupt!r} -> "
                f"{'|'.join(c.answers)!r} vs {'|'.join(c.wrongs)!r}"
            )
    return 0


def _export_task(args: argparse.Namespace, tokenizer, source: str, families: list[str] | None) -> int:
    """`dfa tasks --export TASK --out FILE`: `--n` pairs of a split as a JSONL task file."""
    from dfa.core.tasks import get_task, make_dataset
    from dfa.core.tasks.files import export_rows, write_jsonl

    if not args.out:
        raise DfaError("--export writes a JSONL task file: give --out FILE.jsonl.")
    if not str(args.out).endswith(".jsonl"):
        raise DfaError(f"--out {args.out}: a task file written by --export ends in .jsonl.")
    data = make_dataset(
        args.export, tokenizer, args.n, args.split, args.data_seed, families, allow_fewer=True
    )
    path = write_jsonl(args.out, export_rows(get_task(args.export), data.examples, tokenizer))
    print(
        f"wrote {path}: {len(data)} {args.split} pairs of {args.export} for the tokenizer of {source} "
        f"(data seed {args.data_seed}); read it back with --task {path}"
    )
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
        print(json.dumps([{**c, "n_nodes": _graph_nodes(c)} for c in cards], indent=2))
    else:
        _print_cards(cards, root)
        if missing:
            print(f"\nnot built in {root}: {', '.join(missing)}")
    return 0


def _graph_nodes(card: dict) -> int:
    """A toy model's nodes as `dfa models` counts them: input + heads + MLPs (a card's own
    `n_nodes`, written by `dfa zoo build`, leaves the input out)."""
    return 1 + card["n_layers"] * (card["n_heads"] + 1)


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
            f"{_graph_nodes(c):>6}{human_count(c['n_params']):>8}{c['steps']:>7}{c['seed']:>5}"
            f"{c['train_seconds']:>7.0f}s  {'pass' if c['test']['passes'] else 'FAIL'}"
        )
    print("nodes = input + heads + MLPs, as `dfa models` counts them")
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
    _print_roles(cards)


def _print_roles(cards: list[dict]) -> None:
    """The cards' role censuses: per role, the best head and its score, and the heads above the
    threshold (cards built before the census have none)."""
    from dfa.core.roles import ROLES
    from dfa.zoo.card import ROLE_THRESHOLD

    threshold = next((c["roles"]["threshold"] for c in cards if "roles" in c), ROLE_THRESHOLD)
    print(f"\nrole census: best head, its score, heads above {threshold} (chance: docs/experiments/sweeps.md, Head roles)")
    print(f"  {'role':<16}" + "".join(f"{c['name']:>22}" for c in cards))
    for role in ROLES:
        cells = []
        for c in cards:
            r = c.get("roles", {}).get(role)
            cells.append("n/a" if r is None else f"{r['head']} {r['best']:.2f} {r['above']:>2}")
        print(f"  {role:<16}" + "".join(f"{cell:>22}" for cell in cells))


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model ladders and the model-name forms")
    p.add_argument("--json", action="store_true", help="machine-readable list")
    p.set_defaults(func=cmd_models)

    add_real_parsers(sub)

    p = sub.add_parser("nodes", help="load a model and print its node graph")
    model_args(p)
    p.add_argument("--tokenizer", default=None, help="tokenizer folder, ladder name or hub id")
    p.add_argument("--all", action="store_true", help="list every node with its hook")
    p.add_argument("--check", action="store_true", help="run a forward pass through every node hook")
    p.add_argument("--prompt", default="When Mary and John went to the store, John gave a drink to")
    p.set_defaults(func=cmd_nodes)

    p = sub.add_parser("tasks", help="per-task usable pair counts and an example, for a tokenizer")
    p.add_argument(
        "--model", default=None, help="use this model's tokenizer (default gpt2); the model is not loaded"
    )
    p.add_argument("--tokenizer", default=None, help="a tokenizer folder, ladder name or hub id")
    p.add_argument(
        "--task",
        action="append",
        help="only this task (repeatable): a built-in name or a task file, [NAME=]PATH[#OPTION] "
        "(.jsonl/.csv pairs, an EAP-IG CSV with #TOKENIZER, an MIB-style .parquet or dataset folder "
        "with #COUNTERFACTUAL_COLUMN); a file's rows dropped for this tokenizer are listed by reason",
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="every built-in task: the eight, then the extended suite written for real tokenizers",
    )
    p.add_argument("--families", default=None, help="comma-separated variation families (default: all)")
    p.add_argument("--draws", type=positive_int, default=4000, help="candidates drawn per task (default: 4000)")
    p.add_argument("--data-seed", type=int, default=0, help="the tasks' split seed")
    p.add_argument(
        "--export",
        default=None,
        metavar="TASK",
        help="write TASK's pairs (--split, --n) to --out as a JSONL task file",
    )
    output_flag(
        p, "--out", kind="file", suffixes=(".jsonl",), default=None, help="the .jsonl file --export writes"
    )
    p.add_argument(
        "--split", default="test", choices=["train", "val", "test"], help="--export's split (default: test)"
    )
    p.add_argument("--n", type=int, default=100, help="--export's pairs (at most; default: 100)")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("zoo", help="the toy ladders: build them, try a recipe, or print their cards")
    zoo = p.add_subparsers(dest="zoo_command", required=True)
    q = zoo.add_parser("build", help="train a toy ladder on the tasks' train splits and save it")
    q.add_argument("--family", action="append", help="toy-gpt2 or toy-neox (repeatable; default: both)")
    q.add_argument("--seed", type=int, default=0, help="training seed (the shipped ladders use 0)")
    output_flag(
        q, "--out", kind="folder", default=None, help="folder to write the models to (default: the zoo root)"
    )
    q.add_argument("--steps", type=int, default=None, help="override the training steps (quick trials)")
    q.set_defaults(func=cmd_zoo_build)
    q = zoo.add_parser("info", help="print the toy models' cards: sizes and test-split quality")
    q.add_argument("--dir", default=None, help="zoo folder (default: $DFA_ZOO or the shipped ladders)")
    q.add_argument(
        "--json",
        action="store_true",
        help="the cards as JSON (n_nodes: input + heads + MLPs, as `dfa models`)",
    )
    q.set_defaults(func=cmd_zoo_info)
    try:
        from dfa.cli.zoo_trial import add_trial_parser
    except ImportError:  # written alongside; absent in a partial checkout
        return
    add_trial_parser(zoo)
