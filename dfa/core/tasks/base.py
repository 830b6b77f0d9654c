"""The task engine: candidate pairs from a generator -> tokenizer-checked, split, reproducible datasets."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from dfa.core.errors import DfaError

if TYPE_CHECKING:  # torch only where batches are made: the task list loads without it
    import torch

Metric = Literal["logit_diff", "prob_diff"]
Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
# Share of the candidate keys each split gets; a key (usually the clean prompt) never straddles splits.
SPLIT_FRACTIONS: dict[Split, float] = {"train": 0.8, "val": 0.1, "test": 0.1}
FAMILIES = ("base", "lexical", "syntactic", "domain")

# Reasons a candidate is dropped, in the order they are checked.
DROP_LENGTH = "clean/corrupt token lengths differ"
DROP_ANSWER = "answer not a single token"
DROP_WRONG = "wrong answer not a single token"
DROP_SAME = "answer and wrong overlap"
DROP_UNKNOWN = "words the tokenizer does not know"


class TaskError(DfaError, ValueError):
    """A task cannot make what was asked (unknown name, too few usable pairs, bad split)."""


@dataclass(frozen=True)
class Candidate:
    """A clean/corrupt pair in text, before any tokenizer has seen it.

    `answers`/`wrongs` are continuation strings (with their leading space). `key` decides the
    split: candidates with the same key always land in the same split."""

    clean: str
    corrupt: str
    answers: tuple[str, ...]
    wrongs: tuple[str, ...]
    family: str
    key: str
    row: int = 0  # the 1-based line or row of a task file; 0 for a generated candidate


@dataclass(frozen=True)
class Example:
    """One usable pair, tokenized for one tokenizer (ids without BOS; the model adds it)."""

    clean: str
    corrupt: str
    clean_ids: tuple[int, ...]
    corrupt_ids: tuple[int, ...]
    answers: tuple[int, ...]
    wrongs: tuple[int, ...]
    family: str
    key: str = ""
    row: int = 0

    @property
    def answer(self) -> int:
        return self.answers[0]

    @property
    def wrong(self) -> int:
        return self.wrongs[0]


@dataclass
class DatasetReport:
    """What happened to the candidates drawn while building a dataset."""

    drawn: int = 0
    duplicates: int = 0
    other_split: int = 0
    dropped: Counter = field(default_factory=Counter)
    kept: int = 0
    first_dropped: dict[str, Candidate] = field(default_factory=dict)  # per reason

    def drop(self, cand: Candidate, why: str) -> None:
        self.dropped[why] += 1
        self.first_dropped.setdefault(why, cand)

    def drops(self, none: str = "none") -> str:
        """The drop counts by reason, most frequent first."""
        return ", ".join(f"{n} {why}" for why, n in self.dropped.most_common()) or none

    def summary(self) -> str:
        drops = self.drops()
        return (
            f"drew {self.drawn} candidates: {self.duplicates} duplicates, {self.other_split} in other "
            f"splits, dropped {sum(self.dropped.values())} ({drops}), kept {self.kept}"
        )


@dataclass
class TaskDataset:
    task: str
    tokenizer: str
    split: Split
    seed: int
    metric: Metric
    families: tuple[str, ...]
    examples: list[Example]
    report: DatasetReport

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)


Generator = Callable[[random.Random, str], Candidate]


@dataclass(frozen=True)
class TaskSource:
    """Where a task read from a file came from: results and map.json record it."""

    path: str
    sha256: str
    format: str
    label: str  # a short name for folders and tables (`name=` of `name=path`, else the file's stem)

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "sha256": self.sha256, "format": self.format}


@dataclass(frozen=True)
class Task:
    """A task: its metric and, per variation family, a function drawing one random candidate;
    or, for a task read from a file, its finite `rows` (`families` then maps to None)."""

    name: str
    description: str
    metric: Metric
    families: dict[str, Generator | None]
    rows: tuple[Candidate, ...] | None = None
    source: TaskSource | None = None

    @property
    def finite(self) -> bool:
        return self.rows is not None

    def candidates(self, rng: random.Random, families: Sequence[str]) -> Iterator[Candidate]:
        if self.rows is not None:  # a file's rows, in file order: the stream ends with them
            yield from (c for c in self.rows if c.family in families)
            return
        while True:
            family = rng.choice(families)
            gen = self.families[family]
            assert gen is not None
            yield gen(rng, family)


def split_of(key: str, seed: int) -> Split:
    """A stable split for a key: the same for every tokenizer and run, different per seed."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for split in SPLITS:
        edge += SPLIT_FRACTIONS[split]
        if u < edge:
            return split
    return SPLITS[-1]


