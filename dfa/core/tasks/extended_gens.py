"""The generator factories of the extended task suite (`dfa.core.tasks.extended`): a relation
looked up in a table, in-context pairs, succession, copying, tracking, in-context labels and
comparison. A generator draws one clean/corrupt `Candidate` for a variation family."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from dfa.core.tasks import extended_words as X
from dfa.core.tasks.base import Candidate, Generator

Templates = Mapping[str, Sequence[str]]

def _halves(table: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """A table's entries split in two (every other key, sorted): the base families draw from the
    first, the lexical family from the second, so lexical prompts use words base never shows."""
    keys = sorted(table)
    return {k: table[k] for k in keys[::2]}, {k: table[k] for k in keys[1::2]}


def _template(rng: random.Random, templates: Templates, family: str) -> str:
    return rng.choice(templates.get(family) or templates["base"])


def _pair(rng: random.Random, table: Mapping[str, str]) -> tuple[str, str]:
    """Two entries of `table` whose values differ: the clean one and its corrupt replacement."""
    keys = sorted(table)
    clean = rng.choice(keys)
    return clean, rng.choice([k for k in keys if table[k] != table[clean]])


def relation(
    table: Mapping[str, str], templates: Templates, lexical_table: Mapping[str, str] | None = None
) -> Generator:
    """`{X}` in a template names an entry; the answer is the entry's value. The corrupt prompt
    names another entry with another value. Base, syntactic and domain draw from one half of the
    table, lexical from the other; or, given `lexical_table`, from the whole table and that one."""
    base, lexical = (table, lexical_table) if lexical_table is not None else _halves(table)

    def generate(rng: random.Random, family: str) -> Candidate:
        entries = lexical if family == "lexical" else base
        template = _template(rng, templates, family)
        x, y = _pair(rng, entries)
        clean, corrupt = template.format(X=x), template.format(X=y)
        return Candidate(clean, corrupt, (" " + entries[x],), (" " + entries[y],), family, clean)

    return generate


def few_shot(table: Mapping[str, str], formats: Mapping[str, tuple[str, str]], shots: int = 3) -> Generator:
    """In-context pairs: `shots` demonstrations `line.format(X=k, Y=v)` joined by `sep`, then the
    query `k` whose value is the answer; the corrupt prompt asks for another key (same demos)."""
    base, lexical = _halves(table)

    def generate(rng: random.Random, family: str) -> Candidate:
        entries = lexical if family == "lexical" else base
        line, sep = formats.get(family) or formats["base"]
        x, y = _pair(rng, entries)
        demos = rng.sample([k for k in sorted(entries) if k not in (x, y)], shots)
        head = sep.join(line.format(X=k, Y=" " + entries[k]) for k in demos) + sep

        def ask(k: str) -> str:  # the query line up to where its value would stand
            return head + line.split("{Y}")[0].format(X=k)

        return Candidate(ask(x), ask(y), (" " + entries[x],), (" " + entries[y],), family, ask(x))

    return generate


def reflexive() -> Generator:
    """A noun phrase whose reflexive pronoun agrees with it (gender and number)."""
    templates = {
        "base": ["The {X} hurt", "The {X} looked at"],
        "syntactic": [
            "After the long race, the {X} was proud of",
            "In the mirror, the {X} could see",
            "Nobody helped, so the {X} had to help",
        ],
        "domain": ["During the match, the {X} injured", "At the party, the {X} really enjoyed"],
    }
    return relation(X.REFLEXIVE_NOUNS, templates, X.REFLEXIVE_NOUNS_LEXICAL)


# --- sequences and succession ---------------------------------------------------------------------------
def succession(
    sequences: Mapping[str, Sequence[str]],
    templates: Templates,
    cyclic: bool,
    min_shown: int = 2,
    max_shown: int = 4,
) -> Generator:
    """`{SEQ}` lists `min_shown`..`max_shown` consecutive items of the family's sequence (joined by
    `{SEP}` items of the template); the answer is the next item. The corrupt prompt starts the same
    number of items from another place, so its next item differs."""

    def generate(rng: random.Random, family: str) -> Candidate:
        items = sequences.get(family) or sequences["base"]
        template, sep = _template(rng, templates, family).split("|")
        n = rng.randint(min_shown, max_shown)
        last = len(items) if cyclic else len(items) - n  # the start: the next item must exist
        a, b = rng.sample(range(last), 2)

        def run(start: int) -> tuple[str, str]:
            shown = [items[(start + i) % len(items)] for i in range(n)]
            return template.format(SEQ=sep.join(shown), LAST=shown[-1]), items[(start + n) % len(items)]

        (clean, right), (corrupt, wrong) = run(a), run(b)
        return Candidate(clean, corrupt, (" " + right,), (" " + wrong,), family, clean)

    return generate


# The template and the separator between items, split by "|".
CALENDAR_TEMPLATES = {
    "base": ["The days go {SEQ},|, ", "Days of the week: {SEQ},|, "],
    "lexical": ["The months go {SEQ},|, ", "Months of the year: {SEQ},|, "],
    "syntactic": ["First comes {SEQ}, and next comes|, then ", "We met on {SEQ}, and we meet again on|, then on "],
    "domain": ["The shifts are on {SEQ}, and the next shift is on|, then ", "The bins go out on {SEQ}, and after that on|, "],
}
COUNT_TEMPLATES = {
    "base": ["Counting up: {SEQ},|, ", "Let us count: {SEQ},|, "],
    "lexical": ["In order: {SEQ},|, ", "The runners finished {SEQ},|, "],
    "syntactic": ["First {SEQ}, and then|, then ", "She counted {SEQ} and then|, "],
    "domain": ["The countdown before the launch went {SEQ},|, ", "The children counted down: {SEQ},|, "],
}
LETTER_TEMPLATES = {
    "base": ["The alphabet goes {SEQ},|, ", "Letters in order: {SEQ},|, "],
    "lexical": ["Capital letters in order: {SEQ},|, ", "The sections are {SEQ},|, "],
    "syntactic": ["First {SEQ}, and then|, then ", "He wrote the letters {SEQ} and then|, "],
    "domain": ["The rows in the theater are labelled {SEQ},|, ", "The files are sorted into folders {SEQ},|, "],
}


# --- copying, induction, binding and tracking --------------------------------------------------------
def induction() -> Generator:
    """A list of words, then its start again: the next word is the one that followed before."""
    formats = {
        "base": ("{L}. {P}", " "),
        "syntactic": ("{L}, and again: {P}", ", "),
        "domain": ("The shopping list says {L}. I read it out: {P}", ", "),
    }

    def generate(rng: random.Random, family: str) -> Candidate:
        pool = X.COPY_NOUNS_LEXICAL if family == "lexical" else X.COPY_NOUNS
        n = rng.randint(4, 6)
        words = rng.sample(pool, n + 1)
        cut = rng.randint(2, n - 1)  # the prefix repeated before the answer
        other = words[n]
        seq = words[:n]
        alt = seq[:cut] + [other] + seq[cut + 1 :]
        line, sep = formats.get(family) or formats["base"]

        def fmt(ws: list[str], k: int) -> str:  # the prefix ends with the separator's mark
            return line.format(L=sep.join(ws), P=sep.join(ws[:k]) + sep.rstrip())

        clean, corrupt = fmt(seq, cut), fmt(alt, cut)
        return Candidate(clean, corrupt, (" " + seq[cut],), (" " + other,), family, clean)

    return generate


def recall() -> Generator:
    """A word bound to a name, recalled by the name later in the prompt."""
    templates = {
        "base": ["The secret word is {W}. Remember it. The secret word is", "My password is {W}. Again, my password is"],
        "syntactic": [
            "Remember this word: {W}. Later, when asked for the word, you answer",
            "I will only say it once, the code is {W}. So the code is",
        ],
        "domain": [
            "Agent, the meeting point is the {W}. Repeat: the meeting point is the",
            "Note to self: buy the {W} at the shop. What do I need to buy? The",
        ],
    }

    def generate(rng: random.Random, family: str) -> Candidate:
        pool = X.COPY_NOUNS_LEXICAL if family == "lexical" else X.COPY_NOUNS
        template = _template(rng, templates, family)
        w, v = rng.sample(pool, 2)
        clean, corrupt = template.format(W=w), template.format(W=v)
        return Candidate(clean, corrupt, (" " + w,), (" " + v,), family, clean)

    return generate


def kv_lookup() -> Generator:
    """A record of fields, then one field asked for again: its value is the answer. The corrupt
    prompt asks for another field of the same record."""
    formats = {
        "base": ("{K}: {V}", "\n", "\n{K}:"),
        "syntactic": ("{K} = {V}", "; ", ". So {K} ="),
        "domain": ("{K}: {V}", ". ", ". Please confirm the {K}:"),
    }

    def generate(rng: random.Random, family: str) -> Candidate:
        keys = X.KV_KEYS_LEXICAL if family == "lexical" else X.KV_KEYS
        field, sep, ask = formats.get(family) or formats["base"]
        chosen = rng.sample(sorted(keys), 3)
        record = {k: rng.choice(keys[k]) for k in chosen}
        head = ("Form. " if family == "domain" else "") + sep.join(
            field.format(K=k, V=v) for k, v in record.items()
        )
        a, b = rng.sample(chosen, 2)
        clean, corrupt = head + ask.format(K=a), head + ask.format(K=b)
        return Candidate(clean, corrupt, (" " + record[a],), (" " + record[b],), family, clean)

    return generate


def boxes() -> Generator:
    """Objects placed in labelled boxes; the label of the asked object is the answer."""
    formats = {
        "base": ("the {O} is in box {L}", "The {O} is in box"),
        "syntactic": ("box {L} contains the {O}", "Which box contains the {O}? Box"),
        "domain": ("{O} sits in seat {L}", "So {O} sits in seat"),
    }

    def generate(rng: random.Random, family: str) -> Candidate:
        pool = {
            "lexical": X.BOX_OBJECTS_LEXICAL, "domain": X.PERSON_NAMES
        }.get(family, X.BOX_OBJECTS)  # fmt: skip
        line, ask = formats.get(family) or formats["base"]
        n = rng.randint(2, 3)
        objects = rng.sample(pool, n)
        labels = rng.sample(X.BOX_LABELS, n)
        parts = [line.format(O=o, L=lab) for o, lab in zip(objects, labels)]
        head = ", ".join(parts[:-1]) + ", and " + parts[-1] + ". "
        head = head[0].upper() + head[1:]
        i, j = rng.sample(range(n), 2)
        clean, corrupt = head + ask.format(O=objects[i]), head + ask.format(O=objects[j])
        return Candidate(clean, corrupt, (" " + labels[i],), (" " + labels[j],), family, clean)

    return generate


def possession() -> Generator:
    """Two people, each with an object of a colour; the colour of one person's object is asked."""
    formats = {
        "base": ("{A} has a {CA} {O} and {B} has a {CB} {O}. {Q}'s {O} is", "ball bag hat kite".split()),
        "lexical": ("{A} has a {CA} {O} and {B} has a {CB} {O}. {Q}'s {O} is", "car bike boat house".split()),
        "syntactic": (
            "The {CA} {O} belongs to {A} and the {CB} {O} belongs to {B}. The {O} that {Q} owns is",
            "ball bag hat kite".split(),
        ),
        "domain": (
            "In the race, {A} drove the {CA} {O} and {B} drove the {CB} {O}. The {O} {Q} drove was",
            "car truck van".split(),
        ),
    }

    def generate(rng: random.Random, family: str) -> Candidate:
        template, objects = formats[family]
        a, b = rng.sample(X.PERSON_NAMES, 2)
        ca, cb = rng.sample(X.CONSONANT_COLORS, 2)  # after "a": no "an orange"
        o = rng.choice(objects)
        fill = {"A": a, "B": b, "CA": ca, "CB": cb, "O": o}
        ask_a = rng.random() < 0.5
        q, other = (a, b) if ask_a else (b, a)
        clean, corrupt = template.format(Q=q, **fill), template.format(Q=other, **fill)
        right, wrong = (ca, cb) if ask_a else (cb, ca)
        return Candidate(clean, corrupt, (" " + right,), (" " + wrong,), family, clean)

    return generate


