"""Head roles: the scoring functions on hand-built patterns and OV rows, a hand-wired GPT-2 whose
heads have known roles, real toy models, and the cache."""

from __future__ import annotations

import itertools

import pytest
import torch

from dfa.core import roles as R
from dfa.core.errors import DfaError
from dfa.core.graph import NodeGraph
from dfa.core.roles import ROLES, RoleScores, attention_role_scores, ov_role_scores
from tests.conftest import make_word_tokenizer, require_tokenizer

L = 6  # repeated-sequence length in the hand-built patterns
START = 1  # a BOS position before the two copies
N_POS = START + 2 * L


def _pattern(target) -> torch.Tensor:
    """[1, 1, q, k]: query q attends fully to key target(q) (itself when None or out of range)."""
    p = torch.zeros(1, 1, N_POS, N_POS)
    for q in range(N_POS):
        k = target(q)
        p[0, 0, q, k if k is not None and 0 <= k <= q else q] = 1.0
    return p


def _scores(pattern: torch.Tensor) -> dict[str, float]:
    return {k: float(v[0]) for k, v in attention_role_scores(pattern, L, START).items()}


def test_previous_token_pattern():
    s = _scores(_pattern(lambda q: q - 1))
    assert s["previous_token"] == pytest.approx(1.0)
    assert s["induction"] == 0.0 and s["duplicate_token"] == 0.0


def test_induction_pattern():
    # The second copy attends to the token after the previous occurrence; the first to BOS.
    s = _scores(_pattern(lambda q: q - L + 1 if q >= START + L else 0))
    assert s["induction"] == pytest.approx(1.0)
    assert s["previous_token"] == 0.0 and s["duplicate_token"] == 0.0


def test_duplicate_token_pattern():
    s = _scores(_pattern(lambda q: q - L if q >= START + L else 0))
    assert s["duplicate_token"] == pytest.approx(1.0)
    assert s["induction"] == 0.0 and s["previous_token"] == 0.0


def test_uniform_attention_is_low_on_every_role():
    causal = torch.tril(torch.ones(N_POS, N_POS))
    s = _scores((causal / causal.sum(-1, keepdim=True))[None, None])
    second = torch.arange(START + L, START + 2 * L)
    expected = (1.0 / (second + 1)).mean().item()  # uniform over q + 1 keys
    assert s["induction"] == pytest.approx(expected) and s["duplicate_token"] == pytest.approx(expected)
    after_first = torch.arange(START + 1, N_POS)
    assert s["previous_token"] == pytest.approx((1.0 / (after_first + 1)).mean().item())
    assert max(s.values()) < 0.3


def test_heads_and_batch_are_scored_separately():
    prev, dup = _pattern(lambda q: q - 1), _pattern(lambda q: q - L if q >= START + L else 0)
    both = torch.cat([prev, dup], dim=1).expand(3, -1, -1, -1)
    s = attention_role_scores(both, L, START)
    assert s["previous_token"].tolist() == pytest.approx([1.0, 0.0])
    assert s["duplicate_token"].tolist() == pytest.approx([0.0, 1.0])


def test_bad_pattern_shapes_are_refused():
    with pytest.raises(R.RolesError, match="positions"):
        attention_role_scores(torch.zeros(1, 1, N_POS + 1, N_POS + 1), L, START)
    with pytest.raises(R.RolesError, match="at least 3"):
        attention_role_scores(torch.zeros(1, 1, 5, 5), 2, START)


# --- OV rows --------------------------------------------------------------------------------------
VOCAB = 40


def test_identity_ov_copies_and_negative_identity_suppresses():
    tokens = torch.arange(VOCAB)
    eye = torch.eye(VOCAB)
    s = ov_role_scores(torch.stack([eye, -eye, torch.zeros(VOCAB, VOCAB)]), tokens)
    assert s["copy"].tolist() == [1.0, 0.0, 0.0]
    assert s["copy_suppression"].tolist() == [0.0, 1.0, 0.0]  # a constant row does neither
    assert s["successor"].tolist() == [0.0, 0.0, 0.0]  # no ordinal pairs: 0 by definition