def tokenizer_name(tokenizer: Any) -> str:
    """The name a tokenizer goes by in messages: its model's (a folder's last part: `toy-gpt2-l`,
    not the folder's path inside the package), else its class."""
    name = str(getattr(tokenizer, "name_or_path", "") or "")
    if name and ("/" in name or "\\" in name) and Path(name).is_dir():
        return Path(name).name
    return name or type(tokenizer).__name__


class _Encoder:
    """Memoised `text -> ids` without special tokens (answers and templates repeat a lot)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.cache: dict[str, tuple[int, ...]] = {}

    def __call__(self, text: str) -> tuple[int, ...]:
        ids = self.cache.get(text)
        if ids is None:
            ids = tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            self.cache[text] = ids
        return ids


def _single_tokens(encode: _Encoder, texts: tuple[str, ...]) -> tuple[int, ...] | None:
    ids = [encode(t) for t in texts]
    if any(len(i) != 1 for i in ids):
        return None
    return tuple(i[0] for i in ids)


def tokenize_candidate(cand: Candidate, encode: _Encoder) -> Example | str:
    """The usable `Example`, or the reason the candidate is dropped."""
    clean_ids, corrupt_ids = encode(cand.clean), encode(cand.corrupt)
    if len(clean_ids) != len(corrupt_ids):
        return DROP_LENGTH
    answers = _single_tokens(encode, cand.answers)
    if answers is None:
        return DROP_ANSWER
    wrongs = _single_tokens(encode, cand.wrongs)
    if wrongs is None:
        return DROP_WRONG
    if set(answers) & set(wrongs):
        return DROP_SAME
    # A word-level tokenizer (the toy ladders') maps an unknown word to one UNK token: a prompt or
    # answer the model has never seen would otherwise pass every check above.
    # (GPT-2's and Pythia's UNK is their BOS, which no text encodes to.)
    unk = getattr(encode.tokenizer, "unk_token_id", None)
    if unk not in (None, getattr(encode.tokenizer, "bos_token_id", None)) and any(
        unk in ids for ids in (clean_ids, corrupt_ids, answers, wrongs)
    ):
        return DROP_UNKNOWN
    return Example(
        cand.clean, cand.corrupt, clean_ids, corrupt_ids, answers, wrongs, cand.family, cand.key, cand.row
    )


def _check_families(task: Task, families: Sequence[str] | None) -> tuple[str, ...]:
    chosen = tuple(families) if families else tuple(task.families)
    unknown = [f for f in chosen if f not in task.families]
    if unknown:
        raise TaskError(
            f"Task {task.name!r} has no variation family {', '.join(map(repr, unknown))}; "
            f"it has {', '.join(task.families)}."
        )
    return chosen


def _scan(
    task: Task, seed: int, families: tuple[str, ...], max_draws: int, report: DatasetReport
) -> Iterator[tuple[Split, Candidate]]:
    """The seeded candidate stream, without repeats, each with the split its key falls in."""
    rng = random.Random(f"{task.name}\x00{seed}\x00{','.join(families)}")  # unused by a file's rows
    seen: set[tuple] = set()
    for cand in task.candidates(rng, families):
        if report.drawn >= max_draws:
            return
        report.drawn += 1
        ident = (cand.clean, cand.corrupt, cand.answers, cand.wrongs)
        if ident in seen:
            report.duplicates += 1
            continue
        seen.add(ident)
        yield split_of(cand.key, seed), cand


def build_dataset(
    task: Task,
    tokenizer: Any,
    size: int,
    split: Split = "train",
    seed: int = 0,
    families: Sequence[str] | None = None,
    max_draws: int | None = None,
    allow_fewer: bool = False,
) -> TaskDataset:
    """Draw candidates from a seeded stream until `size` usable ones of `split` are found.

    The stream depends on the task, the families and the seed only, and splits are decided by
    hashing each candidate's key, so the three splits of one seed are disjoint and the same
    split is rebuilt identically. Fewer than `size` usable pairs is an error, never a silently
    smaller dataset, unless `allow_fewer` asks for up to `size` (an empty one is still an
    error)."""
    if split not in SPLITS:
        raise TaskError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    if size < 1:
        raise TaskError(f"Dataset size must be at least 1, got {size}.")
    chosen = _check_families(task, families)
    max_draws = max_draws or (len(task.rows) if task.rows is not None else 40 * size + 4000)
    encode = _Encoder(tokenizer)
    report = DatasetReport()
    examples: list[Example] = []
    for cand_split, cand in _scan(task, seed, chosen, max_draws, report):
        if cand_split != split:
            report.other_split += 1
            continue
        result = tokenize_candidate(cand, encode)
        if isinstance(result, str):
            report.drop(cand, result)
            continue
        examples.append(result)
        if len(examples) >= size:
            break
    report.kept = len(examples)
    name = tokenizer_name(tokenizer)
    if len(examples) < size and not (allow_fewer and examples):
        if task.source is not None:
            sv = survey(task, tokenizer, seed=seed, families=chosen)
            raise TaskError(
                f"Task file {task.source.path} with tokenizer {name!r}: {size} {split} pairs were asked "
                f"for, but it holds {sv.report.kept} usable pairs (train {sv.usable['train']}, val "
                f"{sv.usable['val']}, test {sv.usable['test']}; data seed {seed}), "
                f"dropped {sv.dropped_rows()}. Ask for at most {sv.usable[split]}, or add rows."
            )
        raise TaskError(
            f"Task {task.name!r} with tokenizer {name!r}: only {len(examples)} usable {split} examples "
            f"for families {', '.join(chosen)}, but {size} were asked for ({report.summary()}). "
            "Ask for fewer, allow more variation families, or use the train split."
        )
    return TaskDataset(task.name, name, split, seed, task.metric, chosen, examples, report)


@dataclass
class Survey:
    """Usable pairs per split among a task's first `report.drawn` candidates for one tokenizer."""

    task: str
    tokenizer: str
    usable: Counter
    report: DatasetReport
    examples: dict[str, Example]  # the first usable example of each family

    def dropped_rows(self) -> str:
        """Drops by reason with the first dropped row of each (rows of a task file)."""
        parts = []
        for why, n in self.report.dropped.most_common():
            c = self.report.first_dropped[why]
            where = f"row {c.row}" if c.row else "e.g."
            parts.append(
                f"{n} {why} ({where}: {c.clean!r} -> {'|'.join(c.answers)!r} vs {'|'.join(c.wrongs)!r})"
            )
        return "; ".join(parts) or "none"


