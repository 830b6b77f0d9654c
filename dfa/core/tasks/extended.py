"""The extended task suite: twenty tasks over kinds of mechanism that small real models can do.

The eight tasks of `dfa.core.tasks.suite` are the toy ladders' (their word-level tokenizer knows
those words only); these are written for real tokenizers. Each task has the four variation
families, draws its words from `extended_words` through the factories of `extended_gens`, keys its
split by the clean prompt, and is scored by the logit difference between the clean prompt's answer
and the corrupt prompt's. `KINDS` groups every built-in task by the mechanism it exercises (a
held-out task should share a kind with a training task).
"""

from __future__ import annotations

from dfa.core.tasks import extended_gens as G
from dfa.core.tasks import extended_words as X
from dfa.core.tasks.base import FAMILIES, Generator, Task

# --- factual recall over several relations ------------------------------------------------------------
LANGUAGE_TEMPLATES = {
    "base": ["The official language of {X} is", "In {X}, most people speak"],
    "syntactic": [
        "If you travel to {X}, you will hear people speaking",
        "Most of the people who live in {X} speak",
        "Ask anyone in {X} which language they speak, and they will say",
    ],
    "domain": [
        "The newspapers printed in {X} are written in",
        "Children at school in {X} learn to read and write in",
    ],
}
CITY_TEMPLATES = {
    "base": ["The city of {X} is in the country of", "The city of {X} is located in"],
    "syntactic": [
        "Last summer I flew to {X}, a large city in",
        "Many tourists visit {X}, which is a city in",
        "If you want to see {X}, you have to travel to",
    ],
    "domain": [
        "The football club from {X} plays in the league of",
        "The train from {X} stays inside the borders of",
    ],
}
COLOR_TEMPLATES = {
    "base": ["The color of {X} is", "Everyone knows that the color of {X} is"],
    "syntactic": [
        "What color is {X}? It is",
        "If you look at {X}, the color you see is",
        "A child drawing {X} would pick the crayon that is",
    ],
    "domain": [
        "In the coloring book, the children colored {X}",
        "For the art class, she painted {X}",
    ],
}
HYPERNYM_TEMPLATES = {
    "base": ["The {X} is a kind of", "We learned that the {X} is a type of"],
    "syntactic": [
        "Of all the words you know, the {X} names a kind of",
        "If you had to say what the {X} is, you would say it is a",
        "Ask a child what the {X} is and the answer is: a",
    ],
    "domain": [
        "In the encyclopedia, the entry for the {X} is filed under the category",
        "On the quiz show, the word {X} belonged to the category",
    ],
}
WORKPLACE_TEMPLATES = {
    "base": ["The {X} works at the", "Every morning, the {X} goes to work at the"],
    "syntactic": [
        "Where does the {X} work? At the",
        "After a long day at work, the {X} finally left the",
        "The place where the {X} usually works is the",
    ],
    "domain": [
        "In the children's story, the {X} spent every day at the",
        "The job advert for a {X} said the work would be at the",
    ],
}

# --- word-level relations and morphology ----------------------------------------------------------------
ANTONYM_FORMATS = {
    "base": ("{X}:{Y}", "\n"),
    "syntactic": ("The opposite of {X} is{Y}.", " "),
    "domain": ("Q: What is the opposite of {X}? A:{Y}", "\n"),
}
PLURAL_TEMPLATES = {
    "base": ["one {X}, two", "I have one {X} and you have two"],
    "syntactic": [
        "There was only one {X} yesterday, but today there are three",
        "Not just one {X}: we saw many",
        "She used to own a single {X}, and now she owns several",
    ],
    "domain": [
        "The recipe asks for one {X}, but the big cake needs four",
        "The shop sold one {X} on Monday and ten",
    ],
}
PAST_TEMPLATES = {
    "base": ["Today I {X}. Yesterday I", "Every day we {X}. Last week we"],
    "syntactic": [
        "I usually {X} in the morning, and yesterday morning I",
        "They say they {X} often, and last night they",
        "This week they {X} a lot; last week they also",
    ],
    "domain": [
        "In the diary: today we {X} again, and on the first day of the trip we",
        "The coach said: this season you {X} well, and last season you",
    ],
}
COMPARATIVE_TEMPLATES = {
    "base": ["This one is {X}, but that one is even", "My house is {X}, but yours is even"],
    "syntactic": [
        "The first box was {X}. The second box was even",
        "If you think this is {X}, the next one is much",
        "Both are {X}, but the blue one is a little",
    ],
    "domain": [
        "The new phone is {X}, and the model that comes next year will be even",
        "Yesterday the weather was {X}, and tomorrow it will be even",
    ],
}


def _task(name: str, description: str, generate: Generator) -> Task:
    return Task(name, description, "logit_diff", {family: generate for family in FAMILIES})


# The domain family counts down: items listed from high to low.
_COUNT_DOWN = list(reversed(X.NUMBER_WORDS))

