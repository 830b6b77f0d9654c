"""`dfa zoo trial`: train one toy model with a changed recipe and print its scores (nothing is saved)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dfa.cli.flags import output_flag
from dfa.core.errors import DfaError
from dfa.zoo.spec import TASK_PAIRS, TOY_SPECS, TRAIN_PAIRS

_DESCRIPTION = """\
Train one toy model with a changed recipe and score it on the val split (nothing is saved),
to try a recipe before a ladder build. The recipe's defaults are the shipped build's. The
training's val checks (which boost tasks and stop training) read the first pairs of the same
split, so a trial's val score leans optimistic; a build's test scores are the honest measure.

    dfa zoo trial toy-gpt2-l --steps 5000 --batch 16 --lr 2e-3 \\
        --weight ioi=3.5 --weight mcqa=5 --text-groups atlas,glossary,ordinal --check-every 0
"""


def _pairs(items: list[str], cast, what: str) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            out[key] = cast(value)
        except ValueError:
            sep = ""
        if not sep:
            raise DfaError(f"--{what} takes NAME=VALUE, got {item!r}.")
    return out


def _recipe(args: argparse.Namespace):
    """The spec, training config and train pairs per task that the flags ask for."""
    from dfa.zoo.train import default_config
    from dfa.zoo.trial import with_changes

    changes = {
        "steps": args.steps,
        "lr": args.lr,
        "mixed": args.mixed,
        "n_layers": args.layers,
        "n_heads": args.heads,
        "d_model": args.d_model,
        "rotary_pct": args.rotary_pct,
    }
    spec = with_changes(TOY_SPECS[args.name], changes)
    config = with_changes(
        default_config(spec),
        {
            "batch_size": args.batch or None,
            "text_weight": args.text_weight,
            "answer_weight": args.answer_weight,
            "check_every": args.check_every,
            "boost": args.boost,
            "role_warmup": args.role_warmup,
        },
    )
    config.group_weights |= _pairs(args.weight, float, "weight")
    config.role_bars |= _pairs(args.role_bar, float, "role-bar")
    from dfa.zoo.text import ROLE_GROUPS

    unknown = sorted(set(config.role_bars) - set(ROLE_GROUPS))
    if unknown:
        raise DfaError(
            f"--role-bar: no text grows {', '.join(unknown)}; choose from {', '.join(ROLE_GROUPS)}."
        )
    if args.text_groups is not None:
        groups = [g for g in args.text_groups.split(",") if g]
        config.text_groups = None if groups == ["all"] else tuple(groups)
    pairs = TASK_PAIRS | _pairs(args.pairs, int, "pairs")
    return spec, config, pairs


def _print_trial(trial) -> None:
    from dfa.zoo.card import TEST_PAIRS

    spec, config, scores, log = trial.spec, trial.config, trial.scores, trial.log
    print(
        f"{spec.name}: {spec.n_layers} layers, d_model {spec.d_model}, {config.steps} steps of "
        f"{config.batch_size} at lr {config.lr:g}, mixed={config.mixed}, corrupt={trial.corrupt}; "
        f"trained in {trial.seconds:.0f} s; {trial.split} split, {TEST_PAIRS} pairs per task"
    )
    for task, s in scores.items():
        share = f"{s.corrupt_share:6.0%}" if s.clean > 0 else "   n/a"
        print(
            f"  {task:16s} accuracy {s.accuracy:.2f}  clean {s.clean:6.2f}  corrupt share {share}  "
            f"{'pass' if s.passes else 'FAIL'}"
        )
    print(f"passes {sum(s.passes for s in scores.values())} of {len(scores)} tasks")
    print("roles (best head, score, heads above the census threshold):")
    for role, r in trial.roles.items():
        print(f"  {role:16s} {r['head']:>7} {r['best']:.3f}  {r['above']}")
    for check in log.get("checks", []):
        low = {t: a for t, a in check["accuracy"].items() if t in check["boosted"]}
        roles = f"; roles {check['roles']}" if check.get("roles") else ""
        print(f"  val check at step {check['step']}: short of the bar {low or 'none'}{roles}")
    print(f"trained {log.get('steps')} of at most {config.steps} steps")


def cmd_zoo_trial(args: argparse.Namespace) -> int:
    from dfa.core.io import write_json
    from dfa.zoo.trial import run_trial

    try:
        spec, config, pairs = _recipe(args)
        trial = run_trial(spec, config, pairs, args.seed, args.corrupt, args.split)
    except DfaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _print_trial(trial)
    if args.json:
        write_json(args.json, trial.to_json())
    return 0


def add_trial_parser(zoo_subparsers: argparse._SubParsersAction) -> None:
    """Add `trial` to the subcommands of `dfa zoo`."""
    p = zoo_subparsers.add_parser(
        "trial",
        help="train one toy model with a changed recipe and score it (nothing is saved)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", choices=sorted(TOY_SPECS), help="the toy spec to train")
    p.add_argument("--steps", type=int, help="training steps (default: the spec's)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the spec's)")
    p.add_argument("--batch", type=int, help="rows per batch (default 32)")
    p.add_argument("--text-weight", type=float, help="weight of the next-token loss on every token")
    p.add_argument(
        "--text-groups",
        help="comma-separated groups trained on every token ('all', or '' for none; default: the build's)",
    )
    p.add_argument("--answer-weight", type=float, help="extra weight of the answer token's loss")
    p.add_argument("--mixed", action=argparse.BooleanOptionalAction, help="mixed-task batches")
    p.add_argument("--layers", type=int, help="change the spec's depth")
    p.add_argument("--heads", type=int, help="change the spec's heads per layer")
    p.add_argument("--d-model", type=int, help="change the spec's width")
    p.add_argument("--rotary-pct", type=float, help="NeoX: share of each head's dims under rotary")
    p.add_argument(
        "--weight", action="append", default=[], metavar="GROUP=W", help="a group's sampling weight"
    )
    p.add_argument(
        "--pairs",
        action="append",
        default=[],
        metavar="TASK=N",
        help=f"train pairs of a task (default {TRAIN_PAIRS}; more for {', '.join(TASK_PAIRS)})",
    )
    p.add_argument(
        "--corrupt",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train on the pairs' corrupt prompts too (default: yes, as the build does)",
    )
    p.add_argument("--check-every", type=int, help="steps between val checks (0: none)")
    p.add_argument("--boost", type=float, help="sampling boost of a task short of the bar on val")
    p.add_argument(
        "--role-bar",
        action="append",
        default=[],
        metavar="ROLE=X",
        help="check a head role at the val checks (induction, previous_token): boost its text while short",
    )
    p.add_argument("--role-warmup", type=int, help="first steps drawn from the role texts alone")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="val", choices=["val", "test"], help="scored on (tune on val)")
    output_flag(p, "--json", kind="file", type=Path, help="also write the scores here")
    p.set_defaults(func=cmd_zoo_trial)
