"""Node scores on disk: round trips, EAP-IG/MIB files, bad files, and atomic writes."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dfa.core.graph import NodeGraph
from dfa.core.io import atomic_write
from dfa.core.scores import NodeScores, ScoresError

META = {
    "model": "toy-gpt2-s",
    "task": "ioi",
    "method": "exact",
    "n_prompts": 3,
    "cfg": {"n_layers": 2, "n_heads": 2},
}


def _scores() -> NodeScores:
    g = NodeGraph(2, 2)
    return NodeScores(g.names, torch.tensor([0.5, -1.25, 2.0, 0.0, 3.5, 1e-7, -2.0]), META)


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_round_trip(tmp_path, suffix):
    s = _scores()
    back = NodeScores.load(s.save(tmp_path / f"scores{suffix}"))
    assert back.names == s.names
    assert torch.equal(back.scores, s.scores)
    assert back.meta["model"] == "toy-gpt2-s" and back.meta["n_prompts"] == 3


def test_importances_json_is_the_eap_ig_node_format(tmp_path):
    data = json.loads(_scores().save(tmp_path / "s.json").read_text())
    assert data["cfg"] == {"n_layers": 2, "n_heads": 2}
    assert data["nodes"]["a0.h1"] == {"in_graph": True, "score": 2.0}
    assert data["edges"] == {}
    # a stated circuit: in_graph marks its nodes only, the scores of all nodes stay
    part = json.loads(_scores().save(tmp_path / "c.json", in_graph=["input", "m1"]).read_text())
    assert [n for n, v in part["nodes"].items() if v["in_graph"]] == ["input", "m1"]
    assert part["nodes"]["a0.h1"] == {"in_graph": False, "score": 2.0}
    with pytest.raises(ScoresError, match="a9.h9"):
        _scores().save(tmp_path / "bad.json", in_graph=["a9.h9"])


def test_an_eap_ig_file_loads_with_unscored_nodes_kept(tmp_path):
    """MIB writes a `logits` node and may leave nodes unscored; those are NaN, kept always."""
    mib = {
        "cfg": {"n_layers": 1, "n_heads": 2, "parallel_attn_mlp": False, "d_model": 8},
        "nodes": {
            "input": {"in_graph": True, "score": None},
            "a0.h0": {"in_graph": True, "score": 0.75},
            "a0.h1": {"in_graph": False, "score": -0.5},
            "m0": {"in_graph": True, "score": float("nan")},
            "logits": {"in_graph": True},
        },
        "edges": {"input->a0.h0<q>": {"score": 0.1, "in_graph": True}},
    }
    path = tmp_path / "mib.json"
    path.write_text(json.dumps(mib))
    s = NodeScores.load(path)
    assert s.names == ["input", "a0.h0", "a0.h1", "m0"]
    aligned = s.for_graph(NodeGraph(1, 2))
    assert math.isnan(aligned[0]) and math.isnan(aligned[3])
    assert aligned[1:3].tolist() == [0.75, -0.5]


def test_bad_files_get_clear_errors(tmp_path):
    edges_only = tmp_path / "edges.json"
    edges_only.write_text(
        json.dumps({"cfg": {}, "nodes": {"input": True, "m0": True}, "edges": {"input->m0": {"score": 1}}})
    )
    with pytest.raises(ScoresError, match="holds edge scores only: dfa ranks nodes"):
        NodeScores.load(edges_only)
    cut = tmp_path / "cut.json"
    cut.write_text(_scores().save(tmp_path / "whole.json").read_text()[:50])
    with pytest.raises(ScoresError, match="is not valid JSON .*was it cut short"):
        NodeScores.load(cut)
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"weight": torch.ones(2)}, str(foreign))
    with pytest.raises(ScoresError, match="is not a dfa scores file"):
        NodeScores.load(foreign)
    with pytest.raises(ScoresError, match="No scores file at .*Score the model's nodes"):
        NodeScores.load(tmp_path / "missing.json")
    with pytest.raises(ScoresError, match=r"not 'scores.pt'"):
        _scores().save(tmp_path / "scores.pt")
    bad_name = tmp_path / "bad.json"
    bad_name.write_text(json.dumps({"nodes": {"head7": {"score": 1.0}}}))
    with pytest.raises(ScoresError, match="'head7' is not a node name"):
        NodeScores.load(bad_name)


def test_scores_of_another_model_are_refused():
    with pytest.raises(
        ScoresError,
        match=r"are for a model of 2 layers x 2 heads \(toy-gpt2-s\); this model has 3 layers x 4",
    ):
        _scores().for_graph(NodeGraph(3, 4))  # a superset of the names: still another model
    no_cfg = NodeScores(_scores().names, _scores().scores, {"model": "toy-gpt2-s"})
    with pytest.raises(
        ScoresError,
        match=r"from toy-gpt2-s\) name nodes this model does not have: a0.h1, a1.h0, a1.h1, m1; this model has 1 layers x 1 heads",
    ):
        no_cfg.for_graph(NodeGraph(1, 1))


def test_an_interrupted_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")

    def fail(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_json_reports_are_strict_json(tmp_path):
    """NaN and infinities (a CI of an undefined curve, a card's corrupt share with no positive
    clean metric) are written as null, which every JSON reader accepts."""
    from dfa.core.io import write_json

    def refuse(name):
        raise ValueError(name)

    path = write_json(
        tmp_path / "r.json", {"a": float("inf"), "b": [float("nan"), 1.5], "c": {"d": -float("inf")}}
    )
    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "a": None,
        "b": [None, 1.5],
        "c": {"d": None},
    }


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_umasks_mode_not_the_temporary_files(tmp_path, umask):
    import os
    import stat

    from dfa.core.io import write_json

    old = os.umask(umask)
    try:
        paths = [
            write_json(tmp_path / "r.json", {"a": 1}),
            _scores().save(tmp_path / "s.safetensors"),
            atomic_write(tmp_path / "x.bin", lambda tmp: tmp.write_bytes(b"x")),
        ]
    finally:
        os.umask(old)
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name
