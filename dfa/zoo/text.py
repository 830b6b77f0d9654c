"""The training text of the toy models: the task prompts with their answers, and the text beyond them.

The role texts: `repeat_rows`, `echo_rows`, `interleaved_rows`.
"""

from __future__ import annotations

import random
from collections import Counter

from torch.utils.data import Dataset

from dfa.core.tasks import TASKS, make_dataset, split_of
from dfa.zoo.spec import TASK_PAIRS, TRAIN_PAIRS


def corrupt_answers(task: str, ex) -> tuple[int, ...]:
    """The right answers to a pair's corrupt prompt, which is a prompt of the task in its own
    right: greater-than's start year 01 leaves every later year (02-99) right; ioi's third name
    leaves either of the two introduced names; every other task's corrupt prompt is answered
    by the clean prompt's wrong answer."""
    if task == "greater_than":
        return (*ex.answers, *ex.wrongs[2:])  # wrongs are the years 00, 01, ... up to the start
    if task == "ioi":
        return (*ex.answers, *ex.wrongs)
    return ex.wrongs


# How often each group of text is drawn: the tasks that take longest to learn, more often.
GROUP_WEIGHTS = {
    "ioi": 8.0,
    "mcqa": 5.0,
    "arithmetic_add": 3.0,
    "arithmetic_sub": 3.5,
    "capitals": 0.75,
    "greater_than": 1.0,
    "sva": 0.5,
    "gender": 1.0,
    "atlas": 0.5,
    "ordinal": 0.5,
    "glossary": 1.0,
    "tables": 0.5,
    # The texts that grow head roles (repeated spans, echo rows, interleaved runs): 0 here; a
    # ladder built to grow roles draws spans and echoes by zoo.train.ROLE_TEXT_WEIGHTS (the NeoX
    # ladder, see zoo.spec.FAMILY_ROLES). Interleaved runs are not drawn by any build.
    "repeats": 0.0,
    "interleaved": 0.0,
    "echo": 0.0,
}


# The groups trained on every token: the text beyond the task prompts (the pretraining
# stand-in), and ioi, whose prompts repeat a name (predicting it trains the heads that find the
# names in context, which ioi is built on). On toy-gpt2-m (val), answer-only ioi rows stayed at
# chance for 9000 steps; with its text, ioi passed by step 7500, and by step 2000 at weight 8.
TEXT_GROUPS = ("atlas", "glossary", "ordinal", "tables", "ioi")
# The groups labelled from their answer on, every n-th token: a repeated random span's second
# copy, which the heads that look back for the current token's earlier occurrence can predict
# (its first copy is random: a loss on it would only push the model towards a uniform guess),
# an interleaved run's items, not its random fillers, and an echo row's echoes (every third
# token from the first), not its random tokens.
STRIDED_GROUPS = {"repeats": 1, "interleaved": 2, "echo": 3}
# The role texts whose tokens are uniform draws from the vocabulary (the special tokens aside):
# any permutation of the vocabulary maps a row to another row of the same text, equally likely.
RANDOM_GROUPS = ("repeats", "echo")
# The text that grows each head role the val checks watch (see zoo.train.ROLE_BARS).
ROLE_GROUPS = {"induction": "repeats", "previous_token": "echo"}
REPEAT_ROWS = 20000
REPEAT_SPAN = (4, 20)  # span lengths, both ends included
REPEAT_PREFIX = 20  # [BOS] p r r fits the 64 positions


def _vocab(tokenizer) -> list[int]:
    """Every token id but the special ones: what the role probes of `dfa.core.roles` draw from."""
    from dfa.core.roles import candidate_tokens

    return candidate_tokens(tokenizer, len(tokenizer)).tolist()


