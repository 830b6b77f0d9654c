"""Shared fixtures: tiny GPT-2 and GPT-NeoX models saved as local HF folders, the shared tokenizers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dfa.core.models import shared_tokenizer_dir

ROOT = Path(__file__).resolve().parents[1]
WORDS = "Mary John went to the store gave a drink When and , . Alice Bob book park".split()


def make_word_tokenizer():
    """A whitespace word-level tokenizer small enough to build in a test, with one special
    token serving as BOS/EOS/UNK like GPT-2's `<|endoftext|>`."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, **{w: i + 1 for i, w in enumerate(WORDS)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )


def _save_tiny(folder: Path, arch: str) -> Path:
    from transformers import AutoModelForCausalLM, GPT2Config, GPTNeoXConfig

    vocab = len(WORDS) + 1
    if arch == "gpt2":
        config = GPT2Config(
            n_layer=2, n_head=3, n_embd=24, n_positions=32, vocab_size=vocab, bos_token_id=0, eos_token_id=0
        )
    else:
        config = GPTNeoXConfig(
            num_hidden_layers=2,
            num_attention_heads=3,
            hidden_size=24,
            intermediate_size=96,
            max_position_embeddings=32,
            vocab_size=vocab,
            rotary_pct=0.25,
            use_parallel_residual=True,
            tie_word_embeddings=False,
            bos_token_id=0,
            eos_token_id=0,
        )
    torch.manual_seed(1234)
    model = AutoModelForCausalLM.from_config(config)
    # Random init leaves biases and LayerNorm at 0/1; perturb them so the tests see every term.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "ln" in name or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(folder)
    make_word_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory) -> dict[str, Path]:
    """Tiny 2-layer, 3-head models of both architectures, each saved with its tokenizer."""
    root = tmp_path_factory.mktemp("tiny")
    return {arch: _save_tiny(root / f"tiny-{arch}", arch) for arch in ("gpt2", "neox")}


@pytest.fixture(scope="session")
def tiny_models(tiny_folders):
    from dfa.core.models import load_model

    return {arch: load_model(str(path), device="cpu") for arch, path in tiny_folders.items()}


@pytest.fixture(params=["gpt2", "neox"])
def tiny_model(request, tiny_models):
    return tiny_models[request.param]


def require_tokenizer(name: str) -> Path:
    path = shared_tokenizer_dir(name)
    if path is None:
        pytest.skip(
            f"the real {name} tokenizer is not here: set DFA_TOKENIZERS to a folder holding "
            f"{name}/tokenizer.json, or keep shared/tokenizers beside the checkout"
        )
    return path


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    """`python scripts/NAME ARGS...` from the repository root (the scripts wrap `dfa` commands)."""
    cmd = [sys.executable, str(ROOT / "scripts" / name), *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with pytest --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
