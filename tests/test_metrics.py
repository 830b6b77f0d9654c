"""The task metric on hand-made logits: exact values, answer sets with padding."""

import math

import pytest
import torch

from dfa.core.metrics import answer_metric, final_logits, task_metric


def _sets(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([r + [-1] * (width - len(r)) for r in rows])
    return ids, ids >= 0


def test_logit_diff_single_and_set_means():
    logits = torch.tensor([[1.0, 4.0, -2.0, 0.5], [3.0, 0.0, 1.0, 2.0]])
    answers, amask = _sets([[1], [0, 3]])
    wrongs, wmask = _sets([[2, 3], [1]])
    got = answer_metric("logit_diff", logits, answers, amask, wrongs, wmask)
    # row 0: 4 - mean(-2, 0.5); row 1: mean(3, 2) - 0
    assert torch.allclose(got, torch.tensor([4.75, 2.5]))


def test_prob_diff_sums_probabilities_of_each_set():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    answers, amask = _sets([[2, 3]])
    wrongs, wmask = _sets([[0]])
    got = answer_metric("prob_diff", logits, answers, amask, wrongs, wmask).item()
    assert math.isclose(got, 0.6, abs_tol=1e-6)
    with pytest.raises(ValueError, match="Unknown metric 'kl'"):
        answer_metric("kl", logits, answers, amask, wrongs, wmask)


def test_task_metric_reads_each_prompts_last_position():
    logits = torch.zeros(2, 3, 4)
    logits[0, 1, 2] = 5.0  # prompt 0 ends at position 1
    logits[1, 2, 3] = -1.0  # prompt 1 ends at position 2
    logits[0, 2, 2] = 100.0  # padding after prompt 0: must be ignored
    batch = {"last": torch.tensor([1, 2])}
    batch["answers"], batch["answers_mask"] = _sets([[2], [3]])
    batch["wrongs"], batch["wrongs_mask"] = _sets([[0], [0]])
    assert torch.equal(final_logits(logits, batch["last"])[0], torch.tensor([0.0, 0.0, 5.0, 0.0]))
    assert torch.allclose(task_metric("logit_diff", logits, batch), torch.tensor([5.0, -1.0]))
