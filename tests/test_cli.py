"""The `dfa` command line: `dfa --help` and the flags generated from the configs, argument and
library errors (specific, no traceback), and the commands end to end on the shipped toy models."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from dfa.cli import build_parser, main
from dfa.cli.flags import config_values
from dfa.config import TrainConfig
from dfa.experiments.configs import SweepConfig
from dfa.core.errors import DfaError
from dfa.core.ladders import LADDERS
from dfa.core.scores import NodeScores
from dfa.core.tasks import TASKS
from dfa.methods import METHODS
from dfa.zoo.spec import TOY_SPECS
from tests.conftest import ROOT, require_tokenizer, run_script


def _subparser(name: str):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices[name]


def _usage_error(argv: list[str], capsys) -> str:
    """What argparse prints when it refuses `argv` (it exits with status 2)."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


# --- parsing and help -----------------------------------------------------------------------------
def test_help_lists_every_subcommand():
    parser = build_parser()
    text = parser.format_help()
    wanted = "models nodes tasks zoo attribute evaluate-circuit circuits-table bench train evaluate transfer loto sweep cross-scale"
    assert [c for c in wanted.split() if f"    {c} " not in text and f"    {c}\n" not in text] == []


def test_train_flags_cover_every_config_field():
    dests = {a.dest for a in _subparser("train")._actions}
    assert {f.name for f in fields(TrainConfig)} <= dests


