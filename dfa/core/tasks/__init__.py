"""Circuit tasks that generate their own clean/corrupt pairs, per tokenizer, with no download."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dfa.core.tasks.base import (
    FAMILIES,
    SPLITS,
    Batch,
    Candidate,
    DatasetReport,
    Example,
    Split,
    Task,
    TaskDataset,
    TaskError,
    build_dataset,
    collate,
    split_of,
    survey,
)
from dfa.core.tasks.suite import TASKS

__all__ = [
    "FAMILIES",
    "SPLITS",
    "TASKS",
    "Batch",
    "Candidate",
    "DatasetReport",
    "Example",
    "Split",
    "Task",
    "TaskDataset",
    "TaskError",
    "build_dataset",
    "collate",
    "get_task",
    "make_batches",
    "make_dataset",
    "split_of",
    "survey",
]


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(TASKS), n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        raise TaskError(
            f"Unknown task {name!r}{hint}; the tasks are {', '.join(TASKS)} (`dfa tasks` lists them)."
        ) from None


def make_dataset(
    task: str,
    tokenizer: Any,
    size: int,
    split: Split = "train",
    seed: int = 0,
    families: Sequence[str] | None = None,
    allow_fewer: bool = False,
) -> TaskDataset:
    """`size` usable clean/corrupt pairs of `task` for `tokenizer` (a HF tokenizer, or a model
    whose `.tokenizer` is one), from `split` of the seed's disjoint train/val/test split
    (`allow_fewer`: up to `size`, for tasks with few distinct prompts)."""
    tok = getattr(tokenizer, "tokenizer", None) or tokenizer
    return build_dataset(get_task(task), tok, size, split, seed, families, allow_fewer=allow_fewer)


def make_batches(examples: Sequence[Example], tokenizer: Any, batch_size: int) -> list[Batch]:
    """`collate`d batches of `examples` with the BOS policy every dfa model runs with: the
    tokenizer's BOS first, its pad id (or 0) after each prompt. `tokenizer` may be a model."""
    tok = getattr(tokenizer, "tokenizer", None) or tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    return [
        collate(examples[i : i + batch_size], tok.bos_token_id, pad)
        for i in range(0, len(examples), batch_size)
    ]
