"""Shared fixtures: tiny GPT-2 and GPT-NeoX models saved as local HF folders, the shared tokenizers."""

from __future__ import annotations

import atexit
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from dfa.core.hub import TOKENIZERS_ENV
from dfa.core.models import shared_tokenizer_dir

ROOT = Path(__file__).resolve().parents[1]

# The real tokenizers (shared/ beside the checkout, or $DFA_TOKENIZERS), found once; then hidden for
# the whole session ($DFA_TOKENIZERS, when set, is the only place dfa looks): every test runs as on a
# fresh clone, which has none, unless it asks for them through `real_tokenizers` or
# `require_tokenizer`, which skip where they are absent. A test that needs them without asking fails
# here too, not only on a fresh clone (tests/test_fresh_clone.py checks no test reaches them
# otherwise). DFA_TEST_FRESH_CLONE=1 hides them from those two as well (`.ci/run` runs the tests
# that ask for them so, marked `real_tokenizers`, to show that they skip).
FRESH_CLONE_ENV = "DFA_TEST_FRESH_CLONE"
REAL_TOKENIZERS: Path | None = (
    None
    if os.environ.get(FRESH_CLONE_ENV)
    else next((d.parent for d in map(shared_tokenizer_dir, ("gpt2", "gpt-neox-20b")) if d), None)
)
_HIDDEN = tempfile.mkdtemp(prefix="dfa-no-tokenizers-")
os.environ[TOKENIZERS_ENV] = _HIDDEN
atexit.register(shutil.rmtree, _HIDDEN, ignore_errors=True)
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
    """The folder of the real tokenizer `name` (gpt2, gpt-neox-20b), to load by path; the test skips,
    saying why, where it is not here (a fresh clone). A test that names a ladder model instead (the
    lookup by name) takes the `real_tokenizers` fixture."""
    path = None if REAL_TOKENIZERS is None else REAL_TOKENIZERS / name
    if path is None or not (path / "tokenizer.json").is_file():
        pytest.skip(
            f"the real {name} tokenizer is not here (a fresh clone): set {TOKENIZERS_ENV} to a folder "
            f"holding {name}/tokenizer.json, or keep shared/tokenizers beside the checkout"
        )
    return path


@pytest.fixture
def real_tokenizers(monkeypatch) -> Path:
    """The real tokenizers for this test and the processes it starts: `gpt2`, `pythia-70m`,
    `--tokenizer gpt2` resolve as they do for a user who has them; skips where they are absent."""
    path = require_tokenizer("gpt2").parent
    monkeypatch.setenv(TOKENIZERS_ENV, str(path))
    return path


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    """`python scripts/NAME ARGS...` from the repository root (the scripts wrap `dfa` commands)."""
    cmd = [sys.executable, str(ROOT / "scripts" / name), *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def _asks_for_tokenizers(item) -> bool:
    """The test, or a fixture it uses, takes `real_tokenizers` or calls `require_tokenizer`."""
    if "real_tokenizers" in getattr(item, "fixturenames", ()):
        return True
    funcs = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info else ()):
        funcs.extend(d.func for d in defs)
    for func in funcs:
        try:
            if func is not None and "require_tokenizer(" in inspect.getsource(func):
                return True
        except (OSError, TypeError):
            continue
    return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _asks_for_tokenizers(item):
            item.add_marker(pytest.mark.real_tokenizers)
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with pytest --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
