"""The carried ladder configs build the released architectures (checked without allocating weights)."""

from __future__ import annotations

import pytest
import torch

from dfa import cli
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


def test_dfa_models_prints_both_ladders(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for name in LADDERS:
        assert f"  {name} " in out
    assert "gpt2-large                 36     20     1280    757    774.0M" in out
    assert "pythia-160m@step3000" in out and ":random" in out


def test_dfa_models_json(capsys):
    import json

    assert cli.main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["gpt2"]["n_nodes"] == 157 and rows["gpt2"]["checkpoints"] == []
    assert rows["pythia-160m"]["checkpoints"][-1] == "step143000"
