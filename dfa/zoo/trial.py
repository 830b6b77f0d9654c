"""Train one toy model with a changed recipe and score it, saving nothing (a trial before a ladder build)."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

from dfa.zoo.build import save_and_score
from dfa.zoo.card import TaskScore
from dfa.zoo.spec import ToySpec
from dfa.zoo.text import TaskText, extra_texts
from dfa.zoo.tokenizer import build_tokenizer
from dfa.zoo.train import TrainConfig, train_toy


def with_changes(obj, changes: dict):
    """A copy of the dataclass `obj` with the changes that were given (not None)."""
    return dataclasses.replace(obj, **{k: v for k, v in changes.items() if v is not None})


@dataclasses.dataclass
class Trial:
    """A trained and scored trial: its recipe, the training's log (val checks, steps trained) and
    the scores of every task on `split`."""

    spec: ToySpec
    config: TrainConfig
    pairs: dict[str, int]
    corrupt: bool
    seed: int
    split: str
    seconds: float
    log: dict
    scores: dict[str, TaskScore]
    roles: dict[str, dict]

    def to_json(self) -> dict:
        return {
            "spec": dataclasses.asdict(self.spec),
            "training": dataclasses.asdict(self.config),
            "corrupt": self.corrupt,
            "pairs": self.pairs,
            "seed": self.seed,
            "seconds": round(self.seconds, 1),
            "log": self.log,
            "split": self.split,
            "tasks": {t: s.to_json() for t, s in self.scores.items()},
            "roles": self.roles,
        }


def run_trial(
    spec: ToySpec, config: TrainConfig, pairs: dict[str, int], seed: int, corrupt: bool, split: str
) -> Trial:
    """Train `spec` with `config` on `pairs` train pairs per task (and, with `corrupt`, their
    corrupt prompts), save it to a temporary folder, load it back and score it on `split`."""
    tokenizer = build_tokenizer(extra_texts())
    text = TaskText(tokenizer, seed, pairs=pairs, corrupt=corrupt, span_prefix=spec.recipe.span_prefix)
    start = time.perf_counter()
    log: dict = {}
    model = train_toy(spec, tokenizer, text, seed, config, log=log)
    seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        scores, roles = save_and_score(model, tokenizer, Path(tmp), split, seed)
    return Trial(spec, config, pairs, corrupt, seed, split, seconds, log, scores, roles)
