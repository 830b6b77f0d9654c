"""Score a model on every task's test split, and the quality bar a toy model must pass."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from dfa.core.errors import DfaError
from dfa.core.metrics import task_metric
from dfa.core.tasks import FAMILIES, TASKS, make_batches, make_dataset

MIN_ACCURACY = 0.9  # clean metric > 0 on at least this share of test prompts
MAX_CORRUPT_SHARE = 0.2  # mean corrupt metric at most this share of the mean clean metric
CARD = "card.json"
# Per task (capitals has fewer distinct test prompts for some tokenizers). 400, not 200: the
# corrupt share of 200 greater-than prompts has a standard deviation of 0.05 across samples.
TEST_PAIRS = 400


@dataclass
class TaskScore:
    task: str
    metric: str
    n: int
    accuracy: float
    clean: float  # mean metric on the clean prompts
    corrupt: float  # mean metric on the corrupt prompts (same answers and wrongs)
    family_accuracy: dict[str, float]

    @property
    def corrupt_share(self) -> float:
        return self.corrupt / self.clean if self.clean > 0 else float("inf")

    @property
    def passes(self) -> bool:
        return self.passes_by(0.0)

    def passes_by(self, margin: float, share_margin: float | None = None) -> bool:
        """The bar, cleared by `margin` on accuracy and by `share_margin` (default: `margin`) on
        the corrupt share."""
        share_margin = margin if share_margin is None else share_margin
        return (
            self.accuracy >= MIN_ACCURACY + margin and self.corrupt_share <= MAX_CORRUPT_SHARE - share_margin
        )

    def to_json(self) -> dict:
        return {**asdict(self), "corrupt_share": self.corrupt_share, "passes": self.passes}


def score_task(model, task: str, n: int = TEST_PAIRS, split: str = "test", seed: int = 0) -> TaskScore:
    """Accuracy and mean clean/corrupt metric of a loaded dfa model (a TransformerBridge) on up
    to `n` pairs of `split`, with the BOS policy every dfa model runs with."""
    device = next(model.parameters()).device
    data, batch = task_batch(model.tokenizer, task, n, split, seed)
    batch = {k: v.to(device) for k, v in batch.items()}
    return score_batch(model, data, batch)


def task_batch(tokenizer, task: str, n: int, split: str, seed: int):
    """Up to `n` pairs of a task's `split`, and all of them in one batch."""
    data = make_dataset(task, tokenizer, n, split, seed, allow_fewer=True)
    (batch,) = make_batches(data.examples, tokenizer, len(data.examples))
    return data, batch


@torch.no_grad()
def score_batch(forward, data, batch: dict[str, torch.Tensor]) -> TaskScore:
    """A TaskScore of `forward` (token ids to full-sequence logits) on `task_batch`'s output."""
    clean = task_metric(data.metric, forward(batch["clean"]), batch).float().cpu()
    corrupt = task_metric(data.metric, forward(batch["corrupt"]), batch).float().cpu()
    right = (clean > 0).float()
    families = [e.family for e in data.examples]
    per_family = {
        f: round(right[[i for i, g in enumerate(families) if g == f]].mean().item(), 4)
        for f in FAMILIES
        if f in families
    }
    return TaskScore(
        data.task,
        data.metric,
        len(data),
        round(right.mean().item(), 4),
        round(clean.mean().item(), 4),
        round(corrupt.mean().item(), 4),
        per_family,
    )


def score_tasks(model, n: int = TEST_PAIRS, split: str = "test", seed: int = 0) -> dict[str, TaskScore]:
    return {task: score_task(model, task, n, split, seed) for task in TASKS}


# A head "has" a role in a card's census when it scores above this: 9 times chance for induction
# and duplicate-token (0.033 on `[BOS] r r` with 20-token spans), 4 times for previous-token
# (0.072), and over 100 times for the OV roles on a vocabulary of 1966 (copy: 5/1966).
ROLE_THRESHOLD = 0.3


def role_census(model, threshold: float = ROLE_THRESHOLD) -> dict[str, dict]:
    """Per role of `dfa.core.roles`, the best head (name and score) of a loaded dfa model and how
    many heads score above `threshold`."""
    from dfa.core.graph import NodeGraph
    from dfa.core.roles import ROLES, role_scores

    scores = role_scores(model)
    heads = NodeGraph(scores.n_layers, scores.n_heads, include_input=False).heads
    profile = scores.profile()
    out = {}
    for r, role in enumerate(ROLES):
        column = profile[:, r]
        best = int(column.argmax())
        out[role] = {
            "best": round(float(column[best]), 4),
            "head": heads[best].name,
            "above": int((column > threshold).sum()),
        }
    return out


def read_card(folder: Path) -> dict:
    path = folder / CARD
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DfaError(f"{folder} has no {CARD}: it is not a toy model built by `dfa zoo build`.") from None
    except json.JSONDecodeError as err:
        raise DfaError(f"{path} is not valid JSON ({err}); rebuild with `dfa zoo build`.") from None