# --- in-context pattern following ------------------------------------------------------------------
def sentiment() -> Generator:
    """Labelled examples in context, then an unlabelled one: its label is the answer. The corrupt
    prompt swaps the query's adjective for one of the other label."""
    formats = {
        "base": ("{A} {N}: {L}", "\n", "\n{A} {N}:"),
        "syntactic": ("Review: {A} {N}. Sentiment: {L}", "\n", "\nReview: {A} {N}. Sentiment:"),
        "domain": ("The {N} was {A}. Rating: {L}", "\n", "\nThe {N} was {A}. Rating:"),
    }

    def generate(rng: random.Random, family: str) -> Candidate:
        words = X.SENTIMENT_LEXICAL if family == "lexical" else X.SENTIMENT
        nouns = X.SENTIMENT_NOUNS_DOMAIN if family == "domain" else X.SENTIMENT_NOUNS
        line, sep, ask = formats.get(family) or formats["base"]
        labels = ["positive", "negative", "positive", "negative"]
        rng.shuffle(labels)
        demos = sep.join(
            line.format(A=rng.choice(words[lab]), N=rng.choice(nouns), L=lab) for lab in labels[:3]
        )
        right = rng.choice(sorted(words))
        wrong = "negative" if right == "positive" else "positive"
        noun = rng.choice(nouns)
        clean = demos + ask.format(A=rng.choice(words[right]), N=noun)
        corrupt = demos + ask.format(A=rng.choice(words[wrong]), N=noun)
        return Candidate(clean, corrupt, (" " + right,), (" " + wrong,), family, clean)

    return generate