def survey(
    task: Task, tokenizer: Any, draws: int = 4000, seed: int = 0, families: Sequence[str] | None = None
) -> Survey:
    """Tokenize every candidate of the seeded stream (all splits; every row of a file task) and
    count what survives."""
    chosen = _check_families(task, families)
    if task.rows is not None:
        draws = len(task.rows)
    encode = _Encoder(tokenizer)
    report = DatasetReport()
    usable: Counter = Counter()
    examples: dict[str, Example] = {}
    for cand_split, cand in _scan(task, seed, chosen, draws, report):
        result = tokenize_candidate(cand, encode)
        if isinstance(result, str):
            report.drop(cand, result)
            continue
        usable[cand_split] += 1
        examples.setdefault(result.family, result)
    report.kept = sum(usable.values())
    return Survey(task.name, tokenizer_name(tokenizer), usable, report, examples)


class Batch(TypedDict):
    """A collated batch of prompt pairs (see `collate`)."""

    clean: torch.Tensor
    corrupt: torch.Tensor
    last: torch.Tensor
    answers: torch.Tensor
    wrongs: torch.Tensor
    answers_mask: torch.Tensor
    wrongs_mask: torch.Tensor


def collate(examples: Sequence[Example], bos_id: int | None, pad_id: int = 0) -> Batch:
    """Right-padded tensors for a batch: `clean`/`corrupt` `[batch, pos]` (BOS first when
    `bos_id` is given), `last` (index of each prompt's final token, where the answer is
    predicted), and `answers`/`wrongs` `[batch, k]` padded with -1 (`*_mask` marks real ids)."""
    import torch

    prefix = [] if bos_id is None else [bos_id]
    rows = [(prefix + list(e.clean_ids), prefix + list(e.corrupt_ids)) for e in examples]
    width = max(len(c) for c, _ in rows)

    def pad(seqs: list[list[int]], value: int, n: int) -> torch.Tensor:
        return torch.tensor([s + [value] * (n - len(s)) for s in seqs], dtype=torch.long)

    answers = [list(e.answers) for e in examples]
    wrongs = [list(e.wrongs) for e in examples]
    out: Batch = {  # type: ignore[typeddict-item]  (the masks follow)
        "clean": pad([c for c, _ in rows], pad_id, width),
        "corrupt": pad([k for _, k in rows], pad_id, width),
        "last": torch.tensor([len(c) - 1 for c, _ in rows], dtype=torch.long),
        "answers": pad(answers, -1, max(map(len, answers))),
        "wrongs": pad(wrongs, -1, max(map(len, wrongs))),
    }
    out["answers_mask"] = out["answers"] >= 0
    out["wrongs_mask"] = out["wrongs"] >= 0
    return out
