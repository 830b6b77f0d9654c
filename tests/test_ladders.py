"""The carried ladder configs build the released architectures (checked without allocating weights)."""

from __future__ import annotations

import pytest
import torch

from dfa.core.ladders import LADDERS, MODERN


@pytest.mark.parametrize("name", [n for n in LADDERS if not n.endswith("-deduped")])
def test_config_builds_published_size(name):
    from transformers import AutoConfig, AutoModelForCausalLM

    ladder = LADDERS[name]
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**ladder.config))
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - ladder.published_params) / ladder.published_params < 0.01
    assert model.config.num_hidden_layers == ladder.n_layers
    assert model.config.num_attention_heads == ladder.n_heads


def test_pythia_configs_are_rotary_and_parallel():
    from transformers import AutoConfig

    cfg = AutoConfig.for_model(**LADDERS["pythia-160m"].config)
    assert cfg.use_parallel_residual is True
    assert cfg.rope_parameters["partial_rotary_factor"] == 0.25
    assert cfg.rope_parameters["rope_theta"] == 10000


def test_deduped_twins_share_the_architecture():
    for name, m in LADDERS.items():
        if name.endswith("-deduped"):
            base = LADDERS[name.removesuffix("-deduped")]
            assert m.config == base.config and m.hf_id == base.hf_id + "-deduped"


def test_the_modern_ladders_are_the_papers_families():
    assert [m.name for m in MODERN] == [
        "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b",
        "qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b",
        "gemma-3-270m", "gemma-3-1b",
        "smollm2-135m", "smollm2-360m", "smollm2-1.7b",
    ]  # fmt: skip
    assert LADDERS["llama-3.1-8b"].hf_id == "meta-llama/Llama-3.1-8B"
    assert LADDERS["qwen2.5-7b"].hf_id == "Qwen/Qwen2.5-7B"
    assert LADDERS["gemma-3-270m"].hf_id == "google/gemma-3-270m"
    assert LADDERS["smollm2-1.7b"].hf_id == "HuggingFaceTB/SmolLM2-1.7B"


@pytest.mark.parametrize("ladder", MODERN, ids=lambda m: m.name)
def test_modern_configs_build_exactly_the_published_size(ladder):
    """The released totals (tied embeddings once) to the parameter, and the grouped heads: the
    key/value projections are n_kv_heads x head_dim wide, the query projection n_heads x head_dim."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from dfa.core.graph import NodeGraph

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**ladder.config))
    assert sum(p.numel() for p in model.parameters()) == ladder.published_params
    attn = model.model.layers[0].self_attn
    head_dim = getattr(model.config, "head_dim", None) or ladder.d_model // ladder.n_heads
    assert attn.q_proj.out_features == ladder.n_heads * head_dim
    assert attn.k_proj.out_features == attn.v_proj.out_features == ladder.n_kv_heads * head_dim
    assert ladder.n_heads % ladder.n_kv_heads == 0
    assert ladder.n_nodes == len(NodeGraph(ladder.n_layers, ladder.n_heads))
    assert type(model).__name__ == ladder.config["architectures"][0]


def test_gemma3_alternates_five_local_layers_and_one_global():
    types = LADDERS["gemma-3-1b"].config["layer_types"]
    assert len(types) == 26 and [i for i, t in enumerate(types) if t == "full_attention"] == [5, 11, 17, 23]
