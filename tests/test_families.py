"""Llama-3, Qwen2.5, Gemma-3 and SmolLM2 through the whole pipeline on tiny random models of each
(2 layers, grouped keys/values where the family has them; tests/families.py): the bridge, the
node graph of query heads, the nodes check, attribution, a curve, roles, the depth and role
baselines across families, and a two-epoch map training from one family to another."""

from __future__ import annotations

import time

import pytest
import torch

from dfa.core import roles as R
from dfa.core.attribution import attribute
from dfa.core.evaluate import evaluate_circuits, random_scores
from dfa.core.graph import NodeGraph
from dfa.core.interventions import capture, donor_activations, run_masked
from dfa.core.metrics import task_metric
from dfa.core.models import load_model
from dfa.core.tasks import make_batches, make_dataset
from tests.families import FAMILIES, save_family, tiny_config

FAMS = list(FAMILIES)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {f: save_family(root / f, f) for f in FAMS}


@pytest.fixture(scope="module")
def models(folders):
    return {f: load_model(str(p), device="cpu", dtype="float64") for f, p in folders.items()}


def _batches(model, n: int = 8, size: int = 4):
    data = make_dataset("sva", model, n, "train", allow_fewer=True)
    return make_batches(data.examples, model, size), data.metric


@pytest.mark.parametrize("family", FAMS)
def test_a_head_node_is_a_query_head_whose_output_is_z_h_at_W_O_h(family, models, folders):
    from transformers import AutoModelForCausalLM

    model = models[family]
    _, heads, kv = FAMILIES[family]
    g = NodeGraph.from_model(model)
    assert (g.n_heads, len(g)) == (heads, 1 + 2 * (heads + 1))
    assert int(model.cfg.n_key_value_heads) == kv and model.blocks[0].attn.W_V.shape[0] == kv
    tokens = model.to_tokens("When Mary and John went to the store")
    hf = AutoModelForCausalLM.from_pretrained(str(folders[family]), attn_implementation="eager")
    hf = hf.double().eval()
    z_hook, o_hook = "blocks.1.attn.hook_z", "blocks.1.attn.o.hook_out"
    logits, c = capture(model, tokens, [z_hook, o_hook])
    with torch.no_grad():
        torch.testing.assert_close(logits, hf(tokens).logits, rtol=1e-9, atol=1e-9)
    z, attn = c[z_hook], model.blocks[1].attn
    assert z.shape[2:] == (heads, attn.W_O.shape[1])  # one slot per query head
    per_head = torch.einsum("bphe,hed->bphd", z, attn.W_O)
    b_o = attn.b_O if attn.b_O is not None else 0.0
    torch.testing.assert_close(per_head.sum(2) + b_o, c[o_hook], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("family", FAMS)
def test_nodes_check_runs_every_hook(family, folders, capsys):
    from dfa.cli import main

    _, heads, kv = FAMILIES[family]
    assert main(["nodes", "--model", str(folders[family]), "--check"]) == 0
    out = capsys.readouterr().out
    grouped = f" ({kv} key/value head{'s' if kv > 1 else ''})" if kv != heads else ""
    assert f"2 layers x {heads} heads{grouped}" in out
    assert f"nodes={1 + 2 * (heads + 1)}: {2 * heads} heads + 2 MLPs + input" in out
    assert "all 5 node hooks fired" in out and f"heads (1, 15, {heads}, 8)" in out


@pytest.mark.parametrize("family", FAMS)
def test_attribution_exact_is_eap_to_first_order(family, models):
    """EAP is the derivative of the patching effect: moving one node's mask from 1 - eps to 1 + eps
    changes the metric by 2 eps x EAP up to O(eps^2) (the families' RMSNorms compute in float32,
    which bounds how small eps can go); full exact patching is one patched run per node."""
    model = models[family]
    g = NodeGraph.from_model(model)
    batches, metric = _batches(model)
    eap = attribute(model, g, batches, metric, "eap")
    exact = attribute(model, g, batches, metric, "exact")
    eps = 1e-2

    def metric_at(b, donor, node, m):
        mask = torch.ones(len(g), dtype=torch.float64)
        mask[node.index] = m
        with torch.no_grad():
            return task_metric(metric, run_masked(model, g, b["clean"], donor, mask), b)

    for node in g:
        slopes, drops = [], []
        for b in batches:
            donor = donor_activations(model, g, b, "patching")
            slopes.append(
                (metric_at(b, donor, node, 1 + eps) - metric_at(b, donor, node, 1 - eps)) / (2 * eps)
            )
            drops.append(metric_at(b, donor, node, 1.0) - metric_at(b, donor, node, 0.0))
        slope, drop = torch.cat(slopes).mean().item(), torch.cat(drops).mean().item()
        assert eap[node.index].item() == pytest.approx(slope, rel=1e-2, abs=2e-5), node.name
        assert exact[node.index].item() == pytest.approx(drop, rel=1e-6, abs=1e-9), node.name
    assert (eap[1:] != 0).all()


@pytest.mark.parametrize("family", FAMS)
def test_curve_ends_are_the_clean_and_the_empty_circuit(family, models):
    model = models[family]
    g = NodeGraph.from_model(model)
    batches, metric = _batches(model)
    ev = evaluate_circuits(model, g, batches, metric, {"r": random_scores(len(g), 3)}, [0.5, 1.0], n_boot=50)
    assert ev.curves["r"].faithfulness[-1] == 1.0
    clean, empty = [], []
    for b in batches:
        donor = donor_activations(model, g, b, "patching")
        only_input = torch.zeros(len(g), dtype=torch.float64)
        only_input[0] = 1
        with torch.no_grad():
            clean.append(task_metric(metric, model(b["clean"]), b))
            empty.append(task_metric(metric, run_masked(model, g, b["clean"], donor, only_input), b))
    assert ev.clean == pytest.approx(torch.cat(clean).mean().item(), rel=1e-5, abs=1e-7)
    assert ev.empty == pytest.approx(torch.cat(empty).mean().item(), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("family", FAMS)
def test_ov_rows_use_each_query_heads_key_value_group(family, models, folders):
    """The OV rows from the bridge's weights against the HF weights read directly: value rows of
    the head's group (`h // (heads / kv)`), its own o_proj columns, the norms' gains (Gemma: 1 + w,
    and its post-attention norm); the RMS scales are left out on both sides."""
    from transformers import AutoModelForCausalLM

    model = models[family]
    _, heads, kv = FAMILIES[family]
    hf = AutoModelForCausalLM.from_pretrained(str(folders[family]), attn_implementation="eager").double()
    gemma = family == "gemma3"
    layer, d = 1, 8
    block = hf.model.layers[layer]

    def gain(norm):
        return (1 + norm.weight) if gemma else norm.weight

    tokens = torch.tensor([3, 7, 11, 200])
    for head in range(heads):
        group = head // (heads // kv)
        w_v = block.self_attn.v_proj.weight[group * d : (group + 1) * d]  # [d_head, d_model]
        w_o = block.self_attn.o_proj.weight[:, head * d : (head + 1) * d]  # [d_model, d_head]
        x = hf.model.embed_tokens.weight[tokens] * gain(block.input_layernorm)
        u = x @ w_v.T @ w_o.T
        if gemma:
            u = u * gain(block.post_attention_layernorm)
        ref = (u * gain(hf.model.norm)) @ hf.lm_head.weight.T
        got = R.ov_logits(model, layer, head, tokens)
        torch.testing.assert_close(got, ref.detach(), rtol=1e-9, atol=1e-9)


def test_kv_head_groups_consecutive_query_heads():
    assert [R.kv_head(h, 6, 2) for h in range(6)] == [0, 0, 0, 1, 1, 1]
    assert [R.kv_head(h, 4, 1) for h in range(4)] == [0, 0, 0, 0]
    assert [R.kv_head(h, 3, 3) for h in range(3)] == [0, 1, 2]
    with pytest.raises(R.RolesError, match="6 query heads do not split into 4 key/value groups"):
        R.kv_head(0, 6, 4)


def test_roles_with_grouped_values_by_hand(tmp_path):
    """A hand-built Llama with 4 query heads in 2 key/value groups, tied orthonormal embeddings,
    d_head = d_model and unit gains: group 0's values are zero, group 1's are the identity, every
    W_O[h] the identity. So heads 2 and 3 (group 1) copy every token (score 1) and heads 0 and 1
    copy none (their rows are all zero; ties count against): reading W_V[h] instead of its group
    would fail (no value head 2), and grouping heads 0, 2 / 1, 3 would swap heads 1 and 2."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.conftest import make_word_tokenizer

    tok = make_word_tokenizer()
    vocab, d = len(tok), 32
    config = LlamaConfig(
        num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, hidden_size=d, head_dim=d,
        intermediate_size=8, vocab_size=vocab, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0,
        max_position_embeddings=64,
    )  # fmt: skip
    hf = LlamaForCausalLM(config)
    with torch.no_grad():
        for p in hf.parameters():
            p.zero_()
        for norm in (hf.model.layers[0].input_layernorm, hf.model.norm):
            norm.weight.fill_(1.0)
        hf.model.embed_tokens.weight.copy_(torch.eye(d)[:vocab])  # orthonormal rows
        attn = hf.model.layers[0].self_attn
        attn.v_proj.weight[d:].copy_(torch.eye(d))  # group 1 only
        attn.o_proj.weight.copy_(torch.eye(d).repeat(1, 4))  # W_O[h] = I for every head
    hf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model = load_model(str(tmp_path), device="cpu")
    scores = R.role_scores(model, n_seqs=2, seq_len=5, n_tokens=vocab)
    assert scores.role("copy")[0].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert scores.role("copy_suppression")[0].tolist() == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("src_family, tgt_family", [("llama3", "qwen2.5"), ("llama3", "gemma3")])
def test_depth_and_role_baselines_across_families(src_family, tgt_family, models):
    """A Llama source and a Qwen or Gemma target: both baselines give every target node a score
    from the source's, input kept at 1; role alignment reads both models' role profiles (grouped
    keys/values on both sides)."""
    from dfa.methods import depth_scores, role_scores

    src, tgt = models[src_family], models[tgt_family]
    gs, gt = NodeGraph.from_model(src), NodeGraph.from_model(tgt)
    source = torch.linspace(-1, 1, len(gs.mapped))
    depth = depth_scores(gs, gt, source)
    profiles = [R.role_scores(m, n_seqs=2, seq_len=5, n_tokens=64).profile() for m in (src, tgt)]
    assert profiles[0].shape == (2 * 4, len(R.ROLES)) and profiles[1].shape == (2 * 4, len(R.ROLES))
    for assign in (False, True):
        role = role_scores(gs, gt, source, *profiles, assign=assign)
        assert role.shape == depth.shape == (len(gt),) and role[0] == depth[0] == 1
        assert torch.isfinite(role).all() and (role[1:] >= 0).all() and role[1:].max() > 0


@pytest.mark.parametrize("src, tgt", [("llama3", "qwen2.5"), ("smollm2", "gemma3")])
def test_two_epoch_map_training_across_families(src, tgt, folders, tmp_path):
    from dfa.config import make_config
    from dfa.core.mapping import AlignmentMap
    from dfa.training import train

    config = make_config(
        None,
        src=str(folders[src]),
        tgt=str(folders[tgt]),
        tasks=["sva"],
        n_src=8,
        n_train=16,
        n_val=8,
        batch_size=8,
        max_epochs=2,
        ig_steps=2,
        log_every_n_steps=1,
        out=str(tmp_path / "ck"),
        cache=str(tmp_path / "cache"),
    )
    start = time.perf_counter()
    run = train(config, progress=False)
    assert time.perf_counter() - start < 60
    amap, meta = AlignmentMap.load(run)
    assert meta["steps"] == 4 and [h["epoch"] for h in meta["val_history"]] == [0, 1, 2]
    assert amap.src_names == NodeGraph.from_names(amap.src_names).mapped_names
    _, heads, _ = FAMILIES[tgt]
    assert amap.W.shape == (2 * (FAMILIES[src][1] + 1), 2 * (heads + 1))


@pytest.mark.parametrize("family", FAMS)
def test_random_weights_of_each_family_are_seeded(family, monkeypatch):
    """`NAME:random` for a ladder of each family (its config shrunk, registered for the test): the
    same seed draws the same weights, another seed others; the stand-in tokenizer fits."""
    from dfa.core.ladders import LADDERS, LadderModel
    from dfa.zoo.spec import zoo_root
    from tests.families import TOKENIZER_FROM

    real = LADDERS[FAMILIES[family][0]]
    tiny = LadderModel(
        "tiny-" + real.name, real.family, real.hf_id, real.tokenizer, 0, tiny_config(family, 1966, 0, 0)
    )
    monkeypatch.setitem(LADDERS, tiny.name, tiny)
    tok = str(zoo_root() / TOKENIZER_FROM)
    a, b, c = (load_model(f"{tiny.name}:random", device="cpu", tokenizer=tok, seed=s) for s in (0, 0, 1))
    tokens = a.to_tokens("When Mary and John went to the store")
    with torch.no_grad():
        assert torch.equal(a(tokens), b(tokens)) and not torch.allclose(a(tokens), c(tokens))
    assert a.dfa_info.source == "random:0" and a.cfg.n_heads == FAMILIES[family][1]
