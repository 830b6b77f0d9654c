"""Local GGUF files: a tiny random Llama written to GGUF by the tests themselves (gguf's writer, the
layout llama.cpp uses), loaded back through transformers and the bridge; and the errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dfa.core.gguf import GgufError
from dfa.core.models import UnknownModelError, load_model, parse_spec

gguf = pytest.importorskip("gguf", reason="the gguf package reads and writes GGUF files (pip install gguf)")

LAYERS, HEADS, KV, D_HEAD = 2, 4, 2, 8
D = HEADS * D_HEAD


def _byte_tokens() -> list[str]:
    """A byte-level vocabulary without merges: one token per byte (GPT-2's byte-to-unicode
    spelling), then the end-of-text token that also serves as BOS."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return [bytes_to_unicode()[b] for b in range(256)] + ["<|endoftext|>"]


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    eos = len(_byte_tokens()) - 1
    config = LlamaConfig(
        num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV, hidden_size=D,
        intermediate_size=2 * D, vocab_size=eos + 1, max_position_embeddings=64, rms_norm_eps=1e-5,
        rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=eos, eos_token_id=eos,
    )  # fmt: skip
    torch.manual_seed(3)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _rope_interleave(w: torch.Tensor, n_heads: int) -> np.ndarray:
    """llama.cpp stores Q and K with each head's rotary halves interleaved (pairs side by side),
    where HF keeps the two halves apart; transformers undoes this when it reads a llama GGUF."""
    rows, cols = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols).numpy()


def write_llama_gguf(path: Path, model, arch: str = "llama") -> Path:
    c = model.config
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("dfa-tiny-llama")
    writer.add_block_count(c.num_hidden_layers)
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(c.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens = _byte_tokens()
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.NORMAL] * (len(tokens) - 1) + [gguf.TokenType.CONTROL])
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_merges([])
    writer.add_bos_token_id(len(tokens) - 1)
    writer.add_eos_token_id(len(tokens) - 1)
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"].numpy())
    writer.add_tensor("output_norm.weight", sd["model.norm.weight"].numpy())
    writer.add_tensor("output.weight", sd["lm_head.weight"].numpy())
    names = {
        "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
        "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
    }  # fmt: skip
    for i in range(c.num_hidden_layers):
        hf = f"model.layers.{i}."
        writer.add_tensor(
            f"blk.{i}.attn_q.weight", _rope_interleave(sd[hf + "self_attn.q_proj.weight"], HEADS)
        )
        writer.add_tensor(f"blk.{i}.attn_k.weight", _rope_interleave(sd[hf + "self_attn.k_proj.weight"], KV))
        for ours, theirs in names.items():
            writer.add_tensor(f"blk.{i}.{ours}.weight", sd[hf + theirs + ".weight"].numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = _tiny_llama()
    return model, write_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf", model)


def test_a_gguf_llama_loads_with_its_own_tokenizer_and_the_hf_logits(tiny):
    hf, path = tiny
    assert parse_spec(str(path)).kind == "gguf"
    bridge = load_model(str(path), device="cpu")
    assert (bridge.cfg.n_layers, bridge.cfg.n_heads, bridge.cfg.n_key_value_heads) == (LAYERS, HEADS, KV)
    assert bridge.dfa_info.n_params == sum(p.numel() for p in hf.parameters())
    tok = bridge.tokenizer
    assert tok.encode("Hi", add_special_tokens=False) == [_byte_tokens().index(ch) for ch in "Hi"]
    tokens = bridge.to_tokens("Mary went")
    assert tokens[0, 0].item() == 256 and tokens.shape[1] == 1 + len("Mary went")  # BOS + one per byte
    with torch.no_grad():
        torch.testing.assert_close(bridge(tokens), hf(tokens).logits, rtol=1e-5, atol=1e-5)


def test_a_gguf_is_cast_to_the_runs_dtype(tiny):
    _, path = tiny
    bridge = load_model(str(path), device="cpu", dtype="bfloat16")
    assert {p.dtype for p in bridge.original_model.parameters()} == {torch.bfloat16}


def test_gguf_errors_name_the_file_and_the_architecture(tmp_path, tiny):
    with pytest.raises(UnknownModelError, match="No such GGUF file: 'nowhere/x.gguf'"):
        parse_spec("nowhere/x.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all")
    with pytest.raises(GgufError, match=rf"{junk} is not a readable GGUF file"):
        load_model(str(junk), device="cpu")
    hf, _ = tiny
    odd = write_llama_gguf(tmp_path / "odd.gguf", hf, arch="nonesuch")
    with pytest.raises(GgufError) as err:
        load_model(str(odd), device="cpu")
    msg = str(err.value)
    assert f"transformers cannot read the GGUF file {odd} (architecture 'nonesuch')" in msg
    listed = msg.split("architectures ", 1)[1].split(";")[0].split(", ")
    assert {"llama", "qwen2", "gemma3"} <= set(listed) and "general" not in listed