def test_rows_of_a_sample_and_top_k():
    tokens = torch.tensor([3, 7, 11])
    rows = torch.zeros(3, VOCAB)
    rows[0, 3] = 1.0  # token 3 first: copied
    rows[1, :5] = 2.0  # token 7 sixth: outside the top 5
    rows[1, 7] = 1.0
    rows[2, :4] = 2.0  # token 11 fifth: inside
    rows[2, 11] = 1.0
    assert ov_role_scores(rows[None], tokens)["copy"].item() == pytest.approx(2 / 3)
    assert ov_role_scores(rows[None], tokens, k=6)["copy"].item() == 1.0
    mask = torch.tensor([True, False, False])
    assert ov_role_scores(rows[None], tokens, copy_rows=mask)["copy"].item() == 1.0


def test_shift_by_one_ov_is_a_successor_and_not_a_copier():
    items = list(range(10, 22))  # an ordinal list of 12 token ids
    pairs = list(itertools.pairwise(items))
    tokens = torch.arange(VOCAB)
    rows = torch.zeros(VOCAB, VOCAB)
    for a, b in pairs:
        rows[a, b] = 5.0
    s = ov_role_scores(rows[None], tokens, pairs, copy_rows=torch.isin(tokens, torch.tensor(items[:-1])))
    assert s["successor"].item() == 1.0
    assert s["copy"].item() == 0.0  # the own logit ties with 38 others at 0: ranked last
    # The token's own logit is left out of the successor's ranking, not out of the copy's.
    rows[10, 10] = 9.0
    assert ov_role_scores(rows[None], tokens, [(10, 11)])["successor"].item() == 1.0
    assert ov_role_scores(rows[None], tokens, copy_rows=tokens == 10)["copy"].item() == 1.0
    rows[10, 12] = 9.0  # ... but another token ranked above the successor is not
    assert ov_role_scores(rows[None], tokens, [(10, 11)])["successor"].item() == 0.0
    with pytest.raises(R.RolesError, match="no OV row"):
        ov_role_scores(rows[None, :5], tokens[:5], [(10, 11)])


@pytest.mark.parametrize("name", ["gpt2", "gpt-neox-20b"])
def test_successor_pairs_of_real_tokenizers(name):
    from dfa.core.models import load_tokenizer

    tok = load_tokenizer(require_tokenizer(name))
    pairs, counts = R.successor_pairs(tok, len(tok))
    assert counts == {"numbers": 99, "days": 6, "months": 11, "total": 116}
    one, two, jan, feb = (
        tok.encode(w, add_special_tokens=False)[0] for w in (" 1", " 2", " January", " February")
    )
    assert pairs[0] == (one, two) and (jan, feb) in pairs
    assert len(R.candidate_tokens(tok, len(tok) + 30)) == len(tok) - len(set(tok.all_special_ids))


# --- a hand-wired GPT-2 ---------------------------------------------------------------------------
# d_model 128: dims 0-31 code the position, 32-49 the token, 64-81 the previous token (written by
# a0.h0). MLPs and biases are 0, LayerNorms plain. Roles: a0.h0 previous-token (OV to the
# previous-token dims, which the unembedding does not read), a0.h1 uniform with zero OV,
# a1.h0 induction with an identity OV, a1.h1 duplicate-token with a negative identity OV (both rest
# on BOS where nothing matches).
POS, TOK, PREV, D, DH = 0, 32, 64, 128, 64
WIRED_L = 6


