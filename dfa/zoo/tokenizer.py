"""The toy ladders' own word-level tokenizer: GPT-2-like pieces, built from the task generators."""

from __future__ import annotations

import random
from collections.abc import Iterable

from dfa.core.tasks import FAMILIES, TASKS

# A piece is a newline, a number (" 100" to " 999" whole when no digit follows, so that sums up
# to 198 are one token; otherwise two digits at a time, so " 1732" is " 17" + "32" as in GPT-2),
# a contraction ("'s"), a word, or one punctuation mark; words and numbers keep their leading
# space like GPT-2's "Ġ" pieces, so " Paris" (an answer) and "Paris" are different tokens.
PATTERN = r"\n| ?[1-9]\d\d(?!\d)| ?\d{1,2}|'\p{Ll}+| ?\p{L}+| ?[^\s\p{L}\d]"
BOS = "<|endoftext|>"  # BOS, EOS and padding, as GPT-2's single special token
UNK = "<|unk|>"
NUMBERS = [f" {n}" for n in range(1000)] + [f"{n:02d}" for n in range(100)] + [str(n) for n in range(10)]


def _core(vocab: dict[str, int]):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(PATTERN), behavior="isolated")
    core.decoder = decoders.Fuse()  # pieces carry their own spaces
    return core


def pieces(texts: Iterable[str]) -> set[str]:
    splitter = _core({BOS: 0, UNK: 1}).pre_tokenizer
    out: set[str] = set()
    for text in texts:
        out.update(p for p, _ in splitter.pre_tokenize_str(text))
    return out


def task_texts(draws: int = 3000, seed: int = 0) -> Iterable[str]:
    """Every string the task generators produce in `draws` candidates per task and family
    (all splits: a vocabulary is not training data, and test prompts must not hit UNK)."""
    for task in TASKS.values():
        for family in FAMILIES:
            rng = random.Random(f"vocab\x00{task.name}\x00{family}\x00{seed}")
            for _ in range(draws):
                cand = task.families[family](rng, family)
                yield cand.clean
                yield cand.corrupt
                yield from cand.answers
                yield from cand.wrongs


def build_tokenizer(extra_texts: Iterable[str] = ()):
    """The `PreTrainedTokenizerFast`: special tokens first, then every piece sorted, so the ids
    depend only on the generators and the extra texts."""
    from transformers import PreTrainedTokenizerFast

    found = pieces(task_texts()) | pieces(extra_texts) | set(NUMBERS)
    vocab = {BOS: 0, UNK: 1}
    for piece in sorted(found):
        vocab.setdefault(piece, len(vocab))
    return PreTrainedTokenizerFast(
        tokenizer_object=_core(vocab),
        bos_token=BOS,
        eos_token=BOS,
        pad_token=BOS,
        unk_token=UNK,
        model_max_length=128,
    )
