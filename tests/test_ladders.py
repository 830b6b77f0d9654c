"""The carried ladder configs build the released architectures (checked without allocating weights)."""

from __future__ import annotations

import pytest
import torch

from dfa.core.ladders import LADDERS


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