def repeat_rows(
    tokenizer,
    seed: int,
    n: int = REPEAT_ROWS,
    span: tuple[int, int] = REPEAT_SPAN,
    prefix: int = REPEAT_PREFIX,
):
    """`n` rows `[BOS] p r r`: `r` a span of distinct tokens drawn uniformly from the whole
    vocabulary less its special tokens, of a length drawn from `span`, after a random prefix `p`
    of 0 to `prefix` tokens (so that where the copies sit says nothing), and the index of the
    second copy's second token (the first one induction can predict). This is the classic data
    that grows induction heads, and the previous-token heads they read from; no task prompt
    has this form, and every token of the vocabulary appears in it, as in pretraining text."""
    vocab = _vocab(tokenizer)
    rng = random.Random(f"zoo-repeats\x00{seed}")
    rows = []
    for _ in range(n):
        r = rng.sample(vocab, rng.randint(*span))
        p = [rng.choice(vocab) for _ in range(rng.randint(0, prefix))]
        rows.append(([tokenizer.bos_token_id, *p, *r, *r], len(p) + len(r) + 2))
    return rows


def interleaved_rows(tokenizer, seed: int, n: int = REPEAT_ROWS, items: tuple[int, int] = (5, 14)):
    """`n` rows `[BOS] a1 f1 a2 f2 a3 ...`: a run of consecutive items (numbers, number words,
    days, months) interleaved with random tokens, and the index of `a2`. Predicting an item
    after a filler needs the token before the current one: previous-token heads have this to
    do, and successor heads (item to next item) too."""
    from dfa.core.tasks.words import NUMBER_WORDS

    def single(texts):
        ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        return [i[0] for i in ids if len(i) == 1]

    runs = [
        single([f" {k}" for k in range(1000)]),
        single([" " + w for w in NUMBER_WORDS]),
        single([" " + d for d in DAYS] * 3),
        single([" " + m for m in MONTHS] * 2),
    ]
    vocab = _vocab(tokenizer)
    rng = random.Random(f"zoo-interleaved\x00{seed}")
    rows = []
    for _ in range(n):
        run = rng.choice(runs)
        m = rng.randint(*items)
        at = rng.randrange(len(run) - m + 1)
        row = [tokenizer.bos_token_id]
        for item in run[at : at + m]:
            row += [item, rng.choice(vocab)]
        rows.append((row[:-1], 3))
    return rows


def atlas_texts() -> list[tuple[str, str]]:
    """One line per country and state stating its capital, in a form no task template uses
    ('Atlas: France, capital Paris.'). A recall task cannot be solved for a country the model
    never saw; real models learn such facts from pretraining text, not from the test prompts."""
    from dfa.core.tasks import words as W

    table = {**W.COUNTRY_CAPITALS, **W.STATE_CAPITALS}
    return [(f"Atlas: {place}, capital", f" {capital}.") for place, capital in sorted(table.items())]


DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = "January February March April May June July August September October November December".split()


def ordinal_texts(run: int = 6) -> list[str]:
    """Counting lines: runs of years, numbers, number words, days and months, each number word
    beside its digits, and spans of years from every start year to a later one. Like the
    ordinal text of pretraining, they teach what every number token means, including those no
    task prompt uses as an operand (greater-than's corrupt start year '01')."""
    from dfa.core.tasks.words import NUMBER_WORDS

    rng = random.Random("ordinal")
    lines = []
    for century in range(11, 18):
        for start in range(0, 100 - run + 1, 3):
            lines.append("Years:" + "".join(f" {century}{y:02d}" for y in range(start, start + run)))
        for start in range(99):
            lines.append(f"Span: {century}{start:02d} to {century}{rng.randint(start + 1, 99):02d}.")
    lines += ["Count:" + "".join(f" {n}" for n in range(a, a + run)) for a in range(200 - run + 1)]
    words = NUMBER_WORDS
    lines += ["Count: " + " ".join(words[a : a + run]) for a in range(len(words) - run + 1)]
    lines += [f"Number: {w} is {n}." for n, w in enumerate(words)]
    for cycle in (DAYS, MONTHS):
        for a in range(len(cycle)):
            lines.append("Then: " + " ".join(cycle[(a + i) % len(cycle)] for i in range(run)))
    return lines