def _wired_gpt2(folder):
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = make_word_tokenizer()
    vocab = len(tokenizer)
    config = GPT2Config(
        n_layer=2, n_head=2, n_embd=D, n_positions=32, vocab_size=vocab, bos_token_id=0, eos_token_id=0
    )
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for name, p in model.named_parameters():
            if ("ln" in name) and name.endswith("weight"):
                p.fill_(1.0)
        tr = model.transformer
        tr.wte.weight[torch.arange(vocab), TOK + torch.arange(vocab)] = 1.0
        tr.wpe.weight[torch.arange(32), POS + torch.arange(32)] = 1.0

        def qkv(layer, head):  # Conv1D [in, out]: q, k, v blocks of D columns, heads of DH
            w = tr.h[layer].attn.c_attn.weight
            return [w[:, part * D + head * DH : part * D + (head + 1) * DH] for part in range(3)]

        def out(layer, head):
            return tr.h[layer].attn.c_proj.weight[head * DH : (head + 1) * DH]

        t, p, p32 = torch.arange(vocab), torch.arange(31), torch.arange(32)

        def bos_default(q, k):  # with no match, a layer-1 head rests on BOS (head dim 63)
            q[POS + p32, DH - 1] = 1.5
            k[TOK + 0, DH - 1] = 1.5

        q, k, v = qkv(0, 0)  # previous token: position i queries position i - 1
        q[POS + p, p] = 2.0
        k[POS + p, p + 1] = 2.0
        v[TOK + t, t] = 1.0
        out(0, 0)[t, PREV + t] = 0.125
        q, k, v = qkv(1, 0)  # induction: current token queries the previous-token code
        q[TOK + t, t] = 3.0
        k[PREV + t, t] = 3.0
        v[TOK + t, t] = 1.0
        out(1, 0)[t, TOK + t] = 1.0
        bos_default(q, k)
        q, k, v = qkv(1, 1)  # duplicate token: same token, not the same position
        q[TOK + t, t] = 3.0
        k[TOK + t, t] = 3.0
        q[POS + p32, 20 + p32] = 3.0
        k[POS + p32, 20 + p32] = -3.0
        v[TOK + t, t] = 1.0
        out(1, 1)[t, TOK + t] = -1.0
        bos_default(q, k)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def wired(tmp_path_factory):
    from dfa.core.models import load_model

    return load_model(str(_wired_gpt2(tmp_path_factory.mktemp("wired") / "wired-gpt2")), device="cpu")


def test_hand_wired_heads_get_their_roles(wired):
    r = R.role_scores(wired, n_seqs=8, seq_len=WIRED_L, seed=0)
    assert r.meta["seq_len"] == WIRED_L and r.meta["bos"] is True
    s = {role: r.role(role) for role in ROLES}
    wired_heads = {"previous_token": (0, 0), "induction": (1, 0), "duplicate_token": (1, 1)}
    for role, expected in wired_heads.items():
        assert s[role][expected] > 0.99, role
        for head in wired_heads.values():
            if head != expected:
                assert s[role][head] < 0.02, (role, head)
    # a0.h1 has zero queries and keys: exactly uniform causal attention.
    second = torch.arange(1 + WIRED_L, 1 + 2 * WIRED_L)
    assert s["induction"][0, 1] == pytest.approx((1 / (second + 1)).mean().item(), abs=1e-5)
    assert s["duplicate_token"][0, 1] == pytest.approx((1 / (second + 1)).mean().item(), abs=1e-5)
    assert s["copy"].tolist() == [[0.0, 0.0], [1.0, 0.0]]
    assert s["copy_suppression"].tolist() == [[0.0, 0.0], [0.0, 1.0]]
    # The word tokenizer knows no numbers, days or months: no successor pair, score 0.
    assert r.meta["successor_pairs"]["total"] == 0
    assert s["successor"].abs().sum() == 0.0
    census = r.census(0.5)
    assert [h.name for h in census["previous_token"]] == ["a0.h0"]
    assert [h.name for h in census["induction"]] == ["a1.h0"]
    assert [(h.name, h.depth) for h in census["copy_suppression"]] == [("a1.h1", 0.75)]


# --- real toy models ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy():
    from dfa.core.models import load_model

    try:
        return load_model("toy-gpt2-s", device="cpu")
    except (DfaError, OSError) as err:  # a checkout without the shipped ladders
        pytest.skip(f"toy-gpt2-s not loadable here: {err}")


def test_toy_model_scores_are_in_range_and_deterministic(toy):
    a = R.role_scores(toy, n_seqs=4, seq_len=8, n_tokens=64, seed=3)
    b = R.role_scores(toy, n_seqs=4, seq_len=8, n_tokens=64, seed=3)
    c = R.role_scores(toy, n_seqs=4, seq_len=8, n_tokens=64, seed=4)
    assert a.scores.shape == (toy.cfg.n_layers, toy.cfg.n_heads, len(ROLES))
    assert ((a.scores >= 0) & (a.scores <= 1)).all()
    assert torch.equal(a.scores, b.scores) and not torch.equal(a.scores, c.scores)
    assert a.model == "toy-gpt2-s"
    # The toy tokenizer has " 1" ... " 100", the days and the months as single tokens.
    assert a.meta["successor_pairs"] == {"numbers": 99, "days": 6, "months": 11, "total": 116}


