"""The flags every command that applies a trained map shares (`dfa evaluate`, `transfer`):
the run, the models it is applied to, the methods, the prompts, and the device."""

from __future__ import annotations

import argparse

from dfa.cli.flags import positive_int
from dfa.methods import METHODS


def map_eval_args(p: argparse.ArgumentParser, methods: list[str]) -> None:
    p.add_argument("--map", required=True, help="run folder (checkpoints/<src>__<tgt>/<run>)")
    p.add_argument(
        "--src",
        default=None,
        help="source model to apply the map to (default: the map's own; any model for a features map)",
    )
    p.add_argument(
        "--tgt",
        default=None,
        help="target model to apply the map to (default: the map's own; any model for a features map)",
    )
    p.add_argument(
        "--allow-other-models",
        action="store_true",
        help="apply a dense map to models other than its own whose node lists have the same shape",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=methods,
        choices=list(METHODS),
        help=f"compared (default: {' '.join(methods)})",
    )
    p.add_argument(
        "--split", default="test", choices=["train", "val", "test"], help="prompt split (default: test)"
    )
    p.add_argument("--n", type=positive_int, default=200, help="prompts per task (default: 200)")
    p.add_argument(
        "--boot",
        type=positive_int,
        default=1000,
        help="bootstrap resamples for the CPR interval (default: 1000)",
    )
    p.add_argument("--draws", type=positive_int, default=5, help="seeded draws per control (default: 5)")
    p.add_argument(
        "--val-n",
        type=positive_int,
        default=None,
        help="val prompts the val check (dfa-val) may read (default: the run's n_val; a task whose val "
        "split holds fewer is read whole, down to a floor of 10)",
    )
    p.add_argument(
        "--check-budget",
        type=check_budget,
        default=None,
        help="the val check's target rows, as a share of what gold costs on the task at the run's n_src "
        "(default: 0.2), or 'full': every candidate on every val prompt at every size",
    )
    device_args(p)


def check_budget(text: str) -> float | str:
    """`--check-budget`: a positive share, or `full`."""
    from dfa.experiments.val_check import parse_check_budget

    try:
        return parse_check_budget(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def device_args(p: argparse.ArgumentParser) -> None:
    """`--device` and `--dtype`: where the models of an evaluation run, at which precision."""
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (CUDA when visible)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