def test_subcommand_help_lists_the_generated_flags(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # no flag's help wrapped, whatever the terminal

    def help_of(command: str) -> str:
        return " ".join(_subparser(command).format_help().split())

    text = help_of("cross-scale")
    assert "circuit found independently, aligned by roles" in text  # CrossScaleConfig's docstring
    assert "--n-eval N_EVAL test prompts for each circuit's faithfulness (default: 50)" in text
    sweep = help_of("sweep")
    assert "--no-reverse" in sweep and "--no-heatmap" in sweep  # booleans that default to on
    assert "--ladder LADDER toy-gpt2, toy-neox, gpt2 or pythia --tasks" in sweep  # required: no default
    train = help_of("train")
    assert (
        "--loss {kl,kl_share,logit_diff}" in train
        and "--val-fractions VAL_FRACTIONS [VAL_FRACTIONS ...]" in train
    )
    evaluate = help_of("evaluate")
    assert "--methods {" + ",".join(METHODS) + "}" in evaluate  # the whole registry, in its order


def test_flags_not_given_stay_unset_so_the_config_defaults_hold():
    args = build_parser().parse_args(["train", "--lr", "0.1", "--holdout", "sva", "gender"])
    given = {k: v for k, v in config_values(args, TrainConfig).items() if v is not None}
    assert given == {"lr": 0.1, "holdout": ["sva", "gender"]}
    args = build_parser().parse_args(["sweep", "--ladder", "toy-gpt2", "--no-reverse"])
    assert config_values(args, SweepConfig)["reverse"] is False
    assert config_values(args, SweepConfig)["heatmap"] is None


@pytest.mark.parametrize("command", ["train", "loto"])
def test_list_flags_take_several_values_or_repeat(command):
    """`--holdout a b` works as `--tasks a b` does, and `--holdout a --holdout b` adds up."""
    parse = build_parser().parse_args
    for flag in ("--tasks", "--holdout") if command == "train" else ("--tasks",):
        assert getattr(parse([command, flag, "sva", "gender"]), flag[2:]) == ["sva", "gender"]
        assert getattr(parse([command, flag, "sva", flag, "gender", "ioi"]), flag[2:]) == [
            "sva",
            "gender",
            "ioi",
        ]
    args = parse(["evaluate", "--map", "m", "--tasks", "sva", "--tasks", "ioi"])
    assert args.tasks == ["sva", "ioi"]


def test_train_says_when_a_holdout_is_not_among_the_tasks(monkeypatch, tmp_path, capsys):
    import dfa.training

    def stop(config, **kw):
        raise DfaError(f"stopped before training {config.train_tasks} / {config.holdout}")

    monkeypatch.setattr(dfa.training, "train", stop)
    argv = ["train", "--tasks", "sva", "gender", "--holdout", "capitals", "--out", str(tmp_path)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "note: held-out task(s) capitals not in --tasks: evaluated zero-shot" in captured.out
    assert "stopped before training ['sva', 'gender'] / ['capitals']" in captured.err
    assert main([*argv[:-4], "--holdout", "gender", "--out", str(tmp_path)]) == 2
    assert "note:" not in capsys.readouterr().out  # a hold-out among the tasks: nothing to say


def test_evaluate_refuses_an_unknown_method_by_name(capsys):
    err = _usage_error(["evaluate", "--map", "nowhere", "--methods", "dfa", "bogus"], capsys)
    assert "argument --methods: invalid choice: 'bogus'" in err


def test_loto_refuses_an_unknown_method_by_name(tmp_path, capsys):
    argv = ["loto", "--pairs", "toy-gpt2-s:toy-gpt2-m", "--methods", "dfa", "bogus"]
    assert main([*argv, "--json", str(tmp_path / "loto.json"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dfa loto: error: Unknown method(s) bogus; choose from dfa, dfa-val, gold")
    assert "Traceback" not in err and not (tmp_path / "loto.json").exists()


def test_a_bad_choice_or_type_is_a_usage_error(capsys):
    assert "argument --loss: invalid choice: 'l2'" in _usage_error(["train", "--loss", "l2"], capsys)
    assert "argument --lr: invalid float value: 'fast'" in _usage_error(["train", "--lr", "fast"], capsys)
    assert "the following arguments are required: --ladder" in _usage_error(["sweep"], capsys)


# --- library errors, reported without a traceback ------------------------------------------------
def test_cli_reports_errors_without_a_traceback(capsys):
    assert main(["nodes", "--model", "gpt3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dfa nodes: error: Unknown model 'gpt3'")
    assert "Traceback" not in err


# --- dfa attribute and evaluate-circuit -----------------------------------------------------------
def _attribute(out: Path, task: str = "sva", *more: str) -> int:
    return main(["attribute", "--model", "toy-gpt2-s", "--task", task, *more, "--out", str(out)])


def _evaluate_circuit(model: str, scores: Path, *more: str) -> int:
    return main(["evaluate-circuit", "--model", model, "--task", "sva", "--scores", str(scores), *more])


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "sva.json"
    assert _attribute(out, "sva", "--method", "eap", "--n", "8") == 0
    return out


def test_attribute_writes_scores_with_their_metadata(scored, capsys):
    s = NodeScores.load(scored)
    assert len(s.names) == TOY_SPECS["toy-gpt2-s"].n_nodes + 1 and s.names[0] == "input"
    meta = s.meta
    assert (meta["model"], meta["task"], meta["method"], meta["split"], meta["n_prompts"]) == (
        "toy-gpt2-s",
        "sva",
        "eap",
        "train",
        8,
    )
    spec = TOY_SPECS["toy-gpt2-s"]
    assert (meta["cfg"]["n_layers"], meta["cfg"]["n_heads"]) == (spec.n_layers, spec.n_heads)
    assert meta["ig_steps"] is None and "positive supports the clean answer" in meta["sign"]


def test_attribute_max_rows_changes_memory_not_scores(tmp_path, capsys):
    one, many = tmp_path / "one.safetensors", tmp_path / "many.safetensors"
    assert _attribute(one, "sva", "--n", "8", "--batch-size", "4") == 0  # one IG step per pass
    assert _attribute(many, "sva", "--n", "8", "--batch-size", "4", "--max-rows", "20") == 0  # all 5
    torch.testing.assert_close(NodeScores.load(one).scores, NodeScores.load(many).scores)
    assert _attribute(tmp_path / "bad.json", "sva", "--n", "8", "--max-rows", "0") == 2
    assert "dfa attribute: error: `--max-rows` must be a positive number" in capsys.readouterr().err


def test_evaluate_circuit_prints_and_writes_the_report(scored, tmp_path, capsys):
    report, plot = tmp_path / "r.json", tmp_path / "r.png"
    more = ["--n", "12", "--random", "2", "--boot", "50", "--json", str(report), "--plot", str(plot)]
    assert _evaluate_circuit("toy-gpt2-s", scored, *more) == 0
    out = capsys.readouterr().out
    assert "input node kept" in out and "random" in out and "per family CPR" in out
    data = json.loads(report.read_text())
    assert data["input_node"] == "kept" and data["n_prompts"] == 12
    assert (
        1 <= data["n_distinct_prompts"] <= 12
        and f"{data['n_distinct_prompts']} distinct clean prompts" in out
    )
    eap, rnd = data["curves"]["eap"], data["curves"]["random"]
    assert [f for f, _ in eap["curve"]] == [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    assert eap["curve"][-1][1] == 1.0 and rnd["n_draws"] == 2
    assert eap["cpr_ci"][0] <= eap["cpr"] <= eap["cpr_ci"][1]
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_evaluate_circuit_says_which_nodes_are_unscored_and_ranks_random_over_the_rest(
    scored, tmp_path, capsys
):
    data = json.loads(scored.read_text())
    names = [n for n in data["nodes"] if n != "input"][:3]
    data["nodes"][names[0]]["score"] = None  # NaN, as importances files write it
    del data["nodes"][names[1]], data["nodes"][names[2]]  # missing
    partial, report = tmp_path / "partial.json", tmp_path / "r.json"
    partial.write_text(json.dumps(data))
    more = ["--n", "6", "--random", "2", "--boot", "10", "--json", str(report)]
    assert _evaluate_circuit("toy-gpt2-s", partial, *more) == 0
    out = capsys.readouterr().out
    n_nodes = TOY_SPECS["toy-gpt2-s"].n_nodes + 1
    assert (
        f"note: eap leaves 3 of {n_nodes} nodes unscored (NaN or missing: {', '.join(names)}); "
        "they are kept in every circuit"
    ) in out
    assert "note: the random baseline keeps the same 3 unscored nodes and ranks the rest" in out
    r = json.loads(report.read_text())
    assert r["unscored"] == {"eap": names}
    eap, rnd = r["curves"]["eap"], r["curves"]["random"]
    assert rnd["n_ranked"] == eap["n_ranked"] == n_nodes - 1 - 3 and rnd["ks"] == eap["ks"]


def test_more_prompts_than_a_split_holds_is_an_error(scored, capsys):
    argv = ["evaluate-circuit", "--model", "toy-gpt2-s", "--task", "capitals", "--scores", str(scored)]
    assert main([*argv, "--n", "600"]) == 2
    err = capsys.readouterr().err
    held = re.search(r"Task 'capitals': its test split holds (\d+) usable prompts for '.+' \(seed 0\)", err)
    assert held and 0 < int(held[1]) < 600, err
    assert f"fewer than the 600 asked for. Ask for at most {held[1]}." in err


def test_cli_errors_are_specific(scored, tmp_path, capsys):
    assert _attribute(tmp_path / "s.pt") == 2
    assert "--out must end in .json (importances) or .safetensors, not 's.pt'" in capsys.readouterr().err
    missing = tmp_path / "no.json"
    assert _evaluate_circuit("toy-gpt2-s", missing) == 2
    err = capsys.readouterr().err
    assert f"No scores file at {missing}. Make one with `dfa attribute ... --out {missing}`." in err
    assert _evaluate_circuit("toy-neox-m", scored, "--n", "4") == 2
    err = capsys.readouterr().err
    a, b = TOY_SPECS["toy-gpt2-s"], TOY_SPECS["toy-neox-m"]
    assert (
        f"are for a model of {a.n_layers} layers x {a.n_heads} heads (toy-gpt2-s); "
        f"this model has {b.n_layers} layers x {b.n_heads} heads"
    ) in err
    assert _attribute(tmp_path / "s.json", "nope") == 2
    assert "Unknown task 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "s.json").exists()


# --- dfa models and dfa tasks ---------------------------------------------------------------------
def test_dfa_models_prints_both_ladders(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in LADDERS:
        assert f"  {name} " in out
    assert "gpt2-large                 36     20   20     1280    757    774.0M" in out
    assert "qwen2.5-0.5b               24     14    2      896    361    494.0M" in out
    assert "pythia-160m@step3000" in out and ":random" in out


def test_dfa_models_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["gpt2"]["n_nodes"] == 157 and rows["gpt2"]["checkpoints"] == []
    assert rows["pythia-160m"]["checkpoints"][-1] == "step143000"
    modern = {n: r for n, r in rows.items() if r["family"] in ("llama3", "qwen2.5", "gemma3", "smollm2")}
    assert len(modern) == 12
    for r in modern.values():  # nodes follow from the config: input + query heads + MLPs
        assert r["n_nodes"] == 1 + r["n_layers"] * (r["n_heads"] + 1)
    assert (rows["llama-3.2-1b"]["n_kv_heads"], rows["llama-3.2-1b"]["n_nodes"]) == (8, 529)
    assert (rows["gemma-3-270m"]["n_heads"], rows["gemma-3-270m"]["n_kv_heads"]) == (4, 1)


def test_dfa_models_and_zoo_info_count_the_nodes_alike(capsys):
    """One convention (input + heads + MLPs, as a model's NodeGraph holds them) in both tables
    and both JSON outputs."""
    from dfa.core.graph import NodeGraph

    def nodes_column(argv: list[str], col: int) -> dict[str, int]:
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "nodes = input + heads + MLPs" in out
        return {
            ln.split()[0]: int(ln.split()[col])
            for ln in out.splitlines()
            if ln.split()[:1] in ([n] for n in TOY_SPECS)
        }

    want = {n: len(NodeGraph(s.n_layers, s.n_heads)) for n, s in TOY_SPECS.items()}
    assert want["toy-gpt2-s"] == 28
    assert nodes_column(["models"], 5) == want
    assert nodes_column(["zoo", "info"], 5) == want
    for argv in (["models", "--json"], ["zoo", "info", "--json"]):
        assert main(argv) == 0
        rows = {r["name"]: r["n_nodes"] for r in json.loads(capsys.readouterr().out)}
        assert {n: rows[n] for n in TOY_SPECS} == want


def test_dfa_tasks_prints_the_table(capsys, real_tokenizers):
    assert main(["tasks", "--model", "gpt2", "--draws", "300"]) == 0
    out = capsys.readouterr().out
    for name in TASKS:
        assert f"\n  {name} " in out and f"\n  {name} [" in out
    assert "first 300 candidates" in out


# --- train, evaluate and transfer through scripts/ (thin wrappers of the commands) ---------------
def test_train_evaluate_transfer_scripts(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "src: toy-gpt2-s\ntgt: toy-gpt2-m\ntasks: [sva, gender]\nholdout: [gender]\nn_src: 12\n"
        f"n_train: 20\nn_val: 10\nbatch_size: 10\nig_steps: 2\ncache: {tmp_path / 'cache'}\n"
    )
    out = tmp_path / "ck"
    r = run_script("train.py", "--config", str(cfg), "--max-epochs", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    run = out / "toy-gpt2-s__toy-gpt2-m" / "holdout-gender-s0"
    assert f"run folder: {run}" in r.stdout
    # piped (not a terminal): one line per step of the run, no progress bar redrawn with \r
    assert "start (before training): val/loss " in r.stdout
    assert re.search(r"epoch 1/1: 2 steps, train/loss \d+\.\d+ \(epoch mean\), val/loss ", r.stdout), r.stdout
    assert "\r" not in r.stdout + r.stderr
    names = {p.name for p in run.iterdir()}
    assert {"map.safetensors", "map.json", "config.yaml", "last.ckpt", "tensorboard"} <= names
    info = json.loads((run / "map.json").read_text())
    assert (
        info["tasks"] == ["sva"]
        and info["holdout"] == ["gender"]
        and "val/cpr_zero_shot" in info["final_metrics"]
    )
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard events"

    report = tmp_path / "eval.json"
    r = run_script(
        "evaluate.py",
        "--map",
        str(run),
        "--n",
        "10",
        "--boot",
        "20",
        "--json",
        str(report),
        "--plot",
        str(tmp_path / "eval.png"),
    )
    assert r.returncode == 0, r.stderr
    assert f"wrote {tmp_path / 'eval.png'}, {tmp_path / 'eval_curves.png'}" in r.stdout  # summary, curves
    assert (tmp_path / "eval_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "zero-shot" in r.stdout and "in-distribution" in r.stdout
    assert "evaluated sva (1/2): 7 methods on 10 test prompts" in r.stdout
    assert "evaluated gender (2/2)" in r.stdout and "\r" not in r.stdout + r.stderr
    # the table says how many pairs and distinct clean prompts stand behind each row
    assert re.search(r"sva +in-distribution +10/\d+ ", r.stdout), r.stdout
    assert re.search(r"gender +zero-shot +10/\d+ ", r.stdout), r.stdout
    data = json.loads(report.read_text())
    assert {"src", "tgt", "map", "split", "input_node", "results"} <= set(data)
    row = data["results"][0]
    assert {"task", "setting", "method", "cpr", "cpr_ci", "cmd", "cpr_log", "curve", "n_prompts"} <= set(row)
    methods = {(r["task"], r["method"]) for r in data["results"]}
    assert methods == {
        (t, m)
        for t in ("sva", "gender")
        for m in ("dfa", "dfa-val", "gold", "depth", "random", "permuted", "scrambled")
    }
    # gender is held out: the val check's record and its reading; on sva (trained) dfa-val is dfa
    rows = {(x["task"], x["method"]): x for x in data["results"]}
    assert rows[("gender", "dfa-val")]["val_check"]["split"] == "val" and "val check, gender: on " in r.stdout
    assert rows[("sva", "dfa-val")]["cpr"] == rows[("sva", "dfa")]["cpr"]
    assert (tmp_path / "eval.png").read_bytes()[:4] == b"\x89PNG"
    # a memory budget (3 prompt rows per stacked pass) changes how the passes run, not the curves
    small = tmp_path / "eval_small.json"
    args = ("--map", str(run), "--n", "10", "--boot", "20", "--tasks", "sva", "--methods", "dfa", "depth")
    r = run_script("evaluate.py", *args, "--max-rows", "3", "--json", str(small))
    assert r.returncode == 0, r.stderr
    budget = {x["method"]: x["cpr"] for x in json.loads(small.read_text())["results"]}
    whole = {x["method"]: x["cpr"] for x in data["results"] if x["task"] == "sva"}
    assert budget["dfa"] == pytest.approx(whole["dfa"], abs=1e-5)
    assert budget["depth"] == pytest.approx(whole["depth"], abs=1e-5)

    r = run_script(
        "transfer.py",
        *("--map", str(run), "--task", "capitals", "--n", "10", "--boot", "20"),
        *("--methods", "dfa", "random", "role", "role-assign", "--draws", "2", "--circuit-fraction", "0.25"),
    )
    assert r.returncode == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if line.split()[:2] == ["task", "setting"])
    # the written circuit (the val check's, capitals being held out) is evaluated with the rest
    assert header.split()[3:] == ["dfa-val", "dfa", "random", "role", "role-assign"], r.stdout
    assert (tmp_path / "cache" / "roles").is_dir()  # role scores cached beside the node scores
    from dfa.core.scores import NodeScores

    saved = NodeScores.load(run / "transfer" / "capitals.json")
    assert saved.meta["setting"] == "zero-shot" and saved.names[0] == "input"
    assert len(saved.names) == TOY_SPECS["toy-gpt2-m"].n_nodes + 1
    # in_graph marks the circuit of the stated size (the top int(0.25 N) of N ranked, and input)
    nodes = json.loads((run / "transfer" / "capitals.json").read_text())["nodes"]
    marked = [n for n, v in nodes.items() if v["in_graph"]]
    k = int(0.25 * TOY_SPECS["toy-gpt2-m"].n_nodes)
    assert saved.meta["circuit"]["fraction"] == 0.25 and saved.meta["circuit"]["k"] == k
    assert "input" in marked and len(marked) == k + 1 < len(nodes)
    top = sorted((n for n in nodes if n != "input"), key=lambda n: -nodes[n]["score"])[:k]
    assert set(marked) == {"input", *top}
    assert f"in_graph: {k + 1} of {len(nodes)} nodes" in r.stdout
    # the evaluation is in the JSON as `dfa evaluate --json` writes it, paired intervals included
    ev = json.loads((run / "transfer" / "capitals.json").read_text())["dfa"]["evaluation"]
    assert ev["split"] == "test" and ev["src"] == "toy-gpt2-s" and ev["tgt"] == "toy-gpt2-m"
    rows = {x["method"]: x for x in ev["results"]}
    assert set(rows) == {"dfa-val", "dfa", "random", "role", "role-assign"}
    assert rows["dfa"]["setting"] == "zero-shot" and rows["dfa"]["n_prompts"] == 10
    assert set(rows["dfa"]["paired"]) == {"dfa-val", "random", "role", "role-assign"}
    assert saved.meta["map_used"] == f"val check: {rows['dfa-val']['val_check']['chosen']}"
    assert f"{rows['dfa']['cpr']:.3f} [" in r.stdout and "paired: CPR(dfa) - CPR(method)" in r.stdout
    # the top nodes are ranked by the map's logit and print it (the probabilities saturate)
    logits = saved.meta["logits"]
    best = max(logits, key=logits.get)
    assert f"top nodes by logit z (mask = sigmoid(z)): {best} {logits[best]:.1f} (" in r.stdout
    again = run_script("transfer.py", "--map", str(run), "--task", "capitals", "--no-eval")
    assert again.returncode == 2 and "capitals.json holds an earlier result, kept: pass --overwrite" in again.stderr
    bad = run_script(
        "transfer.py", "--map", str(run), "--task", "capitals", "--circuit-fraction", "1.5", "--overwrite"
    )
    assert bad.returncode == 2 and "circuit fraction must be in (0, 1]" in bad.stderr

    # The same command again (the front door pasted twice): the finished run is left as it is.
    record = (run / "map.json").read_bytes()
    r = run_script("train.py", "--config", str(cfg), "--max-epochs", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"already trained: {run} holds this run with these settings" in r.stdout
    assert "--overwrite" in r.stdout and f"run folder: {run}" in r.stdout
    assert main(["train", "--config", str(cfg), "--out", str(out), "--resume"]) == 0
    assert f"{run} is finished (1 epoch, kept epoch" in capsys.readouterr().out
    assert (run / "map.json").read_bytes() == record
    r = run_script("train.py", "--config", str(cfg), "--out", str(out))  # other settings: refused
    assert r.returncode == 2 and "already holds a run" in r.stderr and "Traceback" not in r.stderr
    r = run_script("evaluate.py", "--map", str(run), "--tgt", "toy-neox-m")  # same node-list shape
    assert (
        r.returncode == 2 and "trained on toy-gpt2-s -> toy-gpt2-m" in r.stderr and "toy-neox-m" in r.stderr
    )
    assert "pass `--allow-other-models` to apply it anyway" in r.stderr
    r = run_script("evaluate.py", "--map", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "No run folder" in r.stderr


def test_bench_reports_both_benchmarks_on_a_toy_model():
    from dfa.experiments.bench import run, run_training

    attribution = run("toy-gpt2-s", "ioi", batch_size=2, ig_steps=1, repeats=1, device="cpu")
    assert attribution["model"] == "toy-gpt2-s" and attribution["batch"] == 2
    step = run_training("toy-gpt2-s", n_src=9, task="ioi", batch_size=2, repeats=1, device="cpu")
    # The curve step runs one row per prompt and circuit size; the reference runs as many rows.
    assert step["objective"] == "curve" and step["stacked_rows"] == 2 * len(step["circuit_sizes"])
    assert step["circuit_sizes"] == [1, 2, 5, 13]  # of 27 mapped nodes at 0.05, 0.1, 0.2, 0.5
    assert step["training_step_seconds"] > 0 and step["ratio"] > 0


BENCH_SPEC = {"model": "toy-gpt2-s", "task": "ioi", "batch": 4, "ig_steps": 5, "device": "cpu"}


def test_bench_memory_measures_each_run_against_a_plain_pass(monkeypatch, capsys):
    """`dfa bench --memory`: a run measured in a fresh process (one here; the ratios then from
    stand-in peaks), and a bad budget refused."""
    from dfa.experiments import bench_memory

    spec = BENCH_SPEC
    one = bench_memory.measure_fresh({**spec, "dtype": "float32", "max_rows": None, "phase": "attribution"})
    assert one["bytes"] > 0 and one["vocab"] == 1966 and one["device"] == "cpu"
    fake = {"plain": 100, "attribution": 130, "curve": 40}
    monkeypatch.setattr(bench_memory, "measure_fresh", lambda s: {**one, "bytes": fake[s["phase"]] * 2**20})
    assert main(["bench", "--memory", "toy-gpt2-s", "--batch-size", "4", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["attribution_peak_memory_ratio"], out["curve_peak_memory_ratio"]) == (1.3, 0.4)
    assert out["plain_forward_backward_mib"] == 100 and out["target_ratio"] == 1.5
    monkeypatch.undo()
    with pytest.raises(DfaError, match="The curve memory run failed: DfaError: The `max_rows` setting"):
        bench_memory.measure_fresh({**spec, "dtype": "float32", "max_rows": 0, "phase": "curve"})


def test_bench_memory_passes_its_tokenizer_to_each_run(monkeypatch, capsys, real_tokenizers):
    """--tokenizer reaches every run's load_model (here GPT-2's 50k tokenizer, which the 1966-row
    toy refuses)."""
    from dfa.experiments import bench_memory

    one = {"bytes": 2**20, "positions": 12, "vocab": 1966, "nodes": 28, "device": "cpu"}
    specs = []
    monkeypatch.setattr(bench_memory, "measure_fresh", lambda s: specs.append(s) or one)
    argv = ["bench", "--memory", "toy-gpt2-s", "--tokenizer", "gpt2", "--batch-size", "4", "--device", "cpu"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["tokenizer"] == "gpt2"
    assert [s["tokenizer"] for s in specs] == ["gpt2"] * 3
    with pytest.raises(DfaError, match="the tokenizer has 50257 tokens but the model embeds only 1966"):
        bench_memory.measure({**specs[0], "phase": "plain"})


def test_every_help_parses_without_loading_torch():
    """`dfa --help` and each subcommand's `--help` load none of torch, Lightning, transformers,
    TransformerLens or matplotlib (what made `--help` take 15 s). `dfa bench --help-times` prints
    the times; they are not asserted here."""
    from dfa.cli.help_times import help_times
    from dfa.core import attribution, interventions, mapping
    from dfa.core.names import ABLATIONS, ATTRIBUTIONS, NORMALISATIONS

    rows = help_times(build_parser())
    assert {"dfa --help", "dfa train --help", "dfa zoo trial --help"} <= {r["command"] for r in rows}
    assert [r for r in rows if r["rc"] != 0 or r["heavy"] != []] == []
    # the torch-free vocabularies the parsers read are the implemented ones
    assert tuple(attribution.METHODS) == ATTRIBUTIONS
    assert interventions.ABLATIONS == ABLATIONS and mapping.NORMALISATIONS == NORMALISATIONS


# --- messages name flags, not settings or folders ------------------------------------------------
def test_messages_name_the_flag_the_user_typed(capsys):
    assert "argument --n: must be at least 1, got 0" in _usage_error(["evaluate", "--map", "x", "--n", "0"], capsys)
    assert "argument --draws: expected a whole number, got 'two'" in _usage_error(
        ["evaluate", "--map", "x", "--draws", "two"], capsys
    )
    from dfa.cli import _subparser as sub
    from dfa.cli.flags import flag_words

    lib = (
        "Run folder r already holds a run. Set `resume` to continue it, give the `run` setting another "
        "name for a new run beside it, or set `overwrite` to replace it."
    )
    assert flag_words(lib, sub("train")) == (
        "Run folder r already holds a run. Pass `--resume` to continue it, give `--run` another name "
        "for a new run beside it, or pass `--overwrite` to replace it."
    )
    assert flag_words("n_src must be at least 1, got 0.", sub("train")) == "--n-src must be at least 1, got 0."
    assert flag_words("The `max_rows` setting must be positive", sub("evaluate")) == "`--max-rows` must be positive"
    # names the command has no flag for, and paths, stay as they are
    assert flag_words("set `overwrite` in dfa/zoo/my_models", sub("evaluate")) == "set `overwrite` in dfa/zoo/my_models"
    assert main(["train", "--src", "toy-gpt2-s", "--tgt", "toy-gpt2-m", "--n-src", "0"]) == 2
    assert "dfa train: error: --n-src must be at least 1, got 0." in capsys.readouterr().err


def test_an_unknown_task_gets_a_did_you_mean(tmp_path, capsys):
    assert _attribute(tmp_path / "s.json", "captals") == 2
    err = capsys.readouterr().err
    assert "Unknown task 'captals' (did you mean 'capitals'?); the tasks are ioi," in err
    assert _attribute(tmp_path / "s.json", "zzz") == 2
    assert "did you mean" not in capsys.readouterr().err


def test_a_split_too_small_names_the_model_not_its_folder(scored, capsys):
    argv = ["evaluate-circuit", "--model", "toy-gpt2-s", "--task", "capitals", "--scores", str(scored)]
    assert main([*argv, "--n", "100000"]) == 2
    err = capsys.readouterr().err
    assert "usable prompts for 'toy-gpt2-s' (seed 0)" in err and "dfa/zoo/models" not in err


def test_the_front_door_writes_the_users_run_outside_the_tracked_results():
    """README's first command leaves a checkout clean: its evaluation writes to runs/ (ignored by
    git) and compares itself with the committed results/main_toy.json, which it never rewrites."""
    import shlex

    readme = (ROOT / "README.md").read_text()
    first = next(line for line in readme.splitlines() if line.startswith("python3 -m venv") and "evaluate.py" in line)
    evaluate = shlex.split(first.split("&& python scripts/evaluate.py", 1)[1])
    args = build_parser().parse_args(["evaluate", *evaluate])
    assert args.reference == "results/main_toy.json" and (ROOT / args.reference).is_file()
    ignored = (ROOT / ".gitignore").read_text().split()
    for path in (args.json, args.plot):
        assert path.split("/", 1)[0] + "/" in ignored and not path.startswith("results/")
