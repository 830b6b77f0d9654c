"""The circuit tasks: one candidate generator per task and variation family."""

from __future__ import annotations

import random
from collections.abc import Sequence

from dfa.core.tasks import words as W
from dfa.core.tasks.base import FAMILIES, Candidate, Generator, Metric, Task


def _pick_other(rng: random.Random, items: Sequence[str], *exclude: str) -> str:
    while True:
        item = rng.choice(items)
        if item not in exclude:
            return item


# --- ioi -----------------------------------------------------------------------------------
# {N1} and {N2} are introduced together; {S} is the second mention of the subject. In ABBA order
# N1 is the indirect object, in BABA order N1 is the subject; the answer is the indirect object.
# No template starts with a name: without its leading space a name is a different token from
# the answer " Name", and the duplicate-name mechanism would see two unrelated tokens.
IOI_TEMPLATES = {
    "base": [
        "Then, {N1} and {N2} went to the {PLACE}. {S} gave a {OBJECT} to",
        "When {N1} and {N2} got a {OBJECT} at the {PLACE}, {S} decided to give it to",
        "After {N1} and {N2} went to the {PLACE}, {S} gave a {OBJECT} to",
        "While {N1} and {N2} were working at the {PLACE}, {S} gave a {OBJECT} to",
        "Friends {N1} and {N2} went to the {PLACE}. {S} handed a {OBJECT} to",
    ],
    "syntactic": [
        "Today, {N1} and {N2} were at the {PLACE} together, and {S} passed the {OBJECT} to",
        "At the {PLACE}, {N1} met {N2}, and then {S} offered a {OBJECT} to",
        "The {OBJECT} that {N1} and {N2} found at the {PLACE} was given by {S} to",
    ],
    "domain": [
        "In the meeting, {N1} and {N2} reviewed the budget. {S} emailed the report to",
        "During practice, {N1} and {N2} ran drills on the field. {S} threw the ball to",
        "In class, {N1} and {N2} studied for the exam. {S} lent the notes to",
    ],
}


def _ioi(rng: random.Random, family: str) -> Candidate:
    lexical = family == "lexical"
    names = W.IOI_NAMES_LEXICAL if lexical else W.IOI_NAMES
    template = rng.choice(IOI_TEMPLATES["base" if lexical else family])
    io, s = rng.sample(names, 2)
    c = _pick_other(rng, names, io, s)
    n1, n2 = (io, s) if rng.random() < 0.5 else (s, io)
    fill = {
        "N1": n1,
        "N2": n2,
        "PLACE": rng.choice(W.PLACES_LEXICAL if lexical else W.PLACES),
        "OBJECT": rng.choice(W.OBJECTS_LEXICAL if lexical else W.OBJECTS),
    }
    clean = template.format(S=s, **fill)
    corrupt = template.format(S=c, **fill)  # ABC: the repeated subject becomes a third name
    return Candidate(clean, corrupt, (" " + io,), (" " + s,), family, clean)


# --- greater_than --------------------------------------------------------------------------
GT_TEMPLATES = {
    "base": ["The {NOUN} lasted from the year {XX}{YY} to the year {XX}"],
    "syntactic": [
        "The {NOUN} started in the year {XX}{YY} and it ended in the year {XX}",
        "From the year {XX}{YY}, the {NOUN} went on until the year {XX}",
    ],
    "domain": ["The {NOUN} ran from the year {XX}{YY} to the year {XX}"],
}
GT_NOUNS = {
    "base": W.GT_NOUNS,
    "lexical": W.GT_NOUNS_LEXICAL,
    "syntactic": W.GT_NOUNS,
    "domain": W.GT_NOUNS_DOMAIN,
}
GT_CORRUPT_YY = 1  # Hanna et al.: the start year "XX01" leaves no year at or below it to prefer


def _greater_than(rng: random.Random, family: str) -> Candidate:
    template = rng.choice(GT_TEMPLATES["base" if family == "lexical" else family])
    noun = rng.choice(GT_NOUNS[family])
    xx, yy = rng.randint(11, 17), rng.randint(2, 98)
    clean = template.format(NOUN=noun, XX=xx, YY=f"{yy:02d}")
    corrupt = template.format(NOUN=noun, XX=xx, YY=f"{GT_CORRUPT_YY:02d}")
    above = tuple(f"{y:02d}" for y in range(yy + 1, 100))
    at_or_below = tuple(f"{y:02d}" for y in range(yy + 1))
    return Candidate(clean, corrupt, above, at_or_below, family, clean)


