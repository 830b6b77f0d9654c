"""Node masks as hooks: the ends of the soft mask are exact, hard equals soft at 0/1, batched
masks equal one-at-a-time runs, and one head's patch touches only that head."""

from __future__ import annotations

import pytest
import torch

from dfa.core.errors import DfaError
from dfa.core.graph import NodeGraph
from dfa.core.interventions import (
    UNEMBED_IN,
    answer_logits,
    capture,
    donor_activations,
    mask_hooks,
    masked_metric,
    mean_activations,
    real_positions,
    rows_per_pass,
    run_masked,
)
from dfa.core.metrics import batch_metric, final_logits, task_metric
from tests.micro import micro_batch, ragged

VOCAB = 18  # the tiny models' word vocabulary


@pytest.fixture
def batch():
    return micro_batch(n=4, pos=7, vocab=VOCAB, seed=3)


def test_all_ones_soft_mask_is_the_clean_run_exactly(tiny_model, batch):
    g = NodeGraph.from_model(tiny_model)
    donor = donor_activations(tiny_model, g, batch, "patching")
    with torch.no_grad():
        clean = tiny_model(batch["clean"])
        masked = run_masked(tiny_model, g, batch["clean"], donor, torch.ones(len(g)))
    assert torch.equal(masked, clean)


@pytest.mark.parametrize("ablation", ["patching", "mean", "zero"])
def test_all_zeros_mask_is_the_fully_ablated_run(tiny_model, batch, ablation):
    """Mask 0 everywhere equals a run whose every node hook returns the donor outright."""
    g = NodeGraph.from_model(tiny_model)
    means = mean_activations(tiny_model, g, [batch]) if ablation == "mean" else None
    donor = donor_activations(tiny_model, g, batch, ablation, means)

    def replace(name):
        return lambda act, hook: (
            (donor[name] if name in donor else torch.zeros_like(act)).expand_as(act).clone()
        )

    with torch.no_grad():
        ablated = tiny_model.run_with_hooks(batch["clean"], fwd_hooks=[(h, replace(h)) for h in g.hooks])
        masked = run_masked(tiny_model, g, batch["clean"], donor, torch.zeros(len(g)))
    torch.testing.assert_close(masked, ablated, rtol=0, atol=0)
    if ablation == "patching":  # every node patched, the input included: the corrupt run itself
        torch.testing.assert_close(masked, tiny_model(batch["corrupt"]), rtol=1e-5, atol=1e-5)


def test_mean_ablation_refuses_to_guess_its_means(tiny_model, batch):
    """Without the dataset's means, mean ablation is refused, not silently one batch's means."""
    with pytest.raises(DfaError, match="Mean ablation needs the dataset's means"):
        donor_activations(tiny_model, NodeGraph.from_model(tiny_model), batch, "mean")


def test_hard_mask_equals_soft_mask_at_zero_and_one(tiny_model, batch):
    g = NodeGraph.from_model(tiny_model)
    donor = donor_activations(tiny_model, g, batch, "patching")
    masks = (torch.rand(3, len(g), generator=torch.Generator().manual_seed(0)) > 0.5).float()
    with torch.no_grad():
        hard = run_masked(tiny_model, g, batch["clean"], donor, masks, hard=True)
        soft = run_masked(tiny_model, g, batch["clean"], donor, masks, hard=False)
    torch.testing.assert_close(hard, soft, rtol=0, atol=0)


