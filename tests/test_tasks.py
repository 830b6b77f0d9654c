"""Task datasets on the real tokenizers: usable counts, pair invariants, splits, determinism, errors."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from dfa.core.tasks import (
    SPLITS,
    TASKS,
    Candidate,
    Example,
    Task,
    TaskError,
    build_dataset,
    collate,
    make_dataset,
    split_of,
)
from dfa.core.tasks.base import DROP_ANSWER, DROP_LENGTH, DROP_SAME, DROP_WRONG, _Encoder, tokenize_candidate
from tests.conftest import make_word_tokenizer, require_tokenizer

TOKENIZERS = ["gpt2", "gpt-neox-20b"]
# What the issue asks every task to yield per tokenizer; the train split alone holds this many.
REQUIRED = {name: 200 if name in ("mcqa", "capitals") else 500 for name in TASKS}


@pytest.fixture(scope="module", params=TOKENIZERS)
def tokenizer(request):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(require_tokenizer(request.param)))


@pytest.fixture(scope="module")
def datasets(tokenizer):
    return {name: make_dataset(name, tokenizer, REQUIRED[name], "train", seed=0) for name in TASKS}


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("name", list(TASKS))
def test_pairs_are_usable(name, tokenizer, datasets):
    ds = datasets[name]
    assert len(ds) == REQUIRED[name] and ds.metric == TASKS[name].metric
    for ex in ds:
        assert ex.clean != ex.corrupt
        assert list(ex.clean_ids) == _ids(tokenizer, ex.clean)
        assert list(ex.corrupt_ids) == _ids(tokenizer, ex.corrupt)
        assert len(ex.clean_ids) == len(ex.corrupt_ids)
        assert not set(ex.answers) & set(ex.wrongs)
        for tok in (*ex.answers, *ex.wrongs):
            assert _ids(tokenizer, tokenizer.decode([tok])) == [tok]  # a single token, round trip


def test_all_families_appear(datasets):
    for name, ds in datasets.items():
        assert {e.family for e in ds} == set(TASKS[name].families), name


def test_ioi_semantics(datasets):
    for ex in datasets["ioi"].examples[:50]:
        io, s = ex.answer, ex.wrong
        assert ex.clean_ids.count(s) == 2 and ex.clean_ids.count(io) == 1
        # ABC corrupt: the second subject mention is a third name, the rest is the same.
        diff = [i for i, (a, b) in enumerate(zip(ex.clean_ids, ex.corrupt_ids)) if a != b]
        assert len(diff) == 1 and ex.clean_ids[diff[0]] == s and ex.corrupt_ids[diff[0]] not in (io, s)


def test_greater_than_answers_split_at_the_start_year(tokenizer, datasets):
    for ex in datasets["greater_than"].examples[:50]:
        years = sorted(int(tokenizer.decode([t])) for t in ex.answers + ex.wrongs)
        assert years == list(range(100))
        start = min(int(tokenizer.decode([t])) for t in ex.answers) - 1
        century, year = re.search(r"year (\d\d)(\d\d)\b", ex.clean).groups()
        assert int(year) == start and f"year {century}01" in ex.corrupt
        assert ex.clean.endswith(f"year {century}")
        assert max(int(tokenizer.decode([t])) for t in ex.wrongs) == start


def test_arithmetic_answers_are_right(tokenizer, datasets):
    for ex in datasets["arithmetic_add"].examples[:100]:
        if ex.family == "base":
            a, b = (int(x) for x in ex.clean.rstrip(" =").split(" + "))
            assert int(tokenizer.decode([ex.answer])) == a + b
    for ex in datasets["arithmetic_sub"].examples[:100]:
        if ex.family == "base":
            a, b = (int(x) for x in ex.clean.rstrip(" =").split(" - "))
            c, d = (int(x) for x in ex.corrupt.rstrip(" =").split(" - "))
            assert int(tokenizer.decode([ex.answer])) == a - b
            assert int(tokenizer.decode([ex.wrong])) == c - d and a == c


def test_splits_are_disjoint_and_reproducible(tokenizer):
    built = {s: make_dataset("ioi", tokenizer, 150, s, seed=3) for s in SPLITS}
    cleans = {s: {e.clean for e in ds} for s, ds in built.items()}
    assert not cleans["train"] & cleans["val"]
    assert not cleans["train"] & cleans["test"]
    assert not cleans["val"] & cleans["test"]
    again = make_dataset("ioi", tokenizer, 150, "test", seed=3)
    assert again.examples == built["test"].examples
    other_seed = make_dataset("ioi", tokenizer, 150, "test", seed=4)
    assert other_seed.examples != built["test"].examples


def test_same_data_in_a_fresh_process_with_another_hash_seed(tokenizer):
    """Nothing may hang on Python's per-process string hashing or set order."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, sys; from transformers import AutoTokenizer; from dfa.core.tasks import make_dataset; "
        "tok = AutoTokenizer.from_pretrained(sys.argv[1]); "
        "print(json.dumps({t: [e.clean + '|' + e.corrupt for e in make_dataset(t, tok, 30, 'val', seed=5)] "
        "for t in ('ioi', 'mcqa', 'capitals', 'sva')}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, tokenizer.name_or_path],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    here = {
        t: [e.clean + "|" + e.corrupt for e in make_dataset(t, tokenizer, 30, "val", seed=5)]
        for t in json.loads(out)
    }
    assert json.loads(out) == here


