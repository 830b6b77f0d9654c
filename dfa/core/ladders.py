"""The model ladders dfa knows by name: hub ids, tokenizers, published sizes and real configs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

Family = Literal["gpt2", "pythia"]

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
    def d_model(self) -> int:
        return int(self.config.get("n_embd", self.config.get("hidden_size", 0)))

    @property
    def n_nodes(self) -> int:
        """Nodes of the graph: `input` + every head + every MLP."""
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


# Published totals: GPT-2 as counted by HF for the released weights (tied embeddings counted
# once); Pythia from the Pythia paper's table (untied embed_in / embed_out both counted).
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
    ]
}

_STEP_RE = re.compile(r"^step(\d+)$")


def parse_step(revision: str) -> int | None:
    """The training step of a `step{N}` revision name, or None if it is not of that form."""
    match = _STEP_RE.match(revision)
    return int(match.group(1)) if match else None