EXTENDED: dict[str, Task] = {
    t.name: t
    for t in [
        _task(
            "country_language",
            "factual recall: 'The official language of Spain is' -> ' Spanish'",
            G.relation(X.COUNTRY_LANGUAGE, LANGUAGE_TEMPLATES),
        ),
        _task(
            "city_country",
            "factual recall: 'The city of Munich is in the country of' -> ' Germany'",
            G.relation(X.CITY_COUNTRY, CITY_TEMPLATES),
        ),
        _task(
            "object_color",
            "factual recall: 'The color of a banana is' -> ' yellow'",
            G.relation(X.OBJECT_COLOR, COLOR_TEMPLATES),
        ),
        _task(
            "workplace",
            "factual recall: 'The pilot works at the' -> ' airport'",
            G.relation(X.WORKPLACE, WORKPLACE_TEMPLATES),
        ),
        _task(
            "hypernym",
            "word relation: 'The robin is a kind of' -> ' bird'",
            G.relation(X.HYPERNYM, HYPERNYM_TEMPLATES),
        ),
        _task(
            "antonym",
            "word relation in context: 'hot: cold\\nbig: small\\nfast:' -> ' slow'",
            G.few_shot(X.ANTONYMS, ANTONYM_FORMATS),
        ),
        _task("plural", "morphology: 'one cat, two' -> ' cats'", G.relation(X.PLURALS, PLURAL_TEMPLATES)),
        _task(
            "past_tense",
            "morphology: 'Today I eat. Yesterday I' -> ' ate'",
            G.relation(X.PAST_TENSE, PAST_TEMPLATES),
        ),
        _task(
            "comparative",
            "morphology: 'This one is big, but that one is even' -> ' bigger'",
            G.relation(X.COMPARATIVES, COMPARATIVE_TEMPLATES),
        ),
        _task(
            "calendar_next",
            "succession: 'The days go Monday, Tuesday,' -> ' Wednesday' (months in the lexical family)",
            G.succession({"base": X.DAYS, "lexical": X.MONTHS}, G.CALENDAR_TEMPLATES, cyclic=True),
        ),
        _task(
            "count_next",
            "succession: 'Counting up: three, four,' -> ' five' (ordinals in the lexical family)",
            G.succession(
                {"base": X.NUMBER_WORDS, "lexical": X.ORDINALS, "domain": _COUNT_DOWN}, G.COUNT_TEMPLATES, cyclic=False
            ),
        ),
        _task(
            "letter_next",
            "succession: 'Letters in order: c, d, e,' -> ' f' (capitals in the lexical family)",
            G.succession(
                {"base": list(X.LETTERS), "lexical": list(X.LETTERS.upper())}, G.LETTER_TEMPLATES, cyclic=False
            ),
        ),
        _task("induction", "induction: 'apple chair river moon. apple chair' -> ' river'", G.induction()),
        _task(
            "recall_word",
            "copying a bound word: 'The secret word is tiger. ... The secret word is' -> ' tiger'",
            G.recall(),
        ),
        _task("kv_lookup", "formatting: 'city: Paris\\npet: dog\\ncity:' -> ' Paris'", G.kv_lookup()),
        _task(
            "box_tracking",
            "entity tracking: 'The key is in box B, the coin is in box A. The key is in box' -> ' B'",
            G.boxes(),
        ),
        _task(
            "possession",
            "entity tracking: 'Anna has a red ball and Tom has a blue ball. Tom's ball is' -> ' blue'",
            G.possession(),
        ),
        _task(
            "reflexive",
            "agreement: 'The queen hurt' -> ' herself' not ' himself' (or ' themselves')",
            G.reflexive(),
        ),
        _task(
            "sentiment_icl",
            "in-context labels: 'great movie: positive\\nawful food: negative\\nlovely day:' -> ' positive'",
            G.sentiment(),
        ),
        _task(
            "size_compare",
            "comparison: 'Which animal is bigger, the mouse or the horse? The' -> ' horse'",
            G.size_compare(),
        ),
    ]
}

# The kind of mechanism each task exercises (the eight tasks of `suite` included).
KINDS: dict[str, tuple[str, ...]] = {
    "factual recall": ("capitals", "country_language", "city_country", "object_color", "workplace"),
    "word relations and morphology": ("hypernym", "antonym", "plural", "past_tense", "comparative"),
    "succession": ("calendar_next", "count_next", "letter_next"),
    "copying and induction": ("induction", "recall_word", "kv_lookup"),
    "entity tracking": ("ioi", "box_tracking", "possession"),
    "agreement": ("sva", "gender", "reflexive"),
    "in-context labels": ("sentiment_icl", "mcqa"),
    "comparison and arithmetic": ("size_compare", "greater_than", "arithmetic_add", "arithmetic_sub"),
}


def kind_of(task: str) -> str | None:
    """The kind of mechanism a built-in task belongs to (None for a task file)."""
    return next((kind for kind, names in KINDS.items() if task in names), None)

