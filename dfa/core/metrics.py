"""The task metric at the answer position: logit difference, or probability difference for
tasks whose answers are sets (greater-than), one value per prompt."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int

from dfa.core.tasks.base import Metric


def final_logits(logits: Float[torch.Tensor, "batch pos vocab"], last: Int[torch.Tensor, " batch"]):
    """The logits where the answer is predicted (each prompt's last token)."""
    return logits[torch.arange(logits.shape[0], device=logits.device), last]


def answer_metric(
    metric: Metric,
    logits: Float[torch.Tensor, "batch vocab"],
    answers: Int[torch.Tensor, "batch k"],
    answers_mask: Bool[torch.Tensor, "batch k"],
    wrongs: Int[torch.Tensor, "batch j"],
    wrongs_mask: Bool[torch.Tensor, "batch j"],
) -> Float[torch.Tensor, " batch"]:
    """`logit_diff`: mean logit of the answers minus mean logit of the wrong continuations.
    `prob_diff`: total probability of the answers minus that of the wrong continuations.
    Answer sets are padded with -1 where their mask is False."""
    if metric == "prob_diff":
        values, reduce = logits.float().softmax(-1), lambda x, m: (x * m).sum(-1)
    elif metric == "logit_diff":
        values, reduce = logits, lambda x, m: (x * m).sum(-1) / m.sum(-1)
    else:
        raise ValueError(f"Unknown metric {metric!r}; choose logit_diff or prob_diff.")

    def side(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return reduce(values.gather(-1, ids.clamp(min=0)), mask)

    return side(answers, answers_mask) - side(wrongs, wrongs_mask)


def batch_metric(
    metric: Metric, logits: Float[torch.Tensor, "batch vocab"], batch: dict[str, torch.Tensor]
) -> Float[torch.Tensor, " batch"]:
    """Per-prompt metric of answer-position `logits` (float32 whatever the model's dtype: a
    difference of two bf16 logits would keep only about 3 significant digits)."""
    return answer_metric(
        metric,
        logits if logits.dtype in (torch.float32, torch.float64) else logits.float(),
        batch["answers"],
        batch["answers_mask"],
        batch["wrongs"],
        batch["wrongs_mask"],
    )


def task_metric(
    metric: Metric, logits: Float[torch.Tensor, "batch pos vocab"], batch: dict[str, torch.Tensor]
) -> Float[torch.Tensor, " batch"]:
    """Per-prompt metric of full-sequence `logits` for a batch made by `dfa.core.tasks.collate`."""
    return batch_metric(metric, final_logits(logits, batch["last"]), batch)
