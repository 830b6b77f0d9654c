"""The toy ladders: tokenizer, deterministic training, atomic saving, the shipped models and
their cards, lookup by name, errors."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from dfa.core.errors import DfaError
from dfa.core.graph import NodeGraph
from dfa.core.models import ModelNotAvailableError, load_model, load_tokenizer, parse_spec
from dfa.core.tasks import FAMILIES, TASKS, make_dataset, split_of
from dfa.zoo.build import build_model
from dfa.zoo.callbacks import RoleWarmup, ValChecks
from dfa.zoo.card import (
    CARD,
    MAX_CORRUPT_SHARE,
    MIN_ACCURACY,
    ROLE_THRESHOLD,
    TEST_PAIRS,
    read_card,
    score_tasks,
)
from dfa.zoo.spec import FAMILY_ARCH, TOY_SPECS, ZOO_DIR, ToySpec
from dfa.zoo.text import (
    GROUP_WEIGHTS,
    REPEAT_PREFIX,
    REPEAT_SPAN,
    TaskText,
    echo_rows,
    extra_texts,
    interleaved_rows,
    ordinal_texts,
    repeat_rows,
    table_texts,
)
from dfa.zoo.tokenizer import UNK, build_tokenizer
from dfa.zoo.train import (
    ROLE_BARS,
    TaskBatches,
    TrainConfig,
    label_spans,
    pad_rows,
    train_toy,
)


@pytest.fixture(scope="module")
def toy_tokenizer():
    return load_tokenizer(ZOO_DIR / "toy-gpt2-s")


def _pieces(tok, text: str) -> list[str]:
    return [tok.decode([i]) for i in tok(text, add_special_tokens=False)["input_ids"]]


def test_tokenizer_pieces_like_gpt2(toy_tokenizer):
    tok = toy_tokenizer
    text = "The war lasted from the year 1732 to the year 17"
    assert _pieces(tok, text)[-8:] == [" the", " year", " 17", "32", " to", " the", " year", " 17"]
    assert _pieces(tok, "64 - 41 = 23, 198") == ["64", " -", " 41", " =", " 23", ",", " 198"]
    assert _pieces(tok, "A. dog\nB. cat") == ["A", ".", " dog", "\n", "B", ".", " cat"]
    assert tok.convert_tokens_to_ids(" Paris") != tok.convert_tokens_to_ids("Paris")
    assert tok.bos_token_id == tok.eos_token_id == tok.pad_token_id == 0


def test_shipped_tokenizer_is_the_one_the_code_builds(toy_tokenizer):
    assert build_tokenizer(extra_texts()).get_vocab() == toy_tokenizer.get_vocab()
    for name in TOY_SPECS:
        assert load_tokenizer(ZOO_DIR / name).get_vocab() == toy_tokenizer.get_vocab()


def test_every_task_tokenizes_without_unknown_pieces(toy_tokenizer):
    unk = toy_tokenizer.convert_tokens_to_ids(UNK)
    for task in TASKS:
        data = make_dataset(task, toy_tokenizer, 100, "test", 0, allow_fewer=True)
        assert len(data) >= 100 if task != "capitals" else len(data) >= 50
        for ex in data:
            assert unk not in ex.clean_ids and unk not in ex.corrupt_ids
            assert toy_tokenizer.decode(list(ex.clean_ids)) == ex.clean  # exact round trip
    for line in ordinal_texts() + [p + a for p, a in table_texts()]:
        assert unk not in toy_tokenizer(line, add_special_tokens=False)["input_ids"]


MICRO = ToySpec(
    "toy-gpt2-micro", "toy-gpt2", n_layers=1, n_heads=2, d_model=16, steps=4, lr=3e-3, mixed=False
)


@pytest.fixture(scope="module")
def micro_text(toy_tokenizer):
    return TaskText(toy_tokenizer, seed=0, pairs=20, role_rows=50)


def _trained(spec, tok, text, seed):
    return train_toy(spec, tok, text, seed, TrainConfig(steps=spec.steps, batch_size=4, warmup=2))


def test_training_is_deterministic_for_a_seed(toy_tokenizer, micro_text):
    a = _trained(MICRO, toy_tokenizer, micro_text, 3).state_dict()
    b = _trained(MICRO, toy_tokenizer, micro_text, 3).state_dict()
    c = _trained(MICRO, toy_tokenizer, micro_text, 4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_task_text_has_every_task_and_the_extra_text(micro_text):
    counts = micro_text.counts()
    assert all(counts[t] == 20 + counts[f"{t} corrupt"] for t in TASKS)
    assert counts["ordinal"] == len(ordinal_texts()) and counts["tables"] == len(table_texts()) == 121 + 231
    assert counts["atlas"] > 100 and counts["glossary"] > 100
    row, answer = micro_text[0]
    assert row[0] == 0 and answer == len(row) - 1  # BOS first; a task row ends with its answer


def test_corrupt_prompts_train_with_their_own_answers_and_never_a_val_or_test_prompt(toy_tokenizer):
    pairs = {task: 30 for task in TASKS} | {"ioi": 40}
    text = TaskText(toy_tokenizer, seed=0, pairs=pairs, corrupt=True)
    counts = text.counts()
    assert all(counts[t] == pairs[t] + counts[f"{t} corrupt"] for t in TASKS)
    rows = iter(zip(text.rows, text.group_of, text.is_corrupt))
    skipped = 0
    for task in TASKS:
        for ex in make_dataset(task, toy_tokenizer, pairs[task], "train", 0):
            (row, at), group, corrupt = next(rows)
            assert (group, corrupt, row[1:at]) == (task, False, list(ex.clean_ids))
            assert row[at] in ex.answers
            if split_of(ex.corrupt, 0) != "train":  # it may be another pair's val or test prompt
                skipped += 1
                continue
            (row, at), group, corrupt = next(rows)
            assert (group, corrupt, row[1:at]) == (task, True, list(ex.corrupt_ids))
            answer = row[at]
            if task == "greater_than":  # the start year 01: every year 02..99 is right
                assert 2 <= int(toy_tokenizer.decode([answer])) <= 99
            elif task == "ioi":  # a third name: either introduced name is right
                assert answer in ex.answers + ex.wrongs
            else:
                assert answer in ex.wrongs
    assert skipped > 0 and next(rows)[1] == "atlas"


def test_number_tables_state_each_fact_of_the_number_word_family_in_another_form(toy_tokenizer):
    tables = {prompt: answer for prompt, answer in table_texts()}
    assert tables["Sum: seven and five make"] == " twelve."
    assert tables["Take: five from twelve leaves"] == " seven."
    for task, word in (("arithmetic_add", "plus"), ("arithmetic_sub", "minus")):
        data = make_dataset(task, toy_tokenizer, 100, "test", 0, families=["lexical"], allow_fewer=True)
        for ex in data:
            a, b = ex.clean.removesuffix(" equals").split(f" {word} ")
            fact = f"Sum: {a} and {b} make" if word == "plus" else f"Take: {b} from {a} leaves"
            assert tables[fact] == toy_tokenizer.decode(ex.answers) + "."  # the same fact
    # ... in other words than the task's templates.
    assert not any(w in p for p in tables for w in ("plus", "minus", "equals"))


def test_pad_rows_labels_every_token_of_text_rows_and_the_answer_alone_of_task_rows():
    batch = pad_rows([([0, 5, 6, 7], 3), ([0, 8, 9], 2)], pad_id=1, labelled=[(1, 1), None])
    assert batch["input_ids"].tolist() == [[0, 5, 6, 7], [0, 8, 9, 1]]
    assert batch["labels"].tolist() == [[5, 6, 7, -100], [-100, 9, -100, -100]]
    assert batch["answer_pos"].tolist() == [2, 1]
    every = pad_rows([([0, 5, 6, 7], 3), ([0, 8, 9], 2)], pad_id=1)
    assert every["labels"].tolist() == [[5, 6, 7, -100], [8, 9, -100, -100]]


def test_strided_rows_are_labelled_from_their_answer_every_nth_token():
    repeat = ([0, 5, 6, 7, 5, 6, 7], 5)  # [BOS] r r: labelled from r's second token in copy 2
    interleaved = ([0, 3, 9, 4, 8, 5], 3)  # [BOS] a1 f1 a2 f2 a3: the items after a filler
    rows = [(*repeat, "repeats"), (*interleaved, "interleaved"), ([0, 8, 9], 2, "sva"), ([0, 8], 1, "atlas")]
    spans = label_spans(rows, {"atlas"})
    assert spans == [(5, 1), (3, 2), None, (1, 1)]
    labels = pad_rows([(r, a) for r, a, _ in rows], pad_id=1, labelled=spans)["labels"].tolist()
    assert labels[0] == [-100, -100, -100, -100, 6, 7, -100]
    assert labels[1] == [-100, -100, 4, -100, 5, -100, -100]
    assert labels[2] == [-100, 9, -100, -100, -100, -100, -100]
    assert labels[3] == [8, -100, -100, -100, -100, -100, -100]


def test_repeated_and_interleaved_rows_have_their_form(toy_tokenizer):
    tok = toy_tokenizer
    special = set(tok.all_special_ids)
    rows = repeat_rows(tok, seed=0, n=200)
    assert rows == repeat_rows(tok, seed=0, n=200) != repeat_rows(tok, seed=1, n=200)
    lengths, prefixes = set(), set()
    for row, answer_at in rows:  # [BOS] p r r, answer_at at r's second token in the second copy
        n = len(row) - answer_at + 1
        k = answer_at - n - 2
        first, second = row[1 + k : 1 + k + n], row[1 + k + n :]
        assert row[0] == tok.bos_token_id and first == second and len(set(first)) == n
        assert not special & set(row[1:]) and len(row) <= 64
        lengths.add(n)
        prefixes.add(k)
    assert (min(lengths), max(lengths)) == REPEAT_SPAN and (min(prefixes), max(prefixes)) == (
        0,
        REPEAT_PREFIX,
    )
    numbers = {tok.convert_tokens_to_ids(f" {k}"): k for k in range(1000)}
    for row, answer_at in interleaved_rows(tok, seed=0, n=200):
        assert answer_at == 3 and row[0] == tok.bos_token_id and len(row) % 2 == 0
        items = row[1::2]
        if items[0] in numbers:  # a run of numbers counts up by one
            assert [numbers[i] for i in items] == list(
                range(numbers[items[0]], numbers[items[0]] + len(items))
            )


def test_each_ladder_is_built_for_its_roles():
    from dfa.zoo.spec import FAMILY_ROLES
    from dfa.zoo.train import ROLE_TEXT_WEIGHTS, default_config

    for spec, recipe in [(s, FAMILY_ROLES[s.family]) for s in TOY_SPECS.values()]:
        config = default_config(spec)
        assert config.role_bars == {r: ROLE_BARS[r] for r in recipe.roles}
        assert config.role_warmup == recipe.warmup and config.role_offset == recipe.offset
        assert spec.recipe.span_prefix == recipe.span_prefix and config.role_relabel == recipe.relabel
        if recipe.warmup:
            assert config.role_warmup_weights == dict(recipe.warmup_texts)
        drawn = {g: config.group_weights[g] for g in ROLE_TEXT_WEIGHTS}
        weights = dict(recipe.texts) or ROLE_TEXT_WEIGHTS
        assert drawn == (weights if recipe.roles else dict.fromkeys(ROLE_TEXT_WEIGHTS, 0.0))
    assert TOY_SPECS["toy-neox-s"].roles == ("induction", "previous_token")
    assert TOY_SPECS["toy-gpt2-s"].roles == ("induction", "previous_token")
    # Rotary positions (NeoX): spans after a random prefix, unshifted, echoes in the warm-up, as
    # the shipped ladder was built. Learnt absolute positions (GPT-2): spans without the prefix,
    # shifted, fresh, alone in the warm-up.
    neox, gpt2 = default_config(TOY_SPECS["toy-neox-s"]), default_config(TOY_SPECS["toy-gpt2-s"])
    assert neox.role_offset == 0 and neox.role_warmup_weights == {"repeats": 1.0, "echo": 0.3}
    assert not neox.role_relabel and TOY_SPECS["toy-neox-s"].recipe.span_prefix == REPEAT_PREFIX
    assert gpt2.role_offset > 0 and gpt2.role_warmup_weights == {"repeats": 1.0} and gpt2.role_relabel
    assert (
        TOY_SPECS["toy-gpt2-s"].recipe.span_prefix == 0
        and gpt2.group_weights["repeats"] > neox.group_weights["repeats"]
    )


def test_relabelled_role_rows_are_fresh_rows_of_the_same_text(toy_tokenizer):
    from dfa.core.roles import candidate_tokens
    from dfa.zoo.train import relabel_rows

    tok = toy_tokenizer
    candidates = candidate_tokens(tok, len(tok))
    spans = [(*r, "repeats") for r in repeat_rows(tok, seed=0, n=50, prefix=0)]
    echoes = [(*r, "echo") for r in echo_rows(tok, seed=0, n=50)]
    task = [([tok.bos_token_id, 11, 12, 11], 3, "sva")]
    rows = spans + echoes + task
    gen = torch.Generator().manual_seed(0)
    first, second = relabel_rows(rows, candidates, gen), relabel_rows(rows, candidates, gen)
    assert first[-1] == second[-1] == task[0]  # a task row as it is
    special = set(tok.all_special_ids)
    for (row, a, g), (new, b, h) in zip(rows[:-1], first[:-1], strict=True):
        assert (a, g) == (b, h) and len(new) == len(row) and new[0] == row[0] == tok.bos_token_id
        assert not special & set(new[1:])
        # The same pattern of equal and distinct tokens: another row of the same text.
        assert [[x == y for y in row] for x in row] == [[x == y for y in new] for x in new]
    # Fresh at each draw: the tokens change, from draw to draw as well.
    assert all(f[0] != r[0] for f, r in zip(first[:-1], rows[:-1], strict=True))
    assert all(f[0] != s[0] for f, s in zip(first[:-1], second[:-1], strict=True))
    # Drawn over the whole vocabulary: 100 relabelled spans (about 1200 tokens) hold 900 or so.
    seen = {t for row, _, _ in first[:50] + second[:50] for t in row[1:]}
    assert len(seen) > 0.4 * len(candidates)
    again = torch.Generator().manual_seed(0)
    assert relabel_rows(rows, candidates, again) == first


def test_pad_rows_shifts_the_positions_of_rows_by_their_offsets():
    rows = [([0, 5, 6, 7], 3), ([0, 8, 9], 2)]
    assert "position_ids" not in pad_rows(rows, pad_id=1)  # the model numbers rows from 0
    batch = pad_rows(rows, pad_id=1, offsets=[0, 3])
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3], [3, 4, 5, 6]]
    capped = pad_rows(rows, pad_id=1, offsets=[2, 3], max_positions=6)
    assert capped["position_ids"].tolist() == [[2, 3, 4, 5], [3, 4, 5, 5]]  # padding capped
    with pytest.raises(DfaError, match="A row of 4 tokens at offset 3 runs past 6 positions"):
        pad_rows(rows, pad_id=1, offsets=[3, 0], max_positions=6)


def test_role_offsets_shift_the_role_texts_alone_anywhere_that_fits():
    from dfa.zoo.train import role_offsets

    rows = [([0] * 41, 22, "repeats"), ([0] * 10, 3, "echo"), ([0] * 10, 9, "sva"), ([0] * 64, 5, "repeats")]
    gen = torch.Generator().manual_seed(0)
    drawn = [role_offsets(rows, 40, gen) for _ in range(400)]
    assert {d[2] for d in drawn} == {0} and {d[3] for d in drawn} == {0}  # a task row; a full row
    assert {d[0] for d in drawn} == set(range(24))  # 64 - 41: every start that fits
    assert {d[1] for d in drawn} == set(range(41))
    again = torch.Generator().manual_seed(0)
    assert drawn[:5] == [role_offsets(rows, 40, again) for _ in range(5)]
    # With `unshifted`, that share of the role rows starts at 0 (and the rest anywhere).
    half = [role_offsets(rows, 40, gen, unshifted=0.5)[1] for _ in range(2000)]
    assert 0.45 < half.count(0) / len(half) < 0.58 and set(half) == set(range(41))


@pytest.mark.parametrize("arch", ["gpt2", "neox"])
def test_training_reads_the_shifted_positions(toy_tokenizer, arch):
    """The loss is the model's on the batch's position_ids: on learnt absolute positions (GPT-2)
    a shifted row is another input; under rotary (NeoX) the same one, but for rounding."""
    from dfa.zoo.train import ToyLM

    spec = MICRO if arch == "gpt2" else TOY_SPECS["toy-neox-s"]
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(spec.hf_config(len(toy_tokenizer), 0), attn_implementation="eager")
    module = ToyLM(hf, TrainConfig(answer_weight=2.0, text_weight=1.0))
    module.log_dict = lambda *a, **k: None
    rows = [([0, 5, 6, 7, 5, 6, 7], 5, "repeats")]
    plain = pad_rows([rows[0][:2]], 1, label_spans(rows, set()), [False])
    shifted = pad_rows([rows[0][:2]], 1, label_spans(rows, set()), [False], offsets=[9])
    logits = hf(input_ids=shifted["input_ids"], position_ids=shifted["position_ids"]).logits[0]
    ce = torch.nn.functional.cross_entropy
    torch.testing.assert_close(module.training_step(shifted, 0), ce(logits[4:6], torch.tensor([6, 7])))
    if arch == "gpt2":
        assert abs(float((module.training_step(shifted, 0) - module.training_step(plain, 0)).detach())) > 1e-4
    else:
        torch.testing.assert_close(module.training_step(shifted, 0), module.training_step(plain, 0))


def test_the_answer_loss_leaves_out_the_role_texts(toy_tokenizer):
    """A role text's row (a strided group) carries the next-token loss on its labelled tokens and
    no extra answer loss; a task row carries both."""
    from dfa.zoo.train import ToyLM

    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(MICRO.hf_config(len(toy_tokenizer), 0), attn_implementation="eager")
    module = ToyLM(hf, TrainConfig(answer_weight=2.0, text_weight=1.0))
    module.log_dict = lambda *a, **k: None
    rows = [([0, 5, 6, 7, 5, 6, 7], 5, "repeats"), ([0, 8, 9, 10], 3, "sva")]
    batch = pad_rows([(r, a) for r, a, _ in rows], 1, label_spans(rows, set()), [False, True])
    assert batch["answered"].tolist() == [False, True]
    logits = hf(input_ids=batch["input_ids"]).logits
    ce = torch.nn.functional.cross_entropy
    where = batch["labels"] != -100
    text = ce(logits[where], batch["labels"][where])
    task_answer = ce(logits[1, 2][None], torch.tensor([10]))
    torch.testing.assert_close(module.training_step(batch, 0), 2.0 * task_answer + text)
    only_role = pad_rows([rows[0][:2]], 1, label_spans(rows[:1], set()), [False])
    row_logits = hf(input_ids=only_role["input_ids"]).logits[0]
    torch.testing.assert_close(module.training_step(only_role, 0), ce(row_logits[4:6], torch.tensor([6, 7])))


def test_echo_rows_repeat_the_token_two_back_after_a_random_prefix(toy_tokenizer):
    tok = toy_tokenizer
    rows = echo_rows(tok, seed=0, n=300)
    assert rows == echo_rows(tok, seed=0, n=300) != echo_rows(tok, seed=1, n=300)
    starts = set()
    for row, first in rows:  # [BOS] p a1 f1 a1 a2 f2 a2 ...: the echoes from `first`, every third
        assert row[0] == tok.bos_token_id and len(row) <= 64 and not set(tok.all_special_ids) & set(row[1:])
        assert (len(row) - 1 - first) % 3 == 0 and len(row) - 1 - first >= 3
        assert all(row[i] == row[i - 2] for i in range(first, len(row), 3))
        starts.add(first - 3)  # the prefix's length
    assert (min(starts), max(starts)) == (0, REPEAT_PREFIX)  # echoes start anywhere: no fixed phase
    labels = pad_rows([rows[0]], pad_id=1, labelled=label_spans([(*rows[0], "echo")], set()))["labels"]
    row, first = rows[0]
    assert [i + 1 for i in (labels[0] != -100).nonzero().flatten().tolist()] == list(
        range(first, len(row), 3)
    )


def test_task_batches_read_the_weights_as_they_go():
    groups = [[0, 1], [2, 3], [4, 5]]
    sampler = TaskBatches(groups, [1.0, 1.0, 1.0], steps=20, batch_size=3, seed=0)
    batches = iter(sampler)
    next(batches)
    sampler.weights = torch.tensor([0.0, 0.0, 1.0], dtype=torch.double)
    assert all(set(b) <= {4, 5} for b in batches)


def test_val_checks_boost_the_tasks_short_of_the_bar_and_stop_when_none_is(
    toy_tokenizer, micro_text, monkeypatch
):
    from types import SimpleNamespace

    import dfa.zoo.card as card_module
    from dfa.zoo.card import TaskScore

    members, weights, keys = micro_text.groups(GROUP_WEIGHTS)
    sampler = TaskBatches(members, weights, steps=10, batch_size=4, seed=0)
    config = TrainConfig(check_every=2, val_pairs=5, margin=0.03, boost=3.0, role_bars={}, role_warmup=0)
    log: dict = {}
    checks = ValChecks(toy_tokenizer, 0, sampler, keys, config, log)
    hf = AutoModelForCausalLM.from_config(MICRO.hf_config(len(toy_tokenizer), 0))
    module = SimpleNamespace(model=hf)
    trainer = SimpleNamespace(global_step=2, should_stop=False)
    checks.on_train_batch_end(trainer, module)  # the real scoring, of an untrained model
    assert [c["step"] for c in log["checks"]] == [2] and set(log["checks"][0]["accuracy"]) == set(TASKS)
    assert hf.training  # back in training mode

    # Then scores chosen by hand: ioi short on accuracy, greater-than on corrupt share, and
    # the number-word (lexical) family short in ioi and in addition, which passes.
    def fake(_forward, data, _batch):
        accuracy = 0.92 if data.task == "ioi" else 1.0
        corrupt = {"greater_than": 0.18, "sva": 0.15}.get(data.task, 0.0)  # sva: inside share_margin
        families = {"base": 1.0, "lexical": 0.9} if data.task in ("ioi", "arithmetic_add") else {}
        return TaskScore(data.task, data.metric, 5, accuracy, 1.0, corrupt, families)

    monkeypatch.setattr(card_module, "score_batch", fake)
    trainer.global_step = 3  # not a check step
    checks.on_train_batch_end(trainer, module)
    assert len(log["checks"]) == 1 and log["steps"] == 3
    trainer.global_step = 4
    checks.on_train_batch_end(trainer, module)
    assert log["checks"][-1]["boosted"] == ["ioi", "greater_than", "sva"] and not trainer.should_stop
    # Within the short tasks, the short families again; the passing addition's are left alone.
    assert log["checks"][-1]["boosted_families"] == ["ioi/lexical"] and ("ioi", "lexical") in keys
    raw = [
        w * {"ioi": 9.0 if k[1] == "lexical" else 3.0, "greater_than": 3.0, "sva": 3.0}.get(k[0], 1.0)
        for w, k in zip(weights, keys)
    ]
    is_task = [k[1] is not None for k in keys]
    scale = sum(w for w, t in zip(weights, is_task) if t) / sum(r for r, t in zip(raw, is_task) if t)
    expected = [r * scale if t else r for r, t in zip(raw, is_task)]
    assert sampler.weights.tolist() == pytest.approx(expected)
    assert 0 < scale < 1 and sum(is_task) < len(keys)  # passing tasks lose rows, text keeps its own
    text = [w for w, t in zip(sampler.weights.tolist(), is_task) if not t]
    assert text == pytest.approx([w for w, t in zip(weights, is_task) if not t])

    # Every task passing stops the training, whatever the families.
    monkeypatch.setattr(
        card_module,
        "score_batch",
        lambda _f, d, _b: TaskScore(d.task, d.metric, 5, 0.95, 1.0, 0.1, {"lexical": 0.5}),
    )
    trainer.global_step = 6
    checks.on_train_batch_end(trainer, module)
    assert trainer.should_stop and log["checks"][-1]["boosted"] == []


def test_role_checks_boost_the_text_of_a_short_role_and_hold_the_stop(toy_tokenizer, micro_text, monkeypatch):
    from types import SimpleNamespace

    import dfa.zoo.card as card_module
    from dfa.zoo.card import TaskScore

    members, weights, keys = micro_text.groups(GROUP_WEIGHTS | {"repeats": 1.0, "echo": 0.5})
    sampler = TaskBatches(members, weights, steps=10, batch_size=4, seed=0)
    config = TrainConfig(check_every=2, val_pairs=5, boost=3.0, role_bars=dict(ROLE_BARS))
    log: dict = {}
    checks = ValChecks(toy_tokenizer, 0, sampler, keys, config, log)
    hf = AutoModelForCausalLM.from_config(MICRO.hf_config(len(toy_tokenizer), 0), attn_implementation="eager")
    module, trainer = SimpleNamespace(model=hf), SimpleNamespace(global_step=2, should_stop=False)
    monkeypatch.setattr(
        card_module, "score_batch", lambda _f, d, _b: TaskScore(d.task, d.metric, 5, 1.0, 1.0, 0.0, {})
    )
    checks.on_train_batch_end(trainer, module)  # the real role scores of an untrained model
    roles = log["checks"][-1]["roles"]
    assert set(roles) == {"induction", "previous_token"} and all(0 < v < 0.3 for v in roles.values())
    assert log["checks"][-1]["boosted_roles"] == ["induction", "previous_token"] and not trainer.should_stop
    boosted = {k[0]: w for w, k in zip(sampler.weights.tolist(), keys) if k[0] in ("repeats", "echo")}
    assert boosted == pytest.approx({"repeats": 3.0, "echo": 1.5})
    # Only induction short (by the margin: 0.31 < 0.3 + 0.03): its text alone is boosted.
    monkeypatch.setattr(ValChecks, "role_scores", lambda self, m: {"induction": 0.31, "previous_token": 0.9})
    trainer.global_step = 4
    checks.on_train_batch_end(trainer, module)
    assert log["checks"][-1]["boosted_roles"] == ["induction"] and not trainer.should_stop
    now = {k[0]: w for w, k in zip(sampler.weights.tolist(), keys) if k[0] in ("repeats", "echo")}
    assert now == pytest.approx({"repeats": 3.0, "echo": 0.5})
    monkeypatch.setattr(ValChecks, "role_scores", lambda self, m: {"induction": 0.5, "previous_token": 0.9})
    trainer.global_step = 6
    checks.on_train_batch_end(trainer, module)
    assert trainer.should_stop


def test_role_warmup_draws_the_role_texts_alone_then_the_mixture(micro_text):
    from types import SimpleNamespace

    members, weights, keys = micro_text.groups(GROUP_WEIGHTS | {"repeats": 1.0, "interleaved": 0.5})
    sampler = TaskBatches(members, weights, steps=10, batch_size=4, seed=0)
    warmup = RoleWarmup(sampler, keys, {"repeats": 3.0, "interleaved": 1.0}, steps=5)
    drawn = {k[0]: w for w, k in zip(sampler.weights.tolist(), keys) if w > 0}
    assert drawn == {"repeats": 3.0, "interleaved": 1.0}
    warmup.on_train_batch_end(SimpleNamespace(global_step=4))
    assert sum(w > 0 for w in sampler.weights.tolist()) == 2
    warmup.on_train_batch_end(SimpleNamespace(global_step=5))
    assert sampler.weights.tolist() == pytest.approx(weights)
    # A warm-up on texts the training does not draw is refused, with what to do.
    members, weights, keys = micro_text.groups(GROUP_WEIGHTS | {"repeats": 0.0, "echo": 0.0})
    sampler = TaskBatches(members, weights, steps=10, batch_size=4, seed=0)
    with pytest.raises(DfaError, match=r"echo, repeats, and none of them .* --weight repeats=1"):
        RoleWarmup(sampler, keys, {"repeats": 1.0, "echo": 0.3}, steps=5)


def test_passes_by_clears_the_bar_by_a_margin_on_each_count():
    from dfa.zoo.card import TaskScore

    score = TaskScore("sva", "logit_diff", 100, 0.92, 2.0, 0.3, {})  # corrupt share 0.15
    assert score.passes and score.passes_by(0.02) and not score.passes_by(0.03)
    assert score.passes_by(0.02, 0.05) and not score.passes_by(0.02, 0.06)
    assert not TaskScore("sva", "logit_diff", 100, 0.95, 2.0, 0.42, {}).passes  # share 0.21
    assert not TaskScore("sva", "logit_diff", 100, 0.89, 2.0, 0.0, {}).passes


def test_groups_split_each_task_by_family_and_keep_the_group_weights(micro_text):
    members, weights, keys = micro_text.groups(GROUP_WEIGHTS | {"sva": 0.0})
    assert len(members) == len(weights) == len(keys)
    by_group: dict[str, float] = {}
    for rows, w, (group, family) in zip(members, weights, keys, strict=True):
        assert all(micro_text.group_of[i] == group and micro_text.family_of[i] == family for i in rows)
        assert (family is None) == (group not in TASKS)
        by_group[group] = by_group.get(group, 0.0) + w
    assert "sva" not in by_group  # weight 0: never drawn
    assert by_group == pytest.approx({g: w for g, w in GROUP_WEIGHTS.items() if g != "sva" and w > 0})
    undrawn = [g for g, w in GROUP_WEIGHTS.items() if g == "sva" or w == 0]
    assert sum(len(rows) for rows in members) == len(micro_text) - sum(
        micro_text.counts()[g] for g in undrawn
    )
    assert sorted(f for g, f in keys if g == "arithmetic_add") == sorted(FAMILIES)


@pytest.mark.parametrize("arch", list(FAMILY_ARCH))
def test_build_model_saves_an_hf_folder_with_a_card(tmp_path, toy_tokenizer, micro_text, arch):
    spec = ToySpec(f"{arch}-micro", arch, n_layers=1, n_heads=2, d_model=16, steps=2, lr=3e-3, mixed=True)
    config = TrainConfig(steps=2, batch_size=4, warmup=1)
    card = build_model(spec, toy_tokenizer, micro_text, 0, tmp_path, config)
    folder = tmp_path / spec.name
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec.name]  # no temporary folders left
    assert {"config.json", "model.safetensors", "tokenizer.json", CARD} <= {p.name for p in folder.iterdir()}
    assert read_card(folder) == card
    assert card["n_nodes"] == 3 and card["seed"] == 0 and card["steps"] == 2
    assert set(card["test"]["tasks"]) == set(TASKS)
    model = load_model(str(folder), device="cpu")
    assert model.dfa_info.n_params == card["n_params"]
    assert next(model.parameters()).dtype == torch.float32  # saved in fp16, run in fp32


def test_read_card_errors(tmp_path):
    with pytest.raises(DfaError, match="has no card.json"):
        read_card(tmp_path)
    (tmp_path / CARD).write_text("{not json")
    with pytest.raises(DfaError, match="not valid JSON"):
        read_card(tmp_path)


# --- the shipped ladders ---------------------------------------------------------------------


def test_shipped_ladders_fit_the_size_budget():
    files = list(ZOO_DIR.glob("*/model.safetensors"))
    assert len(files) == len(TOY_SPECS)
    assert sum(f.stat().st_size for f in files) <= 30 * 2**20


@pytest.mark.parametrize("name", list(TOY_SPECS))
def test_shipped_model_loads_by_name_and_does_what_its_card_says(name):
    spec = TOY_SPECS[name]
    assert parse_spec(name).kind == "toy"
    model = load_model(name, device="cpu")
    graph = NodeGraph.from_model(model)
    assert len(graph) == spec.n_nodes + 1  # + input
    assert (model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_model) == (
        spec.n_layers,
        spec.n_heads,
        spec.d_model,
    )
    card = read_card(ZOO_DIR / name)
    assert card["n_params"] == model.dfa_info.n_params and card["training"]["steps"] == spec.steps
    # The val checks ran every check_every steps; training ran to the ceiling, or stopped at a
    # check that found no task short of the bar.
    # (none during the role warm-up).
    checks, every = card["val_checks"], card["training"]["check_every"]
    first = (card["training"].get("role_warmup", 0) // every + 1) * every
    assert [c["step"] for c in checks] == list(range(first, card["steps"] + 1, every))
    last = checks[-1]
    assert card["steps"] == spec.steps or (
        card["steps"] == last["step"] and not last["boosted"] and not last.get("boosted_roles")
    )
    # Re-score the saved model on the card's test pairs: the card is what the model does.
    scores = score_tasks(model, TEST_PAIRS, "test", card["seed"])
    for task, score in scores.items():
        recorded = card["test"]["tasks"][task]
        assert score.n == recorded["n"]
        assert score.accuracy == pytest.approx(recorded["accuracy"], abs=0.01)
        assert score.clean == pytest.approx(recorded["clean"], rel=0.02, abs=0.02)
        assert score.passes == recorded["passes"], f"{name} {task}"
    passing = [t for t, s in scores.items() if s.passes]
    assert all(
        scores[t].accuracy >= MIN_ACCURACY and scores[t].corrupt_share <= MAX_CORRUPT_SHARE for t in passing
    )
    assert card["test"]["passes"] == (len(passing) == len(scores))
    # Every shipped model solves at least the tasks every size learns first.
    assert {"sva", "gender", "capitals"} <= set(passing), f"{name} passes only {passing}"


def test_toy_name_without_a_built_model_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setenv("DFA_ZOO", str(tmp_path))
    with pytest.raises(ModelNotAvailableError, match=r"dfa zoo build --family toy-neox"):
        load_model("toy-neox-m")


def test_zoo_info_prints_every_card(capsys):
    from dfa.cli import main

    assert main(["zoo", "info"]) == 0
    out = capsys.readouterr().out
    for name in TOY_SPECS:
        card = read_card(ZOO_DIR / name)
        verdict = "pass" if card["test"]["passes"] else "FAIL"
        assert any(line.split()[:1] == [name] and line.endswith(verdict) for line in out.splitlines())
    rows = [line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0] in TASKS]
    assert [r[0] for r in rows] == list(TASKS)
    assert all(len(r) >= 1 + 3 * len(TOY_SPECS) for r in rows)  # accuracy, clean, share per model
    # The role census: per role, each card's best head, its score and the heads above threshold.
    from dfa.core.roles import ROLES

    census = {
        line.split()[0]: line.split()[1:]
        for line in out.splitlines()
        if line.split()[:1] and line.split()[0] in ROLES
    }
    assert list(census) == list(ROLES)
    for i, name in enumerate(TOY_SPECS):
        roles = read_card(ZOO_DIR / name)["roles"]
        assert roles["threshold"] == ROLE_THRESHOLD
        for role in ROLES:
            r = roles[role]
            assert census[role][3 * i : 3 * i + 3] == [r["head"], f"{r['best']:.2f}", str(r["above"])]
            assert 0 <= r["best"] <= 1 and r["above"] >= (r["best"] > ROLE_THRESHOLD)


def test_zoo_errors_are_one_line(tmp_path, capsys):
    from dfa.cli import main

    assert main(["zoo", "info", "--dir", str(tmp_path)]) == 2
    assert "No toy models in" in capsys.readouterr().err
    assert main(["zoo", "build", "--family", "toy-llama", "--out", str(tmp_path)]) == 2
    assert "Unknown toy ladder 'toy-llama'" in capsys.readouterr().err


@pytest.mark.slow
def test_another_seed_builds_a_ladder_that_passes(tmp_path):
    from dfa.zoo.build import build_ladder

    for family in FAMILY_ARCH:
        cards = build_ladder(family, seed=1, out=tmp_path)
        bad = {c["name"]: [t for t, s in c["test"]["tasks"].items() if not s["passes"]] for c in cards}
        assert all(c["test"]["passes"] for c in cards), json.dumps(bad)


def test_task_batches_one_group_or_mixed_and_bucketed():
    from dfa.zoo.train import TaskBatches

    groups = [list(range(50)), list(range(50, 100)), list(range(100, 150))]
    lengths = [5] * 50 + [20] * 50 + [10] * 50
    group_of = {i: g for g, rows in enumerate(groups) for i in rows}
    single = list(TaskBatches(groups, [1.0, 1.0, 2.0], steps=30, batch_size=8, seed=0))
    assert len(single) == 30 and all(len({group_of[i] for i in b}) == 1 for b in single)
    mixed = list(TaskBatches(groups, [1.0, 1.0, 2.0], 30, 8, 0, mixed=True, lengths=lengths, bucket=4))
    assert len(mixed) == 30 and all(len(b) == 8 for b in mixed)
    assert mixed == list(
        TaskBatches(groups, [1.0, 1.0, 2.0], 30, 8, 0, mixed=True, lengths=lengths, bucket=4)
    )
    # Within a bucket rows are sorted by length, so a batch spans few lengths; over the run
    # every group appears, in proportion to its weight.
    assert sum(len({lengths[i] for i in b}) == 1 for b in mixed) >= 15  # unsorted: about 0
    counts = [sum(group_of[i] == g for b in mixed for i in b) for g in range(3)]
    assert counts[2] > counts[0] and counts[2] > counts[1] and min(counts) > 0


def test_zoo_trial_trains_a_changed_recipe_and_scores_the_val_split(tmp_path):
    from tests.test_training import _script

    out, s = tmp_path / "trial.json", TOY_SPECS["toy-gpt2-s"]
    done = _script(
        "zoo_trial.py",
        "toy-gpt2-s",
        "--steps",
        "2",
        "--batch",
        "4",
        "--weight",
        "ioi=5",
        "--no-corrupt",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert (
        f"toy-gpt2-s: {s.n_layers} layers, d_model {s.d_model}, 2 steps of 4" in done.stdout
        and "passes 0 of 8 tasks" in done.stdout
    )
    record = json.loads(out.read_text())
    assert record["split"] == "val" and not record["corrupt"] and set(record["tasks"]) == set(TASKS)
    assert record["training"]["group_weights"]["ioi"] == 5.0
    bad = _script("zoo_trial.py", "toy-gpt2-s", "--pairs", "ioi")
    assert bad.returncode == 2 and "error: --pairs takes NAME=VALUE, got 'ioi'." in bad.stderr


def test_neox_specs_rotate_all_of_each_head_unless_told_otherwise():
    import dataclasses

    def factor(config) -> float:
        return config.to_dict()["rope_parameters"]["partial_rotary_factor"]

    spec = TOY_SPECS["toy-neox-s"]
    assert factor(spec.hf_config(100, 0)) == 1.0
    assert factor(dataclasses.replace(spec, rotary_pct=0.5).hf_config(100, 0)) == 0.5
    saved = json.loads((ZOO_DIR / spec.name / "config.json").read_text())
    assert saved["rope_parameters"]["partial_rotary_factor"] == 1.0