def test_bridge_weights_reproduce_the_forward_pass(tiny_folders, tiny_model):
    """The per-head W_V, W_O and W_U that the OV rows use are the ones the model runs with, for
    GPT-2 and for GPT-NeoX's fused, head-interleaved QKV: rebuild layer 1's per-head outputs from
    its LayerNorm output and attention pattern, and the logits from the final LayerNorm, and
    compare with the plain HF model's logits."""
    from transformers import AutoModelForCausalLM

    from dfa.core.interventions import capture

    layer = 1
    tokens = torch.tensor([[0, 3, 5, 7, 3, 5, 9, 2]])
    hooks = [f"blocks.{layer}.ln1.hook_out", f"blocks.{layer}.attn.hook_pattern"]
    hooks += [f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.hook_attn_out", "ln_final.hook_out"]
    logits, c = capture(tiny_model, tokens, hooks)
    x, pattern, z, attn_out, final = (c[h] for h in hooks)
    attn = tiny_model.blocks[layer].attn
    v = torch.einsum("bpd,hde->bphe", x, attn.W_V) + attn.b_V
    assert torch.allclose(torch.einsum("bhqk,bkhe->bqhe", pattern, v), z, atol=1e-5)
    assert torch.allclose(torch.einsum("bqhe,hed->bqd", z, attn.W_O) + attn.b_O, attn_out, atol=1e-5)
    b_u = tiny_model.b_U if tiny_model.b_U is not None else 0.0
    assert torch.allclose(final @ tiny_model.W_U + b_u, logits, atol=1e-5)
    arch = "neox" if "NeoX" in type(tiny_model.original_model).__name__ else "gpt2"
    hf = AutoModelForCausalLM.from_pretrained(str(tiny_folders[arch]), attn_implementation="eager")
    with torch.no_grad():
        assert torch.allclose(hf(tokens).logits, logits, atol=1e-5)


def test_ov_rows_are_the_heads_direct_effect_of_a_token(tiny_folders):
    """GPT-NeoX is rotary, so layer 0 reads the bare token embedding: on a sequence of one token
    repeated, every head's output is that token's OV output whatever it attends to. With the
    biases zeroed (the OV rows leave them out), the row must equal the head's real output sent
    through the final LayerNorm (centring and gain, its scale frozen) and the unembedding, up to
    a positive factor (the LayerNorm scales)."""
    from dfa.core.interventions import capture
    from dfa.core.models import load_model

    model = load_model(str(tiny_folders["neox"]), device="cpu")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
    token = 5
    _, c = capture(model, torch.full((1, 4), token), ["blocks.0.attn.hook_z"])
    for head in range(model.cfg.n_heads):
        out = c["blocks.0.attn.hook_z"][0, -1, head] @ model.blocks[0].attn.W_O[head]
        ref = ((out - out.mean()) * model.ln_final.w) @ model.W_U
        row = R.ov_logits(model, 0, head, torch.tensor([token]))[0]
        ratio = ref / row
        assert ratio.min() > 0 and torch.allclose(ratio, ratio.mean().expand_as(ratio), rtol=1e-3)


# --- saving and caching ---------------------------------------------------------------------------
def _fake(seed: int = 0) -> RoleScores:
    g = torch.Generator().manual_seed(seed)
    return RoleScores(
        "toy-x", torch.rand(3, 2, len(ROLES), generator=g), {"version": R.VERSION, "seed": seed}
    )


def test_profile_is_in_graph_head_order_and_census_thresholds():
    r = _fake()
    graph = NodeGraph(3, 2)
    prof = r.profile()
    assert prof.shape == (len(graph.heads), len(ROLES))
    for row, node in zip(prof, graph.heads, strict=True):
        assert torch.equal(row, r.scores[node.layer, node.head])
    census = r.census(0.5)
    for i, role in enumerate(ROLES):
        names = {h.name for h in census[role]}
        assert names == {n.name for n, s in zip(graph.heads, prof[:, i].tolist(), strict=True) if s > 0.5}
        assert [h.score for h in census[role]] == sorted((h.score for h in census[role]), reverse=True)
    depths = {h.name: h.depth for hs in census.values() for h in hs}
    assert all(depths[n] == graph.node(n).depth for n in depths)
    with pytest.raises(R.RolesError, match="Unknown role"):
        r.role("name_mover")


def test_save_load_round_trip(tmp_path):
    r = _fake()
    back = RoleScores.load(r.save(tmp_path / "r.safetensors"))
    assert back.model == "toy-x" and back.meta == r.meta
    assert torch.equal(back.scores, r.scores)
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(R.RolesError, match="not a dfa role-scores file"):
        RoleScores.load(tmp_path / "bad.safetensors")


def test_cached_roles_computes_once_then_loads(tmp_path, monkeypatch):
    from dfa import store

    calls = []

    def fake_scores(model, seed=0, **kw):
        calls.append(seed)
        return _fake(seed)

    class Pool:
        def __init__(self, allowed: bool):
            self.allowed = allowed

        def get(self, name, seed=0):
            if not self.allowed:
                raise AssertionError("the model must not load when the roles are cached")
            return object()

    monkeypatch.setattr(store, "role_scores", fake_scores)
    first = store.cached_roles(Pool(True), tmp_path, "org/toy x", seed=2)
    path = tmp_path / "roles" / "org_toy_x__s2.safetensors"
    assert path.is_file() and calls == [2] and first.model == "org/toy x"
    again = store.cached_roles(Pool(False), tmp_path, "org/toy x", seed=2)
    assert calls == [2] and torch.equal(again.scores, first.scores)
    # A file of another definition version is recomputed.
    stale = RoleScores("org/toy x", first.scores, {**first.meta, "version": R.VERSION - 1})
    stale.save(path)
    store.cached_roles(Pool(True), tmp_path, "org/toy x", seed=2)
    assert calls == [2, 2]


# --- role-based alignment (dfa.methods) ---------------------------------------------------------
def test_role_alignment_follows_roles_not_head_indices():
    from dfa.core.alignment import depth_matrix, role_matrix
    from dfa.methods import role_scores

    src, tgt = NodeGraph(1, 2), NodeGraph(2, 2)  # mapped: a0.h0 a0.h1 m0 | a0.h0 a0.h1 m0 a1.h0 a1.h1 m1
    induction, previous = [0.9, 0, 0, 0, 0, 0], [0, 0.9, 0, 0, 0, 0]
    P = torch.tensor([induction, previous])
    Q = torch.tensor([previous, [0.0] * 6, [0.0] * 6, induction])  # target a1.h1 is the induction head
    R = role_matrix(P, Q, src, tgt)
    # Source induction head -> target a1.h1 (column 4), source previous-token head -> a0.h0.
    assert R[0, 4] == pytest.approx(1.0) and R[1, 0] == pytest.approx(1.0)
    assert R[0, 0] == pytest.approx(0.0, abs=1e-30) and R[1, 4] == pytest.approx(0.0, abs=1e-30)
    # Role-less target heads are as far from both: split evenly. MLPs follow relative depth.
    assert R[0, 1] == pytest.approx(0.5) and R[1, 3] == pytest.approx(0.5)
    mlp_rows, mlp_cols = [2], [2, 5]
    assert torch.equal(R[mlp_rows][:, mlp_cols], depth_matrix(src, tgt)[mlp_rows][:, mlp_cols])
    assert torch.allclose(R.sum(0), torch.ones(6, dtype=R.dtype))
    A = role_matrix(P, Q, src, tgt, assign=True)  # one-to-one: each source node to one target node
    assert A.tolist() == [[0, 0, 0, 0, 1, 0], [1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]]
    scores = role_scores(src, tgt, torch.tensor([-4.0, 2.0, 1.0]), P, Q, assign=True)
    assert scores.tolist() == [1.0, 0.5, 0.0, 0.25, 0.0, 1.0, 0.0]  # input, then |s|/max|s| moved
    with pytest.raises(ValueError, match="Role profiles of 2 and 3 heads"):
        role_matrix(P, Q[:3], src, tgt)
