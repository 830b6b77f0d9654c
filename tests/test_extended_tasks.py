"""The extended task suite: answers are right by construction, every family is usable on a real
tokenizer, the kinds cover every built-in task, and the names resolve everywhere a task is taken."""

from __future__ import annotations

import random
import re

import pytest

from dfa.core.tasks import BUILTIN, EXTENDED, KINDS, TASKS, FAMILIES, TaskError, get_task, kind_of, make_dataset
from dfa.core.tasks import extended_words as X
from tests.conftest import require_tokenizer


def _draw(name: str, family: str, n: int = 200, seed: int = 0):
    rng = random.Random(seed)
    gen = EXTENDED[name].families[family]
    return [gen(rng, family) for _ in range(n)]


def test_the_suite_has_twenty_tasks_apart_from_the_eight():
    assert len(EXTENDED) == 20
    assert not set(EXTENDED) & set(TASKS)
    assert list(BUILTIN) == [*TASKS, *EXTENDED]
    for task in EXTENDED.values():
        assert set(task.families) == set(FAMILIES) and task.metric == "logit_diff"


def test_every_builtin_task_has_exactly_one_kind():
    listed = [t for names in KINDS.values() for t in names]
    assert sorted(listed) == sorted(BUILTIN)  # each once, none missing, none unknown
    assert kind_of("box_tracking") == "entity tracking" and kind_of("nope.jsonl") is None


@pytest.mark.parametrize("name", list(EXTENDED))
@pytest.mark.parametrize("family", FAMILIES)
def test_candidates_differ_and_no_prompt_opens_with_a_slot_word(name, family):
    for c in _draw(name, family, 50):
        assert c.clean != c.corrupt and c.answers != c.wrongs and c.key == c.clean
        assert all(a.startswith(" ") for a in (*c.answers, *c.wrongs))
        assert c.family == family
        assert "{" not in c.clean and "}" not in c.corrupt  # every slot filled


def test_relation_answers_are_the_tables_values():
    table = X.COUNTRY_LANGUAGE
    for c in _draw("country_language", "base") + _draw("country_language", "lexical"):
        country = next(k for k in table if re.search(rf"\b{k}\b", c.clean))
        other = next(k for k in table if re.search(rf"\b{k}\b", c.corrupt))
        assert c.answers == (" " + table[country],) and c.wrongs == (" " + table[other],)
        assert table[country] != table[other]


def test_lexical_draws_words_base_never_shows():
    base = {c.answers[0] for c in _draw("past_tense", "base", 400)}
    lexical = {c.answers[0] for c in _draw("past_tense", "lexical", 400)}
    assert base and lexical and not base & lexical


def test_succession_answers_the_next_item():
    for family, items in (("base", X.DAYS), ("lexical", X.MONTHS)):
        for c in _draw("calendar_next", family):
            shown = [w for w in re.findall(r"[A-Z][a-z]+", c.clean) if w in items]
            assert c.answers == (" " + items[(items.index(shown[-1]) + 1) % len(items)],)
    for c in _draw("count_next", "domain"):  # counting down
        shown = [w for w in re.findall(r"[a-z]+", c.clean) if w in X.NUMBER_WORDS]
        assert c.answers == (" " + X.NUMBER_WORDS[X.NUMBER_WORDS.index(shown[-1]) - 1],)


def test_induction_copies_what_followed_the_prefix():
    c = _draw("induction", "base", 1, seed=3)[0]
    listed, repeated = c.clean.split(". ")
    words, prefix = listed.split(), repeated.split()
    assert words[: len(prefix)] == prefix and c.answers == (" " + words[len(prefix)],)
    assert c.corrupt.split(". ")[1] == repeated  # only the listed word changed


def test_tracking_tasks_answer_the_asked_entity():
    for c in _draw("box_tracking", "base"):
        body, ask = c.clean.rsplit(". ", 1)
        obj = ask.split()[1]
        assert re.search(rf"the {obj} is in box {c.answers[0].strip()}\b", body, re.I)
    for c in _draw("kv_lookup", "base"):
        *fields, ask = c.clean.split("\n")
        record = dict(f.split(": ") for f in fields)
        assert c.answers == (" " + record[ask.rstrip(":")],)


def test_size_compare_answers_the_bigger_animal():
    for c in _draw("size_compare", "base"):
        a, b = re.search(r"the (\w+) or the (\w+)\?", c.clean).groups()
        assert c.answers == (" " + max(a, b, key=X.SIZES.index),)
        a, b = re.search(r"the (\w+) or the (\w+)\?", c.corrupt).groups()
        assert c.wrongs == (" " + max(a, b, key=X.SIZES.index),)


def test_sentiment_corrupt_flips_the_query_label():
    for c in _draw("sentiment_icl", "base"):
        query = c.clean.split("\n")[-1].split()[0]
        assert query in X.SENTIMENT[c.answers[0].strip()]
        assert c.corrupt.split("\n")[-1].split()[0] in X.SENTIMENT[c.wrongs[0].strip()]


def test_extended_names_resolve_and_misspellings_suggest_them():
    assert get_task("past_tense") is EXTENDED["past_tense"]
    with pytest.raises(TaskError, match=r"did you mean 'past_tense'"):
        get_task("past_tens")


@pytest.mark.parametrize("name", list(EXTENDED))
def test_every_task_yields_test_pairs_on_gpt2(name):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(require_tokenizer("gpt2")))
    ds = make_dataset(name, tok, 50, "test", seed=0)
    assert len(ds) == 50
    assert {e.family for e in ds} == set(FAMILIES)
    for e in ds:
        assert len(e.clean_ids) == len(e.corrupt_ids) and e.answers != e.wrongs