def glossary_texts() -> list[tuple[str, str]]:
    """One line per word and category it belongs to ('Glossary: apple, fruit.'), the
    knowledge multiple-choice questions ask about."""
    from dfa.core.tasks.suite import MCQA_CATEGORIES

    pairs = {(x, cat) for table in MCQA_CATEGORIES.values() for cat, xs in table.items() for x in xs}
    return [(f"Glossary: {x}, kind", f" {cat}.") for x, cat in sorted(pairs)]


def table_texts() -> list[tuple[str, str]]:
    """The sums and differences of number words that arithmetic's number-word family asks about
    ('Sum: seven and five make twelve.', 'Take: five from twelve leaves seven.'), in a form no
    task template uses. That family has one template and operands up to ten (addition) or
    twenty (subtraction), so its test prompts are operand pairs no train prompt has: like a
    capital, such a sum is a fact that real models learn from pretraining text. Without the
    table the family stayed at 47-82% (test) while the digits passed."""
    from dfa.core.tasks.words import NUMBER_WORDS as W

    sums = [(f"Sum: {W[a]} and {W[b]} make", f" {W[a + b]}.") for a in range(11) for b in range(11)]
    takes = [(f"Take: {W[b]} from {W[a]} leaves", f" {W[a - b]}.") for a in range(21) for b in range(a + 1)]
    return sums + takes


