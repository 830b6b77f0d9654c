"""The task metric at the answer position: logit difference, or probability difference for
tasks whose answers are sets (greater-than), one value per prompt."""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Bool, Float, Int

from dfa.tasks.base import Metric


def final_logits(logits: Float[torch.Tensor, "batch pos vocab"], last: Int[torch.Tensor, " batch"]):
    """The logits where the answer is predicted (each prompt's last token)."""
    return logits[torch.arange(logits.shape[0], device=logits.device), last]


def _set_mean(values: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    picked = values.gather(-1, ids.clamp(min=0)) * mask
    return picked.sum(-1) / mask.sum(-1)


def logit_diff(
    logits: Float[torch.Tensor, "batch vocab"],
    answers: Int[torch.Tensor, "batch k"],
    answers_mask: Bool[torch.Tensor, "batch k"],
    wrongs: Int[torch.Tensor, "batch j"],
    wrongs_mask: Bool[torch.Tensor, "batch j"],
) -> Float[torch.Tensor, " batch"]:
    """Mean logit of the answers minus mean logit of the wrong continuations."""
    return _set_mean(logits, answers, answers_mask) - _set_mean(logits, wrongs, wrongs_mask)


def prob_diff(
    logits: Float[torch.Tensor, "batch vocab"],
    answers: Int[torch.Tensor, "batch k"],
    answers_mask: Bool[torch.Tensor, "batch k"],
    wrongs: Int[torch.Tensor, "batch j"],
    wrongs_mask: Bool[torch.Tensor, "batch j"],
) -> Float[torch.Tensor, " batch"]:
    """Total probability of the answers minus total probability of the wrong continuations."""
    probs = logits.float().softmax(-1)
    total = (probs.gather(-1, answers.clamp(min=0)) * answers_mask).sum(-1)
    return total - (probs.gather(-1, wrongs.clamp(min=0)) * wrongs_mask).sum(-1)


METRICS: dict[Metric, Callable[..., torch.Tensor]] = {"logit_diff": logit_diff, "prob_diff": prob_diff}


def task_metric(
    metric: Metric, logits: Float[torch.Tensor, "batch pos vocab"], batch: dict[str, torch.Tensor]
) -> Float[torch.Tensor, " batch"]:
    """Per-prompt metric of full-sequence `logits` for a batch made by `dfa.tasks.collate`."""
    final = final_logits(logits, batch["last"])
    return METRICS[metric](
        final, batch["answers"], batch["answers_mask"], batch["wrongs"], batch["wrongs_mask"]
    )
