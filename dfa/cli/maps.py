"""`dfa train`, `evaluate`, `transfer`, `loto`, `sweep` and `cross-scale`: alignment maps and what is
built on them."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from dfa.cli.flags import add_config_flags, config_values, output_flag, positive_int
from dfa.cli.map_flags import device_args, map_eval_args
from dfa.config import TrainConfig, build
from dfa.experiments.configs import CrossScaleConfig, LotoConfig, SweepConfig
from dfa.core.names import CIRCUIT_FRACTION
from dfa.core.tasks import TASKS
from dfa.methods import DEFAULT_METHODS, METHODS, PAIR_AGNOSTIC_METHODS


def _quiet_lightning() -> None:
    # Lightning's start-up chatter (accelerator lines, tips); our own lines say what matters.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    # "Received SIGTERM": `dfa train` says what the signal stopped and how to continue instead.
    logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector").setLevel(logging.WARNING)


def _pool(args: argparse.Namespace):
    from dfa.store import ModelPool

    return ModelPool(args.device or "auto", args.dtype or "float32")


def cmd_train(args: argparse.Namespace) -> int:
    from dfa.config import make_config
    from dfa.core.locks import run_lock
    from dfa.core.outputs import check_config_outputs

    _quiet_lightning()
    overrides = config_values(args, TrainConfig)
    if args.resume:
        overrides["max_epochs"] = None  # with --resume, --max-epochs extends the saved run
    config = make_config(args.config, **overrides)
    check_config_outputs(config, config.run_dir())  # the YAML's paths too, before any model loads
    from dfa.training.run import launch_rank  # Lightning: loaded once the settings are known good

    if config.added_holdouts:
        print(
            f"note: held-out task(s) {', '.join(config.added_holdouts)} not in --tasks: evaluated zero-shot"
        )
    follower = launch_rank(config) > 0  # a process Lightning started for a distributed run
    if follower:  # rank 0 holds the run folder
        return _train_run(args, config, follower)
    with run_lock(config.run_dir(), command(args)):  # one writer per run folder
        return _train_run(args, config, follower)


def _train_run(args: argparse.Namespace, config: TrainConfig, follower: bool) -> int:
    """`dfa train` once the run folder is this process's: train (or say it is trained) and report."""
    from dfa.training import train
    from dfa.training.run_folder import finished_run
    from dfa.training.stops import TrainingInterrupted

    done = None if args.overwrite or follower else finished_run(config, args.resume, args.max_epochs)
    if done is not None:
        _already_trained(config.run_dir(), done, args.resume)
        return 0
    start = time.perf_counter()
    try:
        run = train(config, resume=args.resume, overwrite=args.overwrite, max_epochs=args.max_epochs)
    except TrainingInterrupted as stop:
        print(f"\ndfa train: interrupted: {stop.state()}", file=sys.stderr)
        if stop.folder_kept:
            print(f"continue it: {command(args, add=['--resume'], drop=['--overwrite'])}", file=sys.stderr)
        else:
            print(f"start it again: {command(args)}", file=sys.stderr)
        return stop.exit_code
    if follower:
        return 0  # rank 0 writes and reports the run
    info = json.loads((run / "map.json").read_text())
    kept = info.get("kept", {})
    shown = f"kept epoch {kept.get('epoch')}"
    if "mean_val_cpr" in kept:
        start_cpr = info["val_history"][0]["mean"]
        shown += f": val/cpr {kept['mean_val_cpr']:.3f} (start {start_cpr:.3f})"
    pairs = ", ".join(f"{s} -> {t}" for s, t in info.get("pairs") or [(info["src"], info["tgt"])])
    print(
        f"trained {info.get('map_kind', 'dense')} map on {pairs} in {time.perf_counter() - start:.0f}s "
        f"({info['epochs']} epochs, {info['steps']} steps; {shown})"
    )
    print(f"run folder: {run}  (tensorboard --logdir {run / 'tensorboard'})")
    print(f"evaluate it: python scripts/evaluate.py --map {run}")
    return 0


def command(args: argparse.Namespace, add: Sequence[str] = (), drop: Sequence[str] = ()) -> str:
    """The command line that ran `args` (as typed: `python scripts/X.py ...` or `dfa ...`), less the
    flags in `drop`, plus those in `add` it lacks."""
    argv = list(getattr(args, "argv", None) or [args.command])
    words = [w for w in argv[1:] if w not in drop] + [f for f in add if f not in argv]
    script = Path(sys.argv[0])
    if script.name == f"{argv[0]}.py" and script.parent.name == "scripts":
        return shlex.join(["python", str(script), *words])
    return shlex.join(["dfa", argv[0], *words])


