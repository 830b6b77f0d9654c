"""`dfa attribute` and `dfa evaluate-circuit` end to end on a shipped toy model, and their errors."""

from __future__ import annotations

import json

import pytest

from dfa.cli import main
from dfa.core.scores import NodeScores
from dfa.zoo.spec import TOY_SPECS


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "sva.json"
    assert (
        main(
            [
                "attribute",
                "--model",
                "toy-gpt2-s",
                "--task",
                "sva",
                "--method",
                "eap",
                "--n",
                "8",
                "--out",
                str(out),
            ]
        )
        == 0
    )
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


def test_evaluate_circuit_prints_and_writes_the_report(scored, tmp_path, capsys):
    report, plot = tmp_path / "r.json", tmp_path / "r.png"
    code = main(
        [
            "evaluate-circuit",
            "--model",
            "toy-gpt2-s",
            "--task",
            "sva",
            "--scores",
            str(scored),
            "--n",
            "12",
            "--random",
            "2",
            "--boot",
            "50",
            "--json",
            str(report),
            "--plot",
            str(plot),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "input node kept" in out and "random" in out and "per family CPR" in out
    data = json.loads(report.read_text())
    assert data["input_node"] == "kept" and data["n_prompts"] == 12
    eap, rnd = data["curves"]["eap"], data["curves"]["random"]
    assert [f for f, _ in eap["curve"]] == [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    assert eap["curve"][-1][1] == 1.0 and rnd["n_draws"] == 2
    assert eap["cpr_ci"][0] <= eap["cpr"] <= eap["cpr_ci"][1]
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_cli_errors_are_specific(scored, tmp_path, capsys):
    assert main(["attribute", "--model", "toy-gpt2-s", "--task", "sva", "--out", str(tmp_path / "s.pt")]) == 2
    assert "--out must end in .json (importances) or .safetensors, not 's.pt'" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate-circuit",
                "--model",
                "toy-gpt2-s",
                "--task",
                "sva",
                "--scores",
                str(tmp_path / "no.json"),
            ]
        )
        == 2
    )
    assert "No scores file at" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate-circuit",
                "--model",
                "toy-neox-m",
                "--task",
                "sva",
                "--scores",
                str(scored),
                "--n",
                "4",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    a, b = TOY_SPECS["toy-gpt2-s"], TOY_SPECS["toy-neox-m"]
    assert (
        f"are for a model of {a.n_layers} layers x {a.n_heads} heads (toy-gpt2-s); "
        f"this model has {b.n_layers} layers x {b.n_heads} heads"
    ) in err
    assert (
        main(["attribute", "--model", "toy-gpt2-s", "--task", "nope", "--out", str(tmp_path / "s.json")]) == 2
    )
    assert "Unknown task 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "s.json").exists()