def echo_rows(tokenizer, seed: int, n: int = REPEAT_ROWS, prefix: int = REPEAT_PREFIX, width: int = 40):
    """`n` rows `[BOS] p a1 f1 a1 a2 f2 a2 ...`: after a random prefix `p` of 0 to `prefix` tokens,
    triples of random tokens whose third repeats the first (the token before the current one),
    filling about `width` tokens; and the index of the first echo. Predicting an echo needs the
    previous token and nothing else: this is the text that grows previous-token heads. The
    prefix is what makes it work on learned absolute positions: toy-gpt2-s trained on echoes
    that always start at position 1 predicted them (loss 0.006 by step 500) with heads that look
    back one token only at the positions where echoes sit (previous-token score 0.36 on repeated
    random tokens); with the prefix, 0.95 by step 250."""
    vocab = _vocab(tokenizer)
    rng = random.Random(f"zoo-echo\x00{seed}")
    rows = []
    for _ in range(n):
        row = [tokenizer.bos_token_id, *(rng.choice(vocab) for _ in range(rng.randint(0, prefix)))]
        first = len(row) + 2
        for _ in range(max(2, (width - len(row)) // 3)):
            a = rng.choice(vocab)
            row += [a, rng.choice(vocab), a]
        rows.append((row, first))
    return rows


def extra_texts() -> list[str]:
    """The text beyond the task prompts, for the tokenizer's vocabulary."""
    return [p + a for p, a in atlas_texts() + glossary_texts() + table_texts()] + ordinal_texts()


class TaskText(Dataset):
    """Token rows with BOS first (the policy every dfa model runs with) and the index of the
    answer token in each: every task's train pairs as the clean prompt followed by one right
    answer (sets of answers, as greater-than's, get one member drawn per pair), the atlas, the
    glossary and the counting lines.

    `pairs` is the number of train pairs per task (a dict: per task, TRAIN_PAIRS for the rest).
    With `corrupt`, a pair's corrupt prompt is a row too, with its own right answer (see
    `corrupt_answers`), where that prompt would itself fall in the train split. `role_rows`
    repeated spans (after a random prefix of 0 to `span_prefix` tokens) and as many interleaved
    runs and echo rows (`repeat_rows`, `interleaved_rows`, `echo_rows`) follow."""

    def __init__(
        self,
        tokenizer,
        seed: int,
        pairs: int | dict[str, int] = TASK_PAIRS,
        corrupt: bool = True,
        role_rows: int = REPEAT_ROWS,
        span_prefix: int = REPEAT_PREFIX,
    ):
        rng = random.Random(f"zoo-text\x00{seed}")
        self.pairs, self.corrupt, self.span_prefix = pairs, corrupt, span_prefix
        self.rows: list[tuple[list[int], int]] = []
        self.group_of: list[str] = []
        self.family_of: list[str | None] = []  # a task row's variation family; None for text
        self.is_corrupt: list[bool] = []
        bos = tokenizer.bos_token_id

        def encode(text: str) -> list[int]:
            return tokenizer(text, add_special_tokens=False)["input_ids"]

        def add(
            row: list[int], answer_at: int, group: str, family: str | None = None, is_corrupt: bool = False
        ) -> None:
            self.rows.append((row, answer_at))
            self.group_of.append(group)
            self.family_of.append(family)
            self.is_corrupt.append(is_corrupt)

        for name in TASKS:
            n = pairs.get(name, TRAIN_PAIRS) if isinstance(pairs, dict) else pairs
            for ex in make_dataset(name, tokenizer, n, "train", seed, allow_fewer=True):
                prompts = [(ex.clean_ids, ex.answers, False)]
                # Prompts are split by their text, so a corrupt prompt whose text would fall in
                # the val or test split (another pair's clean prompt there) is never trained on.
                if corrupt and split_of(ex.corrupt, seed) == "train":
                    prompts.append((ex.corrupt_ids, corrupt_answers(name, ex), True))
                for ids, answers, is_corrupt in prompts:
                    add([bos, *ids, rng.choice(answers)], len(ids) + 1, name, ex.family, is_corrupt)
        for group, lines in (
            ("atlas", atlas_texts()),
            ("glossary", glossary_texts()),
            ("tables", table_texts()),
        ):
            for prompt, rest in lines:
                head = [bos, *encode(prompt)]
                add(head + encode(rest), len(head), group)
        for line in ordinal_texts():
            row = [bos, *encode(line)]
            add(row, len(row) - 1, "ordinal")
        for row, answer_at in repeat_rows(tokenizer, seed, role_rows, prefix=span_prefix):
            add(row, answer_at, "repeats")
        for row, answer_at in interleaved_rows(tokenizer, seed, role_rows):
            add(row, answer_at, "interleaved")
        for row, answer_at in echo_rows(tokenizer, seed, role_rows):
            add(row, answer_at, "echo")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.rows[i]

    def labelled(self) -> Dataset:
        """The rows with their group: `(row, answer_at, group)`."""
        return _Labelled(self)

    def counts(self) -> dict[str, int]:
        """Rows per group (a task's distinct train pairs, the atlas, the counting lines), and the
        corrupt prompts among them (`"<task> corrupt"`) where there are any."""
        corrupt = Counter(f"{g} corrupt" for g, c in zip(self.group_of, self.is_corrupt) if c)
        return dict(Counter(self.group_of)) | dict(corrupt)

    def groups(
        self, weights: dict[str, float]
    ) -> tuple[list[list[int]], list[float], list[tuple[str, str | None]]]:
        """Row indices per part of a group (a task's variation family; a text group is one part),
        each part's sampling weight (its group's weight, shared by the parts' row counts), and
        the parts' keys `(group, family)` (family None for text). Drawing the parts by these
        weights draws the groups by `weights`; the val checks boost a lagging family alone."""
        parts: dict[tuple[str, str | None], list[int]] = {}
        for i, key in enumerate(zip(self.group_of, self.family_of)):
            if weights.get(key[0], 0) > 0:
                parts.setdefault(key, []).append(i)
        size = Counter(self.group_of)
        keys = list(parts)
        shares = [weights[g] * len(parts[(g, f)]) / size[g] for g, f in keys]
        return [parts[k] for k in keys], shares, keys


class _Labelled(Dataset):
    def __init__(self, text: TaskText):
        self.text = text

    def __len__(self) -> int:
        return len(self.text)

    def __getitem__(self, i: int) -> tuple[list[int], int, str]:
        return (*self.text.rows[i], self.text.group_of[i])
