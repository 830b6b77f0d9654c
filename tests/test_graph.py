"""The node graph: order, names, depths, counts, and that each node's hook slice is that node."""

from __future__ import annotations

import pytest
import torch

from dfa.core.errors import DfaError
from dfa.core.graph import NodeGraph, relative_depth
from dfa.core.ladders import LADDERS


def test_order_names_and_hooks():
    g = NodeGraph(n_layers=2, n_heads=3)
    assert g.names == ["input", "a0.h0", "a0.h1", "a0.h2", "m0", "a1.h0", "a1.h1", "a1.h2", "m1"]
    assert [n.index for n in g] == list(range(9))
    assert g["a1.h2"].hook == "blocks.1.attn.hook_z" and g["a1.h2"].slice == (slice(None), slice(None), 2)
    assert g["m0"].hook == "blocks.0.hook_mlp_out" and g["m0"].slice == (Ellipsis,)
    assert g["input"].hook == "blocks.0.hook_resid_pre" and g["input"].layer == -1
    assert g.hooks == [
        "blocks.0.hook_resid_pre",
        "blocks.0.attn.hook_z",
        "blocks.0.hook_mlp_out",
        "blocks.1.attn.hook_z",
        "blocks.1.hook_mlp_out",
    ]
    assert g.index("m1") == 8 and g[4].name == "m0"
    assert g.kind_mask("head").tolist() == [False, True, True, True, False, True, True, True, False]
    assert g.layers().tolist() == [-1, 0, 0, 0, 0, 1, 1, 1, 1]


def test_without_input():
    g = NodeGraph(n_layers=1, n_heads=2, include_input=False)
    assert g.names == ["a0.h0", "a0.h1", "m0"] and "input" not in g


def test_relative_depth_bins_layers():
    assert relative_depth(-1, 12) == 0.0
    assert [relative_depth(l, 4) for l in range(4)] == [0.125, 0.375, 0.625, 0.875]
    # gpt2's layer 0 bin [0, 1/12] holds exactly gpt2-large's layers 0, 1, 2 (of 36).
    inside = [l for l in range(36) if relative_depth(l, 36) < 1 / 12]
    assert inside == [0, 1, 2]
    g = NodeGraph(n_layers=12, n_heads=12)
    assert g.depths().min() == 0.0 and g.depths().max() < 1.0


@pytest.mark.parametrize(
    "name, heads, mlps",
    [("gpt2", 144, 12), ("gpt2-large", 720, 36), ("pythia-160m", 144, 12), ("pythia-2.8b", 1024, 32)],
)
def test_node_counts_match_architecture(name, heads, mlps):
    m = LADDERS[name]
    g = NodeGraph(m.n_layers, m.n_heads)
    assert (len(g.heads), len(g.mlps), len(g)) == (heads, mlps, heads + mlps + 1)
    assert m.n_nodes == len(g)


def test_bad_node_names():
    g = NodeGraph(n_layers=2, n_heads=3)
    with pytest.raises(DfaError, match=r"'a2.h0' is outside this model \(2 layers x 3 heads\)"):
        g.node("a2.h0")
    with pytest.raises(DfaError, match="not a node name"):
        g.node("head7")


def _run_capturing(model, tokens, hooks, edits=()):
    seen = {}

    def capture(name):
        def fn(act, hook):
            seen[name] = act.detach().clone()
            return act

        return fn

    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[*edits, *[(h, capture(h)) for h in hooks]])
    return logits, seen


def test_patching_one_head_changes_only_that_head(tiny_model):
    """Swap head (1, h)'s z for its value on another prompt: the attention output moves by
    exactly that head's W_O contribution, and no other head of the layer changes."""
    model = tiny_model
    g = NodeGraph.from_model(model)
    node = g["a1.h1"]
    z_hook, out_hook = node.hook, "blocks.1.hook_attn_out"
    clean = model.to_tokens("When Mary and John went to the store")
    other = model.to_tokens("When Alice and Bob went to the park")
    _, base = _run_capturing(model, clean, [z_hook, out_hook])
    _, donor = _run_capturing(model, other, [z_hook])

    # The node's contribution really is z_h @ W_O[h]: the heads sum (plus b_O) to the output.
    w_o = model.W_O[1]  # [n_heads, d_head, d_model]
    per_head = torch.einsum("bphd,hdm->bphm", base[z_hook], w_o)
    torch.testing.assert_close(per_head.sum(2) + model.b_O[1], base[out_hook], rtol=1e-4, atol=1e-5)

    def patch(act, hook):
        act = act.clone()
        act[node.slice] = donor[z_hook][node.slice]
        return act

    _, patched = _run_capturing(model, clean, [z_hook, out_hook], edits=[(z_hook, patch)])
    others = [h for h in range(g.n_heads) if h != node.head]
    torch.testing.assert_close(patched[z_hook][:, :, others], base[z_hook][:, :, others], rtol=0, atol=0)
    expected = base[out_hook] + (donor[z_hook][node.slice] - base[z_hook][node.slice]) @ w_o[node.head]
    torch.testing.assert_close(patched[out_hook], expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(patched[out_hook], base[out_hook])


def test_every_node_hook_carries_gradient(tiny_model):
    """A scale of 1 on each node's slice changes nothing, and every scale gets a gradient:
    the hooks really sit on the forward path of every node (heads included)."""
    model = tiny_model
    g = NodeGraph.from_model(model)
    scales = torch.ones(len(g), requires_grad=True)
    by_hook: dict[str, list] = {}
    for n in g:
        by_hook.setdefault(n.hook, []).append(n)

    def scaler(nodes):
        def fn(act, hook):
            factors = torch.ones_like(act)
            for n in nodes:
                factors[n.slice] = scales[n.index]
            return act * factors

        return fn

    tokens = model.to_tokens("When Mary and John went to the store , John gave a drink to")
    with torch.no_grad():
        clean = model(tokens)
    logits = model.run_with_hooks(tokens, fwd_hooks=[(h, scaler(ns)) for h, ns in by_hook.items()])
    torch.testing.assert_close(logits, clean, rtol=1e-5, atol=1e-5)
    logits[0, -1].logsumexp(-1).backward()
    assert scales.grad is not None
    zero = [g[i].name for i in range(len(g)) if scales.grad[i] == 0]
    assert zero == []