# --- sva -----------------------------------------------------------------------------------
SVA_TEMPLATES = {
    "base": ["The {NOUN}", "The {NOUN} near the {ATTR}", "The {NOUN} of the {ATTR}"],
    "syntactic": [
        "The {NOUN} that the {ATTR} faced",
        "The {NOUN} behind the {ATTR} really",
        "Everyone knows that the {NOUN} next to the {ATTR}",
    ],
}
SVA_NOUNS = {
    "base": W.SVA_NOUNS,
    "lexical": W.SVA_NOUNS_LEXICAL,
    "syntactic": W.SVA_NOUNS,
    "domain": W.SVA_NOUNS_DOMAIN,
}


def _sva(rng: random.Random, family: str) -> Candidate:
    template = rng.choice(SVA_TEMPLATES["syntactic" if family == "syntactic" else "base"])
    singular, plural = rng.choice(SVA_NOUNS[family])
    attr = rng.choice(rng.choice(W.SVA_ATTRACTORS))  # the attractor's number is random
    verb_sg, verb_pl = rng.choice(W.SVA_VERBS)
    clean_plural = rng.random() < 0.5
    nouns = (plural, singular) if clean_plural else (singular, plural)
    clean, corrupt = (template.format(NOUN=n, ATTR=attr) for n in nouns)
    right, wrong = (verb_pl, verb_sg) if clean_plural else (verb_sg, verb_pl)
    return Candidate(clean, corrupt, (" " + right,), (" " + wrong,), family, clean)


# --- gender --------------------------------------------------------------------------------
GENDER_TEMPLATES = {
    "base": ["So {NAME} said that", "Then {NAME} went to the {PLACE} because", "When {NAME} got home,"],
    "syntactic": [
        "So {NAME} is such a good {ROLE}, isn't",
        "Yesterday {NAME} told me that",
        "Everyone agreed that {NAME} was right, and then",
    ],
    "domain": ["At work, {NAME} finished the report, and then", "After the match, {NAME} said that"],
}


