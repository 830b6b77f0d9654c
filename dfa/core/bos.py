"""The token every prompt starts with.

dfa prepends the tokenizer's BOS to every prompt, the start of a document. A chat-tuned tokenizer
may name as its BOS the token that opens each chat turn instead (SmolLM2-Instruct's
`<|im_start|>`), so that a plain-text prompt would begin like a chat turn with no role. Where dfa
ships such a model (`dfa.core.real.REAL_MODELS`, its `bos`), it pins the document separator the
model was pretrained with and sets it on the loaded tokenizer; for any other model whose BOS opens
every chat turn it warns, naming the way out.

`set_prompt_bos` sets the token on a tokenizer (called by `dfa.core.models.load_model` and
`tokenizer_for`); the pinned token of a real model is `RealModel.bos`; `opens_chat_turns` tells a
BOS that opens every chat turn. A pinned token is part of the model's cache name
(`dfa.store.cache_name`).
"""

from __future__ import annotations

import warnings
from typing import Any

from dfa.core.hub import ModelLoadError
from dfa.core.real import REAL_MODELS


class PromptBosWarning(UserWarning):
    """A tokenizer's BOS opens every chat turn; prompts will start with it."""


def pinned_bos(name: str) -> str | None:
    """The first token dfa pins for a model name (a real model's `bos`), else None."""
    model = REAL_MODELS.get(name)
    return model.bos if model is not None else None


def opens_chat_turns(tokenizer: Any) -> bool:
    """Whether the tokenizer's BOS opens each turn of its chat template: rendered for a two-turn
    chat, the BOS text appears at least twice."""
    bos = getattr(tokenizer, "bos_token", None)
    if not bos or not getattr(tokenizer, "chat_template", None):
        return False
    from jinja2 import TemplateError

    chat = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    try:
        text = tokenizer.apply_chat_template(chat, tokenize=False)
    except (TemplateError, ValueError, TypeError, KeyError):  # a template that wants other fields
        return False
    return isinstance(text, str) and text.count(bos) >= 2


def set_prompt_bos(name: str, tokenizer: Any) -> Any:
    """Set the pinned first token of `name` on `tokenizer` (checked to be one token of its
    vocabulary); else warn when its BOS opens every chat turn. Returns the tokenizer."""
    pinned = pinned_bos(name)
    if pinned is not None:
        if pinned not in tokenizer.get_vocab():
            raise ModelLoadError(
                f"{name}: dfa starts its prompts with {pinned!r}, which its tokenizer does not hold as "
                "one token. The converted folder does not match the pinned model: fetch it again "
                f"(`{REAL_MODELS[name].fetch_command} --force`)."
            )
        tokenizer.bos_token = pinned
    elif opens_chat_turns(tokenizer):
        warnings.warn(
            f"{name}: its tokenizer's BOS {tokenizer.bos_token!r} opens every chat turn, and dfa starts "
            "every plain-text prompt with it. Where the model was pretrained with another document "
            "separator, load it from a local folder whose tokenizer_config.json names that token as "
            "`bos_token` (or give such a tokenizer where a command takes --tokenizer).",
            PromptBosWarning,
            stacklevel=3,
        )
    return tokenizer
