"""Direct effects on the target (`dfa.core.direct`) and the methods that read them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from dfa.core.direct import direct_effect, direct_effects, logit_direction
from dfa.core.errors import DfaError
from dfa.core.graph import NodeGraph


def test_direct_effect_by_hand():
    # Two prompts, two nodes, d_model 2; no centring (an RMSNorm model), gain (1, 2).
    diff = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[2.0, 2.0], [1.0, -1.0]]])
    gain = torch.tensor([1.0, 2.0])
    scale = torch.tensor([1.0, 2.0])
    direction = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    got = direct_effect(diff, gain, scale, direction, centre=False)
    # prompt 0: (1, 0) . (1, 1) = 1; (0, 2) . (1, 1) = 2. prompt 1: (2, 4)/2 . (0, 1) = 2; (1, -2)/2 . (0, 1) = -1
    assert got.tolist() == [[1.0, 2.0], [2.0, -1.0]]
    # A LayerNorm removes each output's mean first: a constant output has no direct effect.
    assert direct_effect(torch.ones(1, 1, 2), None, torch.ones(1), torch.tensor([[3.0, -1.0]])).item() == 0


@pytest.mark.parametrize("name, corr", [("toy-gpt2-s", 0.95), ("toy-neox-s", 0.85)])
def test_the_last_mlp_direct_effect_is_what_patching_it_changes(name, corr):
    """The last MLP acts on the logits only directly: patching its output at the answer position
    with the corrupt run's changes the answer-minus-wrong logit difference by its direct effect,
    up to the final norm's scale, which the direct effect holds at the clean run's."""
    from dfa.core.circuits import task_prompts
    from dfa.core.interventions import capture
    from dfa.store import ModelPool

    model = ModelPool("cpu").get(name)
    graph = NodeGraph.from_model(model)
    batch = task_prompts(model, "sva", "train", 16, 0, batch_size=16).batches[0]
    effects = direct_effects(model, graph, [batch])
    assert effects.shape == (16, len(graph.mapped)) and bool(torch.isfinite(effects).all())
    hook = f"blocks.{model.cfg.n_layers - 1}.hook_mlp_out"
    rows, last = torch.arange(16), batch["last"]
    _, corrupt = capture(model, batch["corrupt"], [hook], last)

    def patch(act, hook):
        act = act.clone()
        act[rows, last] = corrupt[hook_name][rows, last]
        return act

    hook_name = hook
    with torch.no_grad():
        clean = model(batch["clean"])[rows, last]
        patched = model.run_with_hooks(batch["clean"], fwd_hooks=[(hook, patch)])[rows, last]

    def logit_diff(logits):
        a, am, w, wm = batch["answers"], batch["answers_mask"], batch["wrongs"], batch["wrongs_mask"]
        right = (logits.gather(1, torch.where(am, a, 0)) * am).sum(1) / am.sum(1)
        wrong = (logits.gather(1, torch.where(wm, w, 0)) * wm).sum(1) / wm.sum(1).clamp_min(1)
        return right - wrong

    actual = logit_diff(clean) - logit_diff(patched)
    predicted = effects[:, -1]  # the mapped nodes end with the last layer's MLP
    assert graph.mapped[-1].name == f"m{model.cfg.n_layers - 1}"
    assert float(torch.corrcoef(torch.stack([actual, predicted]))[0, 1]) > corr
    assert float(predicted.mean()) == pytest.approx(float(actual.mean()), rel=0.05)
    # the logit direction: answers' mean unembedding minus the wrong answers'
    d = logit_direction(model, batch)
    w_u = model.W_U
    i = 0
    a = batch["answers"][i][batch["answers_mask"][i]]
    w = batch["wrongs"][i][batch["wrongs_mask"][i]]
    assert torch.allclose(d[i], w_u[:, a].mean(1) - w_u[:, w].mean(1), atol=1e-5)
    with pytest.raises(DfaError, match="ablation 'patching'"):
        direct_effects(model, graph, [batch], ablation="mean")


def test_direct_and_depth_direct_rank_the_target_by_its_effects_and_the_depth_prior():
    from dfa.methods import METHODS, depth_scores

    src, tgt = NodeGraph(1, 1), NodeGraph(2, 2)  # target: input, a0.h0, a0.h1, m0, a1.h0, a1.h1, m1
    s = torch.tensor([2.0, 1.0])  # the source head 1, its MLP 0.5 (abs-max)
    direct = tgt.with_input(torch.tensor([0.0, 4.0, 1.0, 0.0, 0.0, 2.0], dtype=torch.double))
    x = SimpleNamespace(src_graph=src, tgt_graph=tgt, source=s, seed=0, draws=4)
    x.need = lambda what, name: direct
    alone = METHODS["direct"].score(x)  # no ties among 4, 1, 2 but three zeros: drawn
    assert isinstance(alone, list)
    for d in alone:
        assert [int(i) for i in torch.argsort(-d[1:])[:3]] == [1, 5, 2]  # a0.h1, m1, m0 by effect
    depth = tgt.mapped_scores(depth_scores(src, tgt, s))  # heads 1, MLPs 0.5
    assert depth.tolist() == [1.0, 1.0, 0.5, 1.0, 1.0, 0.5]
    both = METHODS["depth-direct"].score(x)
    # depth + direct / 4: a0.h0 1, a0.h1 2, m0 0.75, a1.h0 1, a1.h1 1, m1 1: a0.h1 first, m0 last,
    # the four tied at 1 in random orders
    orders = set()
    for d in both:
        order = [int(i) for i in torch.argsort(-d[1:])]
        assert order[0] == 1 and order[-1] == 2 and set(order[1:5]) == {0, 3, 4, 5}
        orders.add(tuple(order))
    assert len(orders) > 1
    assert not METHODS["direct"].in_sweeps and not METHODS["depth-direct"].default
