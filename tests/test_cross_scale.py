"""Cross-scale analysis: the projection, the readings, and one small run of the script."""

from __future__ import annotations

import json

from dfa.cli import main as dfa_main
from dfa.core.alignment import depth_matrix
from dfa.experiments.cross_scale import monotone, project, reading


def main(argv):
    return dfa_main(["cross-scale", *argv])


from dfa.core.evaluate import circuit_size
from dfa.core.graph import NodeGraph
from dfa.core.roles import ROLES
from dfa.zoo.spec import TOY_SPECS


def test_readings_and_trend():
    assert [reading(x) for x in (0.75, 0.7, 0.5, 0.35, 0.29)] == [
        "scale-invariant",
        "scale-invariant",
        "core transfers, periphery varies",
        "weak",
        "scale-specific",
    ]
    assert monotone([0.8, 0.6, 0.6]) == "non-increasing"
    assert monotone([0.2, 0.5]) == "non-decreasing"
    assert monotone([0.2, 0.5, 0.1]) == "not monotone"
    assert monotone([0.4]) == "one pair"


def test_projection_by_relative_depth():
    src, tgt = NodeGraph(1, 1), NodeGraph(2, 1)  # a0.h0 m0 -> a0.h0 m0 a1.h0 m1
    D = depth_matrix(src, tgt)
    # The source MLP covers both target layers: its mass goes to both target MLPs, in node order.
    assert project(["m0"], D, src, tgt, 2) == ["m0", "m1"]
    assert project(["a0.h0"], D, src, tgt, 1) == ["a0.h0"]
    src, tgt = NodeGraph(2, 1), NodeGraph(4, 1)
    D = depth_matrix(src, tgt)
    # Source layer 1 ([0.5, 1]) covers target layers 2 and 3.
    assert project(["a1.h0"], D, src, tgt, 2) == ["a2.h0", "a3.h0"]
    assert project([], D, src, tgt, 1) == ["a0.h0"]  # no mass: node order


def test_cross_scale_script_on_two_toy_models(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(
        [
            *("--models", "toy-gpt2-m", "toy-gpt2-s", "--tasks", "sva"),
            *("--n", "10", "--n-eval", "10", "--cache", str(tmp_path / "cache"), "--out", str(out)),
        ]
    )
    assert rc == 0
    report = json.loads((out / "cross_scale.json").read_text())
    assert report["models"] == ["toy-gpt2-s", "toy-gpt2-m"]  # ordered small -> large
    (pair,) = report["pairs"]
    n_small, n_large = TOY_SPECS["toy-gpt2-s"].n_nodes, TOY_SPECS["toy-gpt2-m"].n_nodes
    k_small, k_large = circuit_size(0.1, n_small), circuit_size(0.1, n_large)  # the default fraction
    assert (pair["small"], pair["large"], pair["k_small"], pair["k_large"]) == (
        "toy-gpt2-s",
        "toy-gpt2-m",
        k_small,
        k_large,
    )
    assert 0 <= pair["overlap"] <= 1 and pair["reading"] == reading(pair["overlap"])
    assert pair["chance"] == k_large / n_large
    assert len(report["circuits"]["sva"]["toy-gpt2-m"]) == k_large
    assert set(report["census"]["toy-gpt2-s"]["top"]) == set(ROLES)
    assert "| sva | toy-gpt2-s -> toy-gpt2-m |" in (out / "cross_scale.md").read_text()
    assert (out / "cross_scale.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrote" in capsys.readouterr().out
    assert main(["--models", "toy-gpt2-s", "toy-nope", "--out", str(out)]) == 2
    assert "toy-nope" in capsys.readouterr().err