def test_split_of_is_stable():
    assert split_of("The capital of France is", 0) == split_of("The capital of France is", 0)
    counts = {s: 0 for s in SPLITS}
    for i in range(10000):
        counts[split_of(f"key {i}", 0)] += 1
    assert 7700 < counts["train"] < 8300 and 800 < counts["val"] < 1200 and 800 < counts["test"] < 1200


def test_too_few_pairs_is_an_error_naming_task_tokenizer_and_counts(tokenizer):
    with pytest.raises(TaskError) as err:
        make_dataset("arithmetic_add", tokenizer, 5000, "test", families=["lexical"])
    msg = str(err.value)
    assert msg.startswith("Task 'arithmetic_add' with tokenizer ")
    assert f"tokenizer {Path(tokenizer.name_or_path).name!r}:" in msg  # its name, not its folder's path
    assert tokenizer.name_or_path not in msg
    assert "usable test examples for families lexical, but 5000 were asked for" in msg
    assert "duplicates" in msg and "kept" in msg


def test_tokenizer_that_splits_everything_is_an_error():
    # The word-level test tokenizer knows none of the capitals: answer and wrong both become
    # its one unknown-word id, so every pair is dropped as overlapping.
    with pytest.raises(TaskError, match=r"Task 'capitals' with tokenizer .*only 0 usable train examples"):
        make_dataset("capitals", make_word_tokenizer(), 10)


def test_bad_task_family_split():
    from dfa.core.tasks import get_task

    with pytest.raises(TaskError, match="Unknown task 'ioii'.*ioi, greater_than"):
        get_task("ioii")
    with pytest.raises(TaskError, match="has no variation family 'weird'"):
        build_dataset(TASKS["ioi"], None, 10, families=["weird"])
    with pytest.raises(TaskError, match="Unknown split 'dev'"):
        build_dataset(TASKS["ioi"], None, 10, split="dev")


def test_drop_reasons(tokenizer):
    encode = _Encoder(tokenizer)

    def cand(clean="The cat", corrupt="The dog", answers=(" is",), wrongs=(" are",)):
        return Candidate(clean, corrupt, answers, wrongs, "base", clean)

    assert isinstance(tokenize_candidate(cand(), encode), Example)
    assert tokenize_candidate(cand(corrupt="The hippopotamus"), encode) == DROP_LENGTH
    assert tokenize_candidate(cand(answers=(" Kathmanduuu",)), encode) == DROP_ANSWER
    assert tokenize_candidate(cand(wrongs=(" Kathmanduuu",)), encode) == DROP_WRONG
    assert tokenize_candidate(cand(wrongs=(" is",)), encode) == DROP_SAME


def test_dataset_report_counts_add_up():
    rng_calls = iter(range(10**6))

    def gen(rng: random.Random, family: str) -> Candidate:
        i = next(rng_calls) % 30  # only 30 distinct candidates exist
        return Candidate(f"Mary {i}", f"John {i}", (" Mary",), (" John",), family, f"k{i}")

    task = Task("toy", "test", "logit_diff", {"base": gen})
    with pytest.raises(TaskError) as err:
        build_dataset(task, make_word_tokenizer(), 1000, max_draws=300)
    assert "drew 300 candidates: 270 duplicates" in str(err.value)


def test_collate(tokenizer, datasets):
    examples = datasets["greater_than"].examples[:3] + datasets["ioi"].examples[:2]
    batch = collate(examples, bos_id=tokenizer.bos_token_id or 0, pad_id=0)
    n = len(examples)
    width = 1 + max(len(e.clean_ids) for e in examples)
    assert batch["clean"].shape == batch["corrupt"].shape == (n, width)
    for i, e in enumerate(examples):
        last = int(batch["last"][i])
        assert last == len(e.clean_ids)
        assert batch["clean"][i, 1 : last + 1].tolist() == list(e.clean_ids)
        assert batch["answers"][i][batch["answers_mask"][i]].tolist() == list(e.answers)
        assert batch["wrongs"][i][batch["wrongs_mask"][i]].tolist() == list(e.wrongs)
    assert (batch["answers"][3:, 1:] == -1).all()  # ioi has one answer; the rest is padding
