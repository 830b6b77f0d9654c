"""The model ladders dfa knows by name: hub ids, tokenizers, published sizes and real configs.

The ladders: GPT-2, Pythia, Llama-3, Qwen2.5, Gemma-3 and SmolLM2, all in `LADDERS`; `MODERN` names
the four grouped-query families.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

Family = Literal["gpt2", "pythia", "llama3", "qwen2.5", "gemma3", "smollm2"]

# The HF config.json fields of the released checkpoints that decide the architecture. Fields
# that only matter for training (dropout) or the hub (architectures, torch_dtype) are left to
# the config classes' defaults, except where a default differs from the release.
_GPT2_BASE: dict[str, Any] = {
    "model_type": "gpt2",
    "vocab_size": 50257,
    "n_positions": 1024,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
    "tie_word_embeddings": True,
}
_PYTHIA_BASE: dict[str, Any] = {
    "model_type": "gpt_neox",
    "vocab_size": 50304,  # the 50277-token tokenizer padded to a multiple of 128
    "max_position_embeddings": 2048,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "rotary_pct": 0.25,
    "rotary_emb_base": 10000,
    "use_parallel_residual": True,
    "tie_word_embeddings": False,
    "attention_dropout": 0.0,
    "hidden_dropout": 0.0,
    "bos_token_id": 0,
    "eos_token_id": 0,
}

# The modern families below are written from each release's config.json on the hub
# (https://huggingface.co/<hf_id>/blob/main/config.json; the hub is unreachable from where this was
# written), read through verbatim copies of those files kept in public GitHub repositories:
# Llama-3.2-1B in kevinstephano/thunder_model_blocks (hf_llama/llama_config.py), Llama-3.2-3B and
# Llama-3.1-8B in citsjtu2020/LLM-Prof (sglang/Model_Config.md); Qwen2.5-0.5B in a copy of its
# config.json (max_position_embeddings 32768, sliding window off), the 1.5B, 3B and 7B shapes in
# copies of Qwen2.5-1.5B-Instruct's config, Qwen2.5-Omni-3B's text config and Qwen2-7B's config
# (Retruth/deontic nlp_models/qwen2/README.md; Qwen2.5-7B has the same shape); Gemma-3-1b in
# Liwink/gemma-jax (models/README.md), the 270m shape (640 wide, 18 layers, 4 heads of 256, one
# key/value head, 2048 MLP) in ports that cite its config; SmolLM2-135M in satyasundar/erav3-s13
# (README.md), the 360M shape in ports citing HuggingFaceTB/SmolLM2-360M, SmolLM2-1.7B in copies
# of its config.json (rope_theta 130000, bos 1, eos 2). Every total below equals the parameter count
# of the model its config builds (tests/test_ladders.py); Gemma-3-1b's (999,885,952) also matches
# keras-hub's gemma3 presets.
_LLAMA3_BASE: dict[str, Any] = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 128256,
    "hidden_act": "silu",
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "attention_bias": False,
    "mlp_bias": False,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
}
_QWEN25_BASE: dict[str, Any] = {
    "model_type": "qwen2",  # q/k/v projections with biases, o_proj without
    "architectures": ["Qwen2ForCausalLM"],
    "vocab_size": 151936,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,  # 131072 for 7B
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "use_sliding_window": False,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
}
_GEMMA3_BASE: dict[str, Any] = {
    "model_type": "gemma3_text",
    "architectures": ["Gemma3ForCausalLM"],
    "vocab_size": 262144,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "query_pre_attn_scalar": 256,
    "rope_theta": 1000000.0,
    "rope_local_base_freq": 10000.0,
    "sliding_window": 512,
    "tie_word_embeddings": True,
    "attn_logit_softcapping": None,
    "final_logit_softcapping": None,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "pad_token_id": 0,
}
_SMOLLM2_BASE: dict[str, Any] = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 49152,
    "hidden_act": "silu",
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "attention_bias": False,
    "mlp_bias": False,
    "bos_token_id": 0,
    "eos_token_id": 0,
}

# Pythia saved these training steps (the hub revisions `step{N}`): 0, powers of two up to
# 512, then every 1000 steps up to 143000 (the final model, also on `main`).
PYTHIA_STEPS: tuple[int, ...] = (0, *(2**i for i in range(10)), *range(1000, 143001, 1000))


@dataclass(frozen=True)
class LadderModel:
    """One rung of a ladder: enough to fetch it from the hub or build it with random weights."""

    name: str
    family: Family
    hf_id: str
    tokenizer: str  # folder name under the shared tokenizers directory
    published_params: int  # total parameters as released (embeddings included)
    config: dict[str, Any] = field(repr=False)

    @property
    def n_layers(self) -> int:
        return int(self.config.get("n_layer", self.config.get("num_hidden_layers", 0)))

    @property
    def n_heads(self) -> int:
        return int(self.config.get("n_head", self.config.get("num_attention_heads", 0)))

    @property
    def n_kv_heads(self) -> int:
        """Key/value heads: fewer than the query heads under grouped-query attention."""
        return int(self.config.get("num_key_value_heads", self.n_heads))

    @property
    def d_model(self) -> int:
        return int(self.config.get("n_embd", self.config.get("hidden_size", 0)))

    @property
    def n_nodes(self) -> int:
        """Nodes of the graph: `input` + every (query) head + every MLP."""
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def has_checkpoints(self) -> bool:
        return self.family == "pythia"


def _gpt2(name: str, layers: int, heads: int, width: int, params: int) -> LadderModel:
    cfg = {**_GPT2_BASE, "n_layer": layers, "n_head": heads, "n_embd": width}
    return LadderModel(name, "gpt2", f"openai-community/{name}", "gpt2", params, cfg)


def _pythia(
    name: str, layers: int, heads: int, width: int, params: int, deduped: bool = True
) -> list[LadderModel]:
    cfg = {
        **_PYTHIA_BASE,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "hidden_size": width,
        "intermediate_size": 4 * width,
    }
    names = [name, f"{name}-deduped"] if deduped else [name]
    return [LadderModel(n, "pythia", f"EleutherAI/{n}", "gpt-neox-20b", params, cfg) for n in names]


def _shape(layers: int, heads: int, kv: int, width: int, mlp: int) -> dict[str, Any]:
    return {
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "hidden_size": width,
        "intermediate_size": mlp,
    }


def _llama3(name: str, hf: str, shape: dict[str, Any], params: int, **extra: Any) -> LadderModel:
    cfg = {**_LLAMA3_BASE, **shape, **extra}
    return LadderModel(name, "llama3", f"meta-llama/{hf}", "llama-3", params, cfg)


def _qwen25(name: str, hf: str, shape: dict[str, Any], params: int, **extra: Any) -> LadderModel:
    cfg = {**_QWEN25_BASE, **shape, "max_window_layers": shape["num_hidden_layers"], **extra}
    return LadderModel(name, "qwen2.5", f"Qwen/{hf}", "qwen2.5", params, cfg)


def _gemma3(name: str, shape: dict[str, Any], params: int) -> LadderModel:
    # Five sliding-window layers, then one global layer, repeated ("sliding_window_pattern": 6).
    n = shape["num_hidden_layers"]
    types = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(n)]
    cfg = {**_GEMMA3_BASE, **shape, "layer_types": types}
    return LadderModel(name, "gemma3", f"google/{name}", "gemma-3", params, cfg)


def _smollm2(
    name: str, hf: str, shape: dict[str, Any], params: int, rope_theta: float, **extra: Any
) -> LadderModel:
    cfg = {**_SMOLLM2_BASE, **shape, "rope_theta": rope_theta, **extra}
    return LadderModel(name, "smollm2", f"HuggingFaceTB/{hf}", "smollm2", params, cfg)


_LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 32.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}

MODERN: list[LadderModel] = [
    _llama3(
        "llama-3.2-1b",
        "Llama-3.2-1B",
        _shape(16, 32, 8, 2048, 8192),
        1_235_814_400,
        head_dim=64,
        tie_word_embeddings=True,
        rope_scaling=_LLAMA3_ROPE,
    ),
    _llama3(
        "llama-3.2-3b",
        "Llama-3.2-3B",
        _shape(28, 24, 8, 3072, 8192),
        3_212_749_824,
        head_dim=128,
        tie_word_embeddings=True,
        rope_scaling=_LLAMA3_ROPE,
    ),
    _llama3(
        "llama-3.1-8b",
        "Llama-3.1-8B",
        _shape(32, 32, 8, 4096, 14336),
        8_030_261_248,
        tie_word_embeddings=False,
        rope_scaling={**_LLAMA3_ROPE, "factor": 8.0},
    ),
    _qwen25(
        "qwen2.5-0.5b", "Qwen2.5-0.5B", _shape(24, 14, 2, 896, 4864), 494_032_768, tie_word_embeddings=True
    ),
    _qwen25(
        "qwen2.5-1.5b", "Qwen2.5-1.5B", _shape(28, 12, 2, 1536, 8960), 1_543_714_304, tie_word_embeddings=True
    ),
    _qwen25(
        "qwen2.5-3b", "Qwen2.5-3B", _shape(36, 16, 2, 2048, 11008), 3_085_938_688, tie_word_embeddings=True
    ),
    _qwen25(
        "qwen2.5-7b",
        "Qwen2.5-7B",
        _shape(28, 28, 4, 3584, 18944),
        7_615_616_512,
        tie_word_embeddings=False,
        vocab_size=152064,
        max_position_embeddings=131072,
    ),
    _gemma3("gemma-3-270m", _shape(18, 4, 1, 640, 2048), 268_098_176),
    _gemma3("gemma-3-1b", _shape(26, 4, 1, 1152, 6912), 999_885_952),
    _smollm2("smollm2-135m", "SmolLM2-135M", _shape(30, 9, 3, 576, 1536), 134_515_008, 100000.0),
    _smollm2("smollm2-360m", "SmolLM2-360M", _shape(32, 15, 5, 960, 2560), 361_821_120, 100000.0),
    _smollm2(
        "smollm2-1.7b",
        "SmolLM2-1.7B",
        _shape(24, 32, 32, 2048, 8192),
        1_711_376_384,
        130000.0,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    ),
]


# Published totals: GPT-2 as counted by HF for the released weights (tied embeddings counted
# once); Pythia from the Pythia paper's table (untied embed_in / embed_out both counted); the
# modern families as the hub reports for the released safetensors (tied embeddings once), which
# is also the count of the model each config builds.
LADDERS: dict[str, LadderModel] = {
    m.name: m
    for m in [
        _gpt2("gpt2", 12, 12, 768, 124_439_808),
        _gpt2("gpt2-medium", 24, 16, 1024, 354_823_168),
        _gpt2("gpt2-large", 36, 20, 1280, 774_030_080),
        _gpt2("gpt2-xl", 48, 25, 1600, 1_557_611_200),
        # pythia-14m was released later and without a deduplicated twin.
        *_pythia("pythia-14m", 6, 4, 128, 14_067_712, deduped=False),
        *_pythia("pythia-70m", 6, 8, 512, 70_426_624),
        *_pythia("pythia-160m", 12, 12, 768, 162_322_944),
        *_pythia("pythia-410m", 24, 16, 1024, 405_334_016),
        *_pythia("pythia-1b", 16, 8, 2048, 1_011_781_632),
        *_pythia("pythia-1.4b", 24, 16, 2048, 1_414_647_808),
        *_pythia("pythia-2.8b", 32, 32, 2560, 2_775_208_960),
        *MODERN,
    ]
}

_STEP_RE = re.compile(r"^step(\d+)$")


def parse_step(revision: str) -> int | None:
    """The training step of a `step{N}` revision name, or None if it is not of that form."""
    match = _STEP_RE.match(revision)
    return int(match.group(1)) if match else None