def _gender(rng: random.Random, family: str) -> Candidate:
    lexical = family == "lexical"
    template = rng.choice(GENDER_TEMPLATES["base" if lexical else family])
    male, female = W.MALE_NAMES, W.FEMALE_NAMES
    # Base draws from the first half of each list, lexical from the second half.
    half = slice(len(male) // 2, None) if lexical else slice(None, len(male) // 2)
    is_male = rng.random() < 0.5
    own, other = (male[half], female[half]) if is_male else (female[half], male[half])
    fill = {"PLACE": rng.choice(W.PLACES), "ROLE": rng.choice(W.GENDER_ROLES)}
    clean = template.format(NAME=rng.choice(own), **fill)
    corrupt = template.format(NAME=rng.choice(other), **fill)
    right, wrong = (" he", " she") if is_male else (" she", " he")
    return Candidate(clean, corrupt, (right,), (wrong,), family, clean)


# --- arithmetic ----------------------------------------------------------------------------
ARITH_TEMPLATES = {
    "+": {
        "base": ["{A} + {B} ="],
        "syntactic": ["What is {A} plus {B}? The answer is", "The sum of {A} and {B} is"],
        "lexical": ["{A} plus {B} equals"],
        "domain": [
            "Tom had {A} apples and bought {B} more. Now he has",
            "A train carried {A} people and {B} more got on, so it carried",
        ],
    },
    "-": {
        "base": ["{A} - {B} ="],
        "syntactic": ["What is {A} minus {B}? The answer is", "The difference of {A} and {B} is"],
        "lexical": ["{A} minus {B} equals"],
        "domain": [
            "Tom had {A} apples and ate {B} of them. Now he has",
            "A train carried {A} people and {B} got off, so it carried",
        ],
    },
}


def _arithmetic(op: str):
    def generate(rng: random.Random, family: str) -> Candidate:
        template = rng.choice(ARITH_TEMPLATES[op][family])
        words = family == "lexical"  # numbers written as words, results up to twenty
        top = 20 if words else 99
        apply = (lambda a, b: a + b) if op == "+" else (lambda a, b: a - b)
        while True:
            if op == "+":
                a, b, b2 = (rng.randint(0, top // 2 if words else top) for _ in range(3))
            else:
                a = rng.randint(1, top)
                b, b2 = rng.randint(0, a), rng.randint(0, a)
            if b != b2:  # the corrupt changes the second operand, and so the result
                break
        show = (lambda n: W.NUMBER_WORDS[n]) if words else str
        clean = template.format(A=show(a), B=show(b))
        corrupt = template.format(A=show(a), B=show(b2))
        return Candidate(
            clean, corrupt, (" " + show(apply(a, b)),), (" " + show(apply(a, b2)),), family, clean
        )

    return generate


# --- capitals ------------------------------------------------------------------------------
CAPITAL_TEMPLATES = {
    "base": ["The capital of {C} is"],
    "syntactic": [
        "As everyone knows, {C}'s capital city is",
        "The capital city of {C} is called",
        "If you visit {C}, go to its capital,",
    ],
    "domain": ["The capital of the state of {C} is"],
}


def _capitals(rng: random.Random, family: str) -> Candidate:
    table = W.STATE_CAPITALS if family == "domain" else W.COUNTRY_CAPITALS
    places = sorted(table)
    # Base and lexical split the countries between them; syntactic reuses the base countries.
    if family in ("base", "syntactic"):
        places = places[::2]
    elif family == "lexical":
        places = places[1::2]
    template = rng.choice(CAPITAL_TEMPLATES["base" if family == "lexical" else family])
    clean_place = rng.choice(places)
    corrupt_place = rng.choice([p for p in places if table[p] != table[clean_place]])
    clean, corrupt = template.format(C=clean_place), template.format(C=corrupt_place)
    return Candidate(
        clean, corrupt, (" " + table[clean_place],), (" " + table[corrupt_place],), family, clean
    )


# --- mcqa ----------------------------------------------------------------------------------
LETTERS = "ABCD"
MCQA_FORMATS = {
    "base": ("Question: Which of these is a {CAT}?\n{OPTIONS}\nAnswer:", "{L}. {X}"),
    "syntactic": ("Pick the {CAT} from the list below.\n{OPTIONS}\nThe right choice is", "({L}) {X}"),
}
MCQA_CATEGORIES = {
    "base": W.MCQA_CATEGORIES,
    "syntactic": W.MCQA_CATEGORIES,
    "lexical": W.MCQA_CATEGORIES_LEXICAL,
    "domain": W.MCQA_CATEGORIES_DOMAIN,
}


def _mcqa(rng: random.Random, family: str) -> Candidate:
    question, line = MCQA_FORMATS["syntactic" if family == "syntactic" else "base"]
    categories = MCQA_CATEGORIES[family]
    category = rng.choice(sorted(categories))
    members = set(categories[category])
    pool = sorted({x for c, xs in categories.items() if c != category for x in xs} - members)
    options = [rng.choice(categories[category]), *rng.sample(pool, len(LETTERS) - 1)]
    rng.shuffle(options)
    right = next(i for i, x in enumerate(options) if x in members)
    moved = rng.choice([i for i in range(len(LETTERS)) if i != right])
    swapped = list(options)
    swapped[right], swapped[moved] = swapped[moved], swapped[right]

    def render(opts: list[str]) -> str:
        body = "\n".join(line.format(L=LETTERS[i], X=x) for i, x in enumerate(opts))
        return question.format(CAT=category, OPTIONS=body)

    clean = render(options)
    return Candidate(clean, render(swapped), (" " + LETTERS[right],), (" " + LETTERS[moved],), family, clean)


def _task(name: str, description: str, metric: Metric, generate: Generator) -> Task:
    # Every task offers all four variation families; the generator reads the family it is given.
    return Task(name, description, metric, {family: generate for family in FAMILIES})


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        _task(
            "ioi",
            "indirect object identification: '... John gave a drink to' -> the other name",
            "logit_diff",
            _ioi,
        ),
        _task(
            "greater_than",
            "'The war lasted from the year 1732 to the year 17' -> a year above 32",
            "prob_diff",
            _greater_than,
        ),
        _task(
            "sva",
            "subject-verb agreement: 'The authors near the car' -> ' are' not ' is'",
            "logit_diff",
            _sva,
        ),
        _task("gender", "gendered pronoun: 'So Mary said that' -> ' she' not ' he'", "logit_diff", _gender),
        _task("arithmetic_add", "two-operand addition: '23 + 41 =' -> ' 64'", "logit_diff", _arithmetic("+")),
        _task(
            "arithmetic_sub", "two-operand subtraction: '64 - 41 =' -> ' 23'", "logit_diff", _arithmetic("-")
        ),
        _task("capitals", "factual recall: 'The capital of France is' -> ' Paris'", "logit_diff", _capitals),
        _task(
            "mcqa",
            "multiple choice: four lettered options -> the letter of the right one",
            "logit_diff",
            _mcqa,
        ),
    ]
}