def test_stacked_masks_equal_one_mask_at_a_time(tiny_model, batch):
    g = NodeGraph.from_model(tiny_model)
    donor = donor_activations(tiny_model, g, batch, "patching")
    masks = torch.rand(4, len(g), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        stacked = run_masked(tiny_model, g, batch["clean"], donor, masks)
        for i in range(4):
            one = run_masked(tiny_model, g, batch["clean"], donor, masks[i])
            torch.testing.assert_close(stacked[i], one, rtol=1e-5, atol=1e-5)
        metric = masked_metric(tiny_model, g, batch, donor, masks, "logit_diff", hard=False, max_rows=4)
    expected = torch.stack([task_metric("logit_diff", stacked[i], batch) for i in range(4)])
    torch.testing.assert_close(metric, expected, rtol=1e-5, atol=1e-5)  # chunked one mask per pass


def test_soft_mask_interpolates_a_node_output(tiny_model, batch):
    """At m = 0.25 a head's z is 0.25 * its own value + 0.75 * the corrupt one, and the
    layer's other heads are untouched (the only node edited is the only one that moves)."""
    g = NodeGraph.from_model(tiny_model)
    node = g["a1.h1"]
    donor = donor_activations(tiny_model, g, batch, "patching")
    mask = torch.ones(len(g))
    mask[node.index] = 0.25
    seen = {}

    def grab(act, hook):
        seen["z"] = act.detach().clone()
        return act

    with torch.no_grad():
        _, base = capture(tiny_model, batch["clean"], [node.hook])
        tiny_model.run_with_hooks(
            batch["clean"], fwd_hooks=[*mask_hooks(g, mask[None], donor), (node.hook, grab)]
        )
    z, z0, zc = seen["z"], base[node.hook], donor[node.hook]
    others = [h for h in range(g.n_heads) if h != node.head]
    torch.testing.assert_close(z[:, :, others], z0[:, :, others], rtol=0, atol=0)
    torch.testing.assert_close(z[:, :, node.head], 0.25 * z0[:, :, node.head] + 0.75 * zc[:, :, node.head])


def test_every_node_gets_a_mask_gradient(tiny_model, batch):
    g = NodeGraph.from_model(tiny_model)
    donor = donor_activations(tiny_model, g, batch, "patching")
    mask = torch.full((len(g),), 0.5, requires_grad=True)
    logits = run_masked(tiny_model, g, batch["clean"], donor, mask)
    task_metric("logit_diff", logits, batch).sum().backward()
    assert [g[i].name for i in range(len(g)) if mask.grad[i] == 0] == []


def test_mean_activations_average_real_positions(tiny_model):
    g = NodeGraph.from_model(tiny_model)
    batch = micro_batch(n=3, pos=6, vocab=VOCAB, seed=5)
    batch["last"] = torch.tensor([5, 2, 3])  # right padding after `last` must not count
    means = mean_activations(tiny_model, g, [batch])
    _, acts = capture(tiny_model, batch["clean"], g.hooks)
    real = real_positions(batch)
    assert int(real.sum()) == 6 + 3 + 4
    for hook in g.hooks:
        torch.testing.assert_close(means[hook][0, 0], acts[hook][real].mean(0), rtol=1e-5, atol=1e-6)


def test_bad_masks_and_ablations_are_refused(tiny_model, batch):
    g = NodeGraph.from_model(tiny_model)
    with pytest.raises(DfaError, match=rf"Masks must be \[n_masks, {len(g)}\]"):
        mask_hooks(g, torch.ones(2, 3), {})
    with pytest.raises(DfaError, match="Unknown ablation 'resample'; choose one of patching, mean, zero"):
        donor_activations(tiny_model, g, batch, "resample")


def test_answer_logits_unembed_one_position_and_equal_the_full_logits(tiny_model, batch):
    """The cut at the unembedding's input leaves one position per row, and the logits there are
    the full run's at each row's answer position (gradients included)."""
    batch = ragged(batch)
    assert UNEMBED_IN in tiny_model.hook_dict
    shapes = []
    seen = lambda act, hook: shapes.append(tuple(act.shape)) or act
    with torch.no_grad():
        cut = answer_logits(tiny_model, batch["clean"], batch["last"], [("unembed.hook_out", seen)])
        full = tiny_model(batch["clean"])
    assert shapes == [(4, 1, VOCAB)] and cut.shape == (4, VOCAB)
    torch.testing.assert_close(cut, final_logits(full, batch["last"]), rtol=1e-6, atol=1e-6)

    grads = []
    for unembed_all in (False, True):
        leaves = []

        def leaf(act, hook, leaves=leaves):
            leaves.append(act.detach().requires_grad_(True))
            return leaves[-1]

        hooks = [("blocks.0.hook_resid_pre", leaf)]
        if unembed_all:
            logits = final_logits(tiny_model.run_with_hooks(batch["clean"], fwd_hooks=hooks), batch["last"])
        else:
            logits = answer_logits(tiny_model, batch["clean"], batch["last"], hooks)
        batch_metric("logit_diff", logits, batch).sum().backward()
        grads.append(leaves[0].grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)
    assert grads[0].abs().sum() > 0


def test_masked_runs_unembed_the_answer_position_alone(tiny_model, batch):
    batch = ragged(batch)
    g = NodeGraph.from_model(tiny_model)
    donor = donor_activations(tiny_model, g, batch, "patching")
    masks = torch.rand(3, len(g), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = run_masked(tiny_model, g, batch["clean"], donor, masks)
        cut = run_masked(tiny_model, g, batch["clean"], donor, masks, last=batch["last"])
    assert cut.shape == (3, 4, VOCAB)
    for i in range(3):
        torch.testing.assert_close(cut[i], final_logits(full[i], batch["last"]), rtol=1e-6, atol=1e-6)


def test_rows_per_pass_budget():
    assert rows_per_pass(None, 25) == 1  # default: one copy of the batch per pass
    assert rows_per_pass(125, 25) == 5 and rows_per_pass(130, 25) == 5 and rows_per_pass(10, 25) == 1
    for bad in (0, -3, 2.5, True):
        with pytest.raises(DfaError, match="max_rows"):
            rows_per_pass(bad, 4)  # type: ignore[arg-type]


def test_a_bf16_models_soft_mask_gradient_is_close_to_float32():
    """The soft blend runs in float32 on a bf16 model, so the mask's gradient (a sum over the
    batch, positions and features) is not summed in bf16: measured relative error 0.003 against
    the float32 model's gradient (0.011 with the blend in bf16)."""
    from dfa.core.models import load_model
    from dfa.core.tasks import make_batches, make_dataset

    grads = {}
    for dtype in ("float32", "bfloat16"):
        model = load_model("toy-neox-m", device="cpu", dtype=dtype)
        g = NodeGraph.from_model(model)
        data = make_dataset("ioi", model, 32, "val")
        (b,) = make_batches(data.examples, model, 32)
        donor = donor_activations(model, g, b, "patching")
        mask = torch.full((len(g),), 0.9, requires_grad=True)
        batch_metric(
            data.metric, run_masked(model, g, b["clean"], donor, mask, last=b["last"]), b
        ).sum().backward()
        grads[dtype] = mask.grad
    ref = grads["float32"]
    assert ((grads["bfloat16"] - ref).norm() / ref.norm()).item() < 0.006