def _already_trained(run: Path, info: dict, resume: bool) -> None:
    """What a rerun of a finished run says instead of training it again (exit 0)."""
    planned = info["hyperparameters"]["max_epochs"]
    n = info["epochs"]
    done = f"{n} epoch{'s' if n != 1 else ''}, kept epoch {info.get('kept', {}).get('epoch')}"
    if resume:
        print(f"{run} is finished ({done}): nothing to resume, map.json left as it is")
        print(f"train it longer: --resume --max-epochs N, with N above {planned}")
    else:
        print(f"already trained: {run} holds this run with these settings ({done}); not retrained")
        print("retrain it: the same command with --overwrite")
    print(f"run folder: {run}  (tensorboard --logdir {run / 'tensorboard'})")
    print(f"evaluate it: python scripts/evaluate.py --map {run}")


def _map_folder(args: argparse.Namespace) -> None:
    """A `--map` that is no folder, said before torch and Lightning load (seconds)."""
    if not Path(args.map).is_dir():
        from dfa.core.errors import DfaError

        raise DfaError(
            f"No run folder {args.map}. Runs live in checkpoints/<src>__<tgt>/<run> (`dfa train` prints the path)."
        )


def _run(args: argparse.Namespace):
    from dfa.experiments.runs import Run

    run = Run(args.map, args.src, args.tgt, args.allow_other_models)
    run.check_n, run.check_budget = args.val_n, args.check_budget  # the val check's size
    return run


def cmd_evaluate(args: argparse.Namespace) -> int:
    _map_folder(args)
    from dfa.core.io import write_json
    from dfa.core.locks import run_lock
    from dfa.experiments.transfer import evaluate_run
    from dfa.report.summary import plot_report
    from dfa.report.tables import against_reference

    from dfa.cli.plots import read_report

    reference = read_report(args.reference) if args.reference else None  # a bad path fails first
    with run_lock(args.map, command(args), required=False):  # no train writes it meanwhile
        report, evals = evaluate_run(
            _run(args), _pool(args), args.tasks, args.methods, args.split, args.n, args.boot, True, args.draws,
            args.max_rows,
        )  # fmt: skip
    print(
        f"{report['src']} -> {report['tgt']} map {report['map']} on the {args.split} split; "
        f"CPR [95% CI] ({report['ablation']}, input node kept, {report['attribution']} source scores)"
    )
    if not report.get("pair_seen", True):
        trained = ", ".join(f"{s} -> {t}" for s, t in report["trained_pairs"])
        print(f"a pair the {report['map_kind']} map never trained on (trained on {trained})")
    from dfa.report.tables import evaluation_text

    print(evaluation_text(report, args.methods))
    if reference is not None:
        print(against_reference(report, reference))
    if args.json:
        print(f"wrote {write_json(args.json, report)}")
    if args.plot:  # a summary, and each task's curves beside it (`_curves.png`)
        print(f"wrote {', '.join(map(str, plot_report(report, args.plot)))}")
    return 0


TRANSFER_FILES = (".json", ".safetensors")


def cmd_transfer(args: argparse.Namespace) -> int:
    _map_folder(args)
    from dfa.core.locks import run_lock
    from dfa.core.outputs import check_output, keep_existing, shown_path
    from dfa.experiments.transfer import default_out, transfer

    methods = [m for m in args.methods if not (args.no_val_check and m == "dfa-val")]
    with run_lock(args.map, command(args), required=args.out is None):  # one writer per run folder
        run = _run(args)
        out = Path(args.out) if args.out else default_out(run, args.task)  # names other models
        check_output(out, "stem", "--out", TRANSFER_FILES)
        keep_existing(out, TRANSFER_FILES, args.overwrite)  # before any model loads
        predicted, paths, ev = transfer(
            run, _pool(args), args.task, out, not args.no_eval, methods, args.split, args.n,
            args.boot, args.draws, args.circuit_fraction, not args.no_val_check,
        )  # fmt: skip
    meta = predicted.meta
    print(f"{meta['src']} -> {meta['model']} predicted circuit for {args.task} ({meta['setting']}):")
    if meta["setting"] == "zero-shot":
        print(f"  map used: {meta['map_used']} (a task outside training)")
    if meta.get("val_check"):
        print(f"  val check: {meta['val_check']['why']}")
    circuit = meta["circuit"]
    print(
        f"  in_graph: {circuit['nodes']} of {len(predicted.names)} nodes (the top {circuit['k']} by the "
        f"map's logit, fraction {circuit['fraction']:g}, and input)"
    )
    print("  " + ", ".join(str(p) for p in paths))
    probs = predicted.as_dict()
    top = sorted(meta["logits"].items(), key=lambda kv: -kv[1])[: args.top]
    print(
        "  top nodes by logit z (mask = sigmoid(z)): "
        + ", ".join(f"{n} {z:.1f} ({probs[n]:.2f})" for n, z in top)
    )
    for f in meta.get("task_files", {}).values():
        print(f"  task file {shown_path(f['path'])} (sha256 {f['sha256'][:16]}...)")
    if ev is not None:
        report = meta["evaluation"]
        print(
            f"\nevaluated on {ev.n_prompts} {args.split} prompts ({ev.n_distinct} distinct); CPR [95% CI] "
            f"({report['ablation']}, input node kept, {report['attribution']} source scores)"
        )
        from dfa.report.tables import evaluation_text

        print(evaluation_text(report, list(ev.curves)))
        print(
            f'the evaluation is in {paths[0]} (its "dfa" -> "evaluation", as `dfa evaluate --json` writes it)'
        )
    return 0


