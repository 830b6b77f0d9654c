"""Circuit tasks: built-in generators of clean/corrupt pairs, or a file's pairs, per tokenizer.

Prompts come in batches (`Batch`, a `TypedDict`; training's own batches are
`dfa.training.data.TrainBatch`). `get_task` resolves any task name, a built-in or a task file
(`dfa.core.tasks.files`); `check_files` checks the task files among names against the models'
tokenizers before any model loads. Folders and cache files name a task by `task_label` (label +
sha256), results and `map.json` by `task_sources`.
"""

from __future__ import annotations

import hashlib
import re
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
    TaskSource,
    build_dataset,
    collate,
    split_of,
    survey,
)
from dfa.core.tasks.files import parse_task_name, read_task_file
from dfa.core.tasks.extended import EXTENDED, KINDS, kind_of
from dfa.core.tasks.suite import TASKS

# Every built-in task: the toy ladders' eight (`TASKS`) and the extended suite for real tokenizers.
BUILTIN = {**TASKS, **EXTENDED}

__all__ = [
    "BUILTIN",
    "EXTENDED",
    "FAMILIES",
    "KINDS",
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
    "TaskSource",
    "build_dataset",
    "check_files",
    "collate",
    "get_task",
    "kind_of",
    "make_batches",
    "make_dataset",
    "run_name",
    "split_of",
    "survey",
    "task_label",
    "task_sources",
]


def get_task(name: str) -> Task:
    """A built-in task by name, or the task a file holds (`[label=]path[#option]`, see
    `dfa.core.tasks.files`), read and checked once per file content."""
    if name in BUILTIN:
        return BUILTIN[name]
    if parse_task_name(name) is not None:
        return read_task_file(name)
    import difflib

    close = difflib.get_close_matches(name, list(BUILTIN), n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
    raise TaskError(
        f"Unknown task {name!r}{hint}; the tasks are {', '.join(BUILTIN)} (`dfa tasks --all` lists "
        "them), or a "
        "task file: a path to a .jsonl, .csv or .parquet file or a dataset folder."
    )


def check_files(names: list[str], models: list[str]) -> None:
    """Every task of `names` read, and each task file among them checked against the tokenizer of
    each of `models` (the tokenizers alone are loaded): none of its rows usable is an error naming
    the rows dropped and why."""
    from dfa.core.models import tokenizer_for  # here: dfa.core.models loads torch, the tasks do not

    files = [n for n in dict.fromkeys(names) if get_task(n).source is not None]  # reads every task
    for model in dict.fromkeys(models) if files else ():
        tok = tokenizer_for(model)
        for name in files:
            sv = survey(get_task(name), tok)
            if sv.report.kept == 0:
                raise TaskError(
                    f"Task file {get_task(name).source.path}: no row is usable with the tokenizer of "
                    f"{model}: dropped {sv.dropped_rows()}."  # type: ignore[union-attr]
                )


def task_label(name: str) -> str:
    """A task's name for folders and cache files: a built-in task's name; for a task file, its
    label and the start of its sha256 (so an edited file never reads another content's cache)."""
    task = get_task(name)
    if task.source is None:
        return name
    label = re.sub(r"[^A-Za-z0-9._+-]", "_", task.source.label)
    return f"{label}-{task.source.sha256[:12]}"


def run_name(
    run: str | None, tasks: Sequence[str], train: Sequence[str], holdout: Sequence[str], seed: int
) -> str:
    """A training run's folder name: `run`, or one made of the tasks (`task_label`s); a given `run`
    with task files among `tasks` gets their digest, so an edited file never resumes the folder
    trained on its old content."""
    if run:
        files = task_sources(tasks)
        if not files:
            return run
        digest = hashlib.sha256("".join(sorted(f["sha256"] for f in files.values())).encode()).hexdigest()
        return re.sub(r"[^A-Za-z0-9._@=+-]", "_", f"{run}-{digest[:12]}")
    if holdout:
        mode = "holdout-" + "+".join(map(task_label, holdout))
    elif len(train) == 1:
        mode = "only-" + task_label(train[0])
    elif sorted(train) == sorted(TASKS):
        mode = "all"
    else:
        mode = "tasks-" + "+".join(map(task_label, train))
    return f"{mode}-s{seed}"


def task_sources(names: Sequence[str]) -> dict[str, dict[str, str]]:
    """Path, sha256 and format of each task file among `names` (results and map.json record them)."""
    out = {}
    for name in names:
        task = get_task(name)
        if task.source is not None:
            out[name] = task.source.to_json()
    return out


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
