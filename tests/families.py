"""Tiny random models of each modern family, built from the ladder's real config with only the sizes
shrunk (2 layers, a few heads, grouped keys/values where the family has them), saved as HF folders
with the toy ladders' tokenizer so that the tasks make usable prompts for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dfa.core.ladders import LADDERS
from dfa.zoo.spec import zoo_root

TOKENIZER_FROM = "toy-gpt2-s"
# family -> (a ladder whose config is shrunk, query heads, key/value heads)
FAMILIES: dict[str, tuple[str, int, int]] = {
    "llama3": ("llama-3.2-1b", 4, 2),
    "qwen2.5": ("qwen2.5-0.5b", 4, 2),
    "gemma3": ("gemma-3-270m", 4, 1),
    "smollm2": ("smollm2-135m", 6, 2),
}
D_HEAD = 8


def tiny_config(family: str, vocab: int, bos: int, eos: int, **extra: Any) -> dict[str, Any]:
    """The ladder's config.json fields with the shape shrunk to 2 layers of `D_HEAD`-wide heads."""
    ladder, heads, kv = FAMILIES[family]
    cfg = dict(LADDERS[ladder].config)
    cfg.update(
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        hidden_size=heads * D_HEAD,
        head_dim=D_HEAD,
        intermediate_size=4 * heads * D_HEAD,
        vocab_size=vocab,
        max_position_embeddings=128,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    if family == "llama3":  # the llama3 rope scaling, at this context length
        cfg["rope_scaling"] = {**cfg["rope_scaling"], "original_max_position_embeddings": 64}
    if family == "gemma3":
        cfg.update(
            layer_types=["sliding_attention", "full_attention"],
            sliding_window=8,
            query_pre_attn_scalar=D_HEAD,
        )
    cfg.update(extra)
    return cfg


def save_family(folder: Path, family: str, seed: int = 0, **extra: Any) -> Path:
    """A tiny random model of `family` in `folder`, with norm gains and biases perturbed so that every
    term of the forward pass is seen (random init leaves them at 1/0)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok_dir = zoo_root() / TOKENIZER_FROM
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    eos = tok.eos_token_id if tok.eos_token_id is not None else 0
    bos = tok.bos_token_id if tok.bos_token_id is not None else eos
    config = AutoConfig.for_model(**tiny_config(family, len(tok), bos, eos, **extra))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    # Saved by the loaded tokenizer, so that its class is recorded: without it, AutoTokenizer would
    # pick the family's own class (Qwen2Tokenizer), which reads this toy tokenizer differently.
    tok.save_pretrained(folder)
    return folder