def cmd_pair_agnostic(args: argparse.Namespace) -> int:
    from dfa.experiments.pair_agnostic import markdown, pair_agnostic, write_report

    start = time.perf_counter()
    report = pair_agnostic(
        args.features, args.dense, args.tasks, _pool(args), args.split, args.n, args.boot, args.draws,
        args.held_out, args.methods,
    )  # fmt: skip
    print(markdown(report))
    paths = write_report(report, Path(args.out))
    print(f"wrote {', '.join(map(str, paths))} ({time.perf_counter() - start:.0f}s)")
    return 0


def cmd_loto(args: argparse.Namespace) -> int:
    from dfa.core.outputs import check_config_outputs
    from dfa.experiments.loto import run_loto
    from dfa.report.tables import loto_table

    _quiet_lightning()
    cfg = build(LotoConfig, config_values(args, LotoConfig))
    check_config_outputs(cfg)
    rows = run_loto(cfg, _pool(args))
    print(loto_table(rows))
    return 0


def cmd_loto_ceiling(args: argparse.Namespace) -> int:
    from dfa.experiments.loto_ceiling import ceiling_table, run_ceiling

    rows = run_ceiling(
        args.pairs, args.tasks, _pool(args), args.lams, args.split, args.n, args.boot,
        Path(args.cache), Path(args.json),
    )  # fmt: skip
    print(ceiling_table(rows))
    print(f"wrote {args.json}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from dfa.core.outputs import check_config_outputs
    from dfa.experiments.sweep import run_sweep, write_sweep

    _quiet_lightning()
    cfg = build(SweepConfig, config_values(args, SweepConfig))
    check_config_outputs(cfg)
    start = time.perf_counter()
    result = run_sweep(cfg, _pool(args))
    text, files = write_sweep(result, Path(cfg.out))
    print(text)
    print(f"wrote {', '.join(map(str, files))} ({time.perf_counter() - start:.0f}s)")
    return 0


def cmd_cross_scale(args: argparse.Namespace) -> int:
    from dfa.core.outputs import check_config_outputs
    from dfa.experiments.cross_scale import run_cross_scale, write_cross_scale

    cfg = build(CrossScaleConfig, config_values(args, CrossScaleConfig))
    check_config_outputs(cfg)
    start = time.perf_counter()
    report = run_cross_scale(
        cfg.models, cfg.tasks, Path(cfg.cache), _pool(args), cfg.method, cfg.fraction, cfg.n, cfg.n_eval
    )
    print(write_cross_scale(report, Path(cfg.out)))
    print(f"wrote {cfg.out}/cross_scale.json, .md, .png ({time.perf_counter() - start:.0f}s)")
    return 0


def _add_pair_agnostic_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pair-agnostic",
        help="a features map on pairs, against each pair's own dense map, gold, depth and controls (paired)",
    )
    p.add_argument("--features", required=True, help="run folder of a features map (--map-kind features)")
    p.add_argument(
        "--dense",
        nargs="+",
        required=True,
        help="SRC:TGT=RUN: the pairs to evaluate on, each with a dense map trained on that pair",
    )
    p.add_argument("--tasks", nargs="+", required=True, help="tasks evaluated on every pair")
    p.add_argument(
        "--split", default="test", choices=["train", "val", "test"], help="prompt split (default: test)"
    )
    p.add_argument("--n", type=positive_int, default=100, help="prompts per task (default: 100)")
    p.add_argument("--boot", type=positive_int, default=500, help="bootstrap resamples (default: 500)")
    p.add_argument("--draws", type=positive_int, default=3, help="random maps and tie orders (default: 3)")
    p.add_argument(
        "--held-out",
        nargs="+",
        default=[],
        help="features maps trained with a task held out (--holdout): each evaluated on its held-out "
        "tasks on every pair (leave-one-task-out on top of leave-the-pair-out)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=list(PAIR_AGNOSTIC_METHODS),
        choices=[m for m in METHODS if m != "dfa"],
        help=f"compared with the features map beside the dense map (default: {' '.join(PAIR_AGNOSTIC_METHODS)})",
    )
    output_flag(
        p,
        "--out",
        kind="stem",
        suffixes=(".json", ".md"),
        default="results/pair_agnostic_toy",
        help="output stem: .json and .md (default: %(default)s)",
    )
    device_args(p)
    p.set_defaults(func=cmd_pair_agnostic)