# --- comparison --------------------------------------------------------------------------------------
def size_compare() -> Generator:
    """Which of two animals is bigger. The corrupt prompt replaces the bigger one by an animal
    smaller than the other, so the other becomes the answer."""
    templates = {
        "base": ["Which animal is bigger, the {A} or the {B}? The", "Which is larger, the {A} or the {B}? The"],
        "syntactic": [
            "Between the {A} and the {B}, the bigger animal is the",
            "If you put the {A} next to the {B}, the one that looks bigger is the",
        ],
        "domain": [
            "At the zoo, the keeper weighed the {A} and the {B}. The heavier one was the",
            "The ark had room for the {A} and the {B}; the one that needed more space was the",
        ],
    }

    def generate(rng: random.Random, family: str) -> Candidate:
        order = X.SIZES_LEXICAL if family == "lexical" else X.SIZES
        template = _template(rng, templates, family)
        # small < big, and a third animal smaller than `small` replaces `big` in the corrupt prompt.
        tiny, small, big = sorted(rng.sample(range(len(order)), 3))
        first = rng.random() < 0.5

        def ask(x: int, y: int) -> str:
            a, b = (order[x], order[y]) if first else (order[y], order[x])
            return template.format(A=a, B=b)

        clean, corrupt = ask(small, big), ask(small, tiny)
        return Candidate(clean, corrupt, (" " + order[big],), (" " + order[small],), family, clean)

    return generate
