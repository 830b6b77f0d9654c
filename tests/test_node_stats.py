"""Node statistics (`dfa.core.node_stats`): the statistics on hand-built tensors, a hand-wired GPT-2
whose heads have known outputs and attention, a real toy model, the table's order and z-scores,
the file and the cache."""

from __future__ import annotations

import math

import pytest
import torch

from dfa.core.graph import NodeGraph
from dfa.core.node_stats import (
    EPS,
    N_STATS,
    STATS,
    NodeStats,
    NodeStatsError,
    attention_stats,
    node_stats,
    output_stats,
    zscore,
)
from tests.test_roles import _wired_gpt2


def test_output_norm_and_spread_of_known_outputs():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(8, generator=g)
    v = 3 * v / v.norm()
    out = torch.zeros(4, 5, 3, 8)  # [batch, pos, node, d_model]
    out[:, :, 0] = v / 1.5  # the same vector for every input: norm 2, nothing for patching to change
    out[:, :, 1] = v * torch.tensor([1.0, -1.0, 1.0, -1.0])[:, None, None]  # norm 3, flips sign
    log_norm, log_spread = output_stats(out)  # node 2 writes nothing
    assert log_norm.tolist() == pytest.approx([math.log(2), math.log(3), math.log(EPS)], abs=1e-5)
    # node 1: sequence b against b - 1 always differs by 2v (norm 6)
    assert log_spread.tolist() == pytest.approx([math.log(EPS), math.log(6), math.log(EPS)], abs=1e-4)
    with pytest.raises(NodeStatsError, match="at least two sequences"):
        output_stats(out[:1])


def test_attention_entropy_and_bos_of_known_patterns():
    n = 7
    uniform = torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None]
    on_bos = torch.zeros(n, n)
    on_bos[:, 0] = 1.0
    on_self = torch.eye(n)
    half = torch.zeros(n, n)  # half on BOS, half on itself (the query at 0: all on BOS)
    half[:, 0] = 0.5
    half[torch.arange(n), torch.arange(n)] += 0.5
    patterns = torch.stack([uniform, on_bos, on_self, half])[None]  # [1, head, q, k]
    ent, bos = attention_stats(patterns, start=1)
    q = torch.arange(1, n)
    assert ent.tolist() == pytest.approx([1.0, 0.0, 0.0, (math.log(2) / (q + 1).float().log()).mean().item()])
    assert bos.tolist() == pytest.approx([(1 / (q + 1).float()).mean().item(), 1.0, 0.0, 0.5])