def _add_ceiling_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "loto-ceiling",
        help="zero-shot reference: linear maps fitted to the target's gold circuits of the other tasks",
        description=(
            "Per pair and held-out task, a ridge map from the source scores to the TARGET's gold ranks "
            "on the other tasks (the residual from depth), applied to the held-out task: what a linear "
            "map learnt from those tasks could transfer at best, against depth (dfa.experiments.loto_ceiling)."
        ),
    )
    p.add_argument("--pairs", nargs="+", default=["toy-gpt2-s:toy-gpt2-l", "toy-neox-s:toy-neox-l"])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), help="each held out in turn (default: all)")
    p.add_argument("--lams", nargs="+", type=float, default=[0.1, 1.0, 10.0], help="ridge penalties")
    p.add_argument("--split", default="val", choices=["train", "val", "test"], help="(default: val)")
    p.add_argument("--n", type=positive_int, default=100, help="prompts per held-out task (default: 100)")
    p.add_argument("--boot", type=positive_int, default=200, help="bootstrap resamples (default: 200)")
    p.add_argument("--cache", default="checkpoints/cache", help="score cache (default: %(default)s)")
    output_flag(
        p, "--json", kind="file", default="results/loto_ceiling_val.json", help="results (default: %(default)s)"
    )
    device_args(p)
    p.set_defaults(func=cmd_loto_ceiling)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an alignment map from a source model to a target model")
    p.add_argument(
        "--config", default=None, help="YAML config (a path, or a shipped name: toy, default, ...)"
    )
    add_config_flags(p, TrainConfig)
    p.add_argument("--resume", action="store_true", help="continue the run folder's last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="a trained map's circuits against gold, depth and control baselines")
    map_eval_args(p, list(DEFAULT_METHODS))
    p.add_argument(
        "--tasks",
        nargs="+",
        action="extend",
        default=None,
        help="tasks (default: the run's tasks and hold-outs)",
    )
    output_flag(p, "--json", kind="file", default=None, help="write the report here")
    output_flag(
        p, "--plot", kind="file", suffixes=(".png",), default=None,
        help="write the summary here (PNG: CPR per task and method); each task's curves go beside it "
        "as NAME_curves.png",
    )
    p.add_argument(
        "--reference",
        default=None,
        help="a results JSON of an earlier evaluation (e.g. the committed results/main_toy.json): "
        "print how this run's CPRs differ from it",
    )
    p.add_argument(
        "--max-rows",
        type=int,
        default=None,
        help="prompt rows per stacked pass: the memory budget (default: the run's max_rows, else one pass)",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("transfer", help="reuse a trained map on a task: predicted circuit and its evaluation")
    map_eval_args(p, ["dfa", "dfa-val", "depth", "random", "permuted", "scrambled"])
    p.add_argument("--task", required=True, help="task name, seen in training or not")
    p.add_argument(
        "--no-val-check",
        action="store_true",
        help="on a task outside training, write the zero-shot map's circuit unchecked (default: the map "
        "the val check chose on the task's val prompts, or depth where nothing beats it)",
    )
    output_flag(
        p,
        "--out",
        kind="stem",
        suffixes=TRANSFER_FILES,
        default=None,
        help="output stem (default RUN/transfer/TASK, TASK__TGT on another target; a task file: its label "
        "and sha256): .json and .safetensors",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier result at the output stem")
    p.add_argument("--no-eval", action="store_true", help="write the circuit only")
    p.add_argument("--top", type=positive_int, default=10, help="print this many top nodes")
    p.add_argument(
        "--circuit-fraction",
        type=float,
        default=CIRCUIT_FRACTION,
        help=f"share of the ranked nodes the JSON marks in_graph (default: {CIRCUIT_FRACTION})",
    )
    p.set_defaults(func=cmd_transfer)

    _add_pair_agnostic_parser(sub)
    _add_ceiling_parser(sub)

    for name, cls, fn, text in (
        ("loto", LotoConfig, cmd_loto, "leave-one-task-out maps per pair, evaluated zero-shot (resumable)"),
        ("sweep", SweepConfig, cmd_sweep, "every pair of a ladder: maps, baselines, tables (resumable)"),
        ("cross-scale", CrossScaleConfig, cmd_cross_scale, "circuits of a ladder aligned by roles, overlaps"),
    ):
        p = sub.add_parser(name, help=text, description=(cls.__doc__ or "").strip())
        add_config_flags(p, cls)
        p.set_defaults(func=fn)