def test_zscore_per_column_and_constant_columns():
    x = torch.tensor([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    assert torch.allclose(zscore(x), torch.tensor([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]))
    assert zscore(x[:1]).tolist() == [[0.0, 0.0]]


def test_the_table_is_in_graph_order_z_scored_per_kind():
    layers, heads = 3, 2
    values = torch.arange(layers * (heads + 1) * N_STATS, dtype=torch.float32).view(
        layers, heads + 1, N_STATS
    )
    values[:, :, STATS.index("bos")] = torch.rand(layers, heads + 1)
    t = NodeStats("m", values).table()
    graph = NodeGraph(layers, heads)
    assert t.shape == (len(graph.mapped), N_STATS)
    is_head = torch.tensor([n.kind == "head" for n in graph.mapped])
    # each column z-scored among the heads and among the MLPs apart
    assert torch.allclose(t[is_head].mean(0), torch.zeros(N_STATS), atol=1e-6)
    assert torch.allclose(t[is_head].std(0), torch.ones(N_STATS), atol=1e-5)
    mlp = t[~is_head]
    assert torch.allclose(mlp[:, :2], zscore(values[:, -1, :2]), atol=1e-6)
    assert torch.all(mlp[:, 2:] == 0)  # MLPs have no attention
    # row order: a0.h0, a0.h1, m0, a1.h0, ...: the raw log_norm rises along the graph order
    assert torch.all(t[is_head, 0].diff() > 0) and torch.all(mlp[:, 0].diff() > 0)
    with pytest.raises(NodeStatsError, match=r"must be \[n_layers, n_heads \+ 1, 4\]"):
        NodeStats("m", torch.zeros(3, 4))
    with pytest.raises(NodeStatsError, match="not all finite"):
        NodeStats("m", torch.full((2, 3, N_STATS), float("nan")))


@pytest.fixture(scope="module")
def wired(tmp_path_factory):
    from dfa.core.models import load_model

    return load_model(str(_wired_gpt2(tmp_path_factory.mktemp("wired") / "wired-gpt2")), device="cpu")


def test_hand_wired_heads_get_their_statistics(wired):
    L = 10
    s = node_stats(wired, n_seqs=6, seq_len=L, seed=0)
    assert s.values.shape == (2, 3, N_STATS) and s.meta["bos"] is True and s.meta["seq_len"] == L
    v = {name: s.values[..., i] for i, name in enumerate(STATS)}
    # a0.h1: zero queries, keys and output weights: uniform causal attention, writes nothing
    q = torch.arange(1, 1 + 2 * L).float()
    assert v["entropy"][0, 1] == pytest.approx(1.0, abs=1e-5)
    assert v["bos"][0, 1] == pytest.approx((1 / (q + 1)).mean().item(), abs=1e-5)
    assert v["log_norm"][0, 1] == pytest.approx(math.log(EPS), abs=1e-3)
    assert v["log_spread"][0, 1] == pytest.approx(math.log(EPS), abs=1e-3)
    # the wired MLPs are all zeros
    assert v["log_norm"][:, 2].tolist() == pytest.approx([math.log(EPS)] * 2, abs=1e-3)
    # a0.h0 (previous token) attends to one key: entropy near 0, BOS only from the first query
    assert v["entropy"][0, 0] < 0.05
    assert v["bos"][0, 0] == pytest.approx(1 / (2 * L), abs=0.02)
    # the copying heads write input-dependent outputs: spread above the silent head's
    for head in [(0, 0), (1, 0), (1, 1)]:
        assert v["log_norm"][head] > -5 and v["log_spread"][head] > -5
    # a1.h0 (induction) rests on BOS in the first copy, attends to the induction target in the second
    assert 0.3 < v["bos"][1, 0] < 0.7


@pytest.fixture(scope="module")
def toy():
    from dfa.core.errors import DfaError
    from dfa.core.models import load_model

    try:
        return load_model("toy-gpt2-s", device="cpu")
    except (DfaError, OSError) as err:
        pytest.skip(f"toy-gpt2-s not loadable here: {err}")


def test_toy_model_statistics_are_finite_deterministic_and_cached(toy, tmp_path):
    from dfa.store import ModelPool, cached_node_stats, stats_path

    a = node_stats(toy, n_seqs=4, seq_len=8, seed=3)
    b = node_stats(toy, n_seqs=4, seq_len=8, seed=3)
    c = node_stats(toy, n_seqs=4, seq_len=8, seed=4)
    assert a.values.shape == (toy.cfg.n_layers, toy.cfg.n_heads + 1, N_STATS) and a.model == "toy-gpt2-s"
    assert torch.equal(a.values, b.values) and not torch.equal(a.values, c.values)
    ent, bos = a.values[:, :-1, 2], a.values[:, :-1, 3]
    assert ((ent >= 0) & (ent <= 1 + 1e-5)).all() and ((bos >= 0) & (bos <= 1)).all()
    # file round trip, and the cache
    a.save(tmp_path / "a.safetensors")
    back = NodeStats.load(tmp_path / "a.safetensors")
    assert torch.equal(back.values, a.values) and back.meta == a.meta
    pool = ModelPool("cpu")
    pool._models[("toy-gpt2-s", 0)] = toy  # no second load
    first = cached_node_stats(pool, tmp_path, "toy-gpt2-s")
    assert stats_path(tmp_path, "toy-gpt2-s").is_file()
    pool._models.clear()  # read from the file now: a model load would fail the identity below
    assert torch.equal(cached_node_stats(pool, tmp_path, "toy-gpt2-s").values, first.values)
    assert not pool._models
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(NodeStatsError, match="not a dfa node-statistics file"):
        NodeStats.load(tmp_path / "bad.safetensors")
