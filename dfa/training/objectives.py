"""The training objectives of `MapTrainer` (`dfa.training.module`), as a mixin: the fit of a
batch under the map's masks, for the curve objective (one soft top-k mask per circuit size,
stacked along the batch) and the density objective (one soft mask), plus the anchor and, for a
features map, the offset penalty. The module docstring of `dfa.training.module` says what each
term is and why; the mixin reads the module's `map`, `config`, `target`, `graph`, `ks`,
`size_w`, `metrics`, `tasks`, `W0` and `training_source`.

The terms: `curve_terms`, `density_terms`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dfa.core.feature_map import FeatureMap
from dfa.core.interventions import rows_per_pass, run_masked
from dfa.core.mapping import soft_top_k
from dfa.core.metrics import answer_metric
from dfa.training.data import TrainBatch


class Objectives:
    """`loss_terms(batch)` and its parts; mixed into `MapTrainer`."""

    def masked_logprobs(self, batch: TrainBatch, mask: torch.Tensor) -> torch.Tensor:
        """Answer-position log-probabilities of the clean batch under the soft `mask`."""
        p = batch.prompts
        logits = run_masked(
            self.target, self.graph, p["clean"], batch.donor, mask, hard=False, last=p["last"]
        )
        return logits.float().log_softmax(-1)

    def loss_terms(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        terms = self.curve_terms(batch) if self.config.objective == "curve" else self.density_terms(batch)
        if self.config.anchor > 0:
            terms["anchor"] = (self.map.W - self.W0).pow(2).sum(0).mean()
            terms["loss"] = terms["loss"] + self.config.anchor * terms["anchor"]
        if isinstance(self.map, FeatureMap) and self.config.offset_anchor > 0:
            # g starts at 0 (its output layer is zero): the penalty is its size on the current pair.
            terms["offset"] = self.map.b.pow(2).mean()
            terms["loss"] = terms["loss"] + self.config.offset_anchor * terms["offset"]
        return terms

    def _metric_args(self, batch: TrainBatch, repeat: int = 1) -> tuple[torch.Tensor, ...]:
        p = batch.prompts
        keys = ("answers", "answers_mask", "wrongs", "wrongs_mask")
        return tuple(p[k].repeat(repeat, 1) for k in keys)

    def density_terms(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        """One soft mask, `sigmoid(z)`; fit + sparsity * mean(mask) (the first objective)."""
        task = int(batch.task)
        mask = self.map.full_mask(self.training_source(task))
        logp = self.masked_logprobs(batch, mask)
        clean = batch.clean_logprobs
        kl = F.kl_div(logp, clean, log_target=True, reduction="batchmean")
        sparsity = mask[1:].mean()
        terms = {"kl": kl, "sparsity": sparsity, "mask_density": (mask[1:] > 0.5).float().mean()}
        if self.config.loss == "logit_diff":
            m = self.metrics[self.tasks[task]]
            args = self._metric_args(batch)
            full = answer_metric(m, clean, *args)  # log-probs differ from logits by a constant
            masked = answer_metric(m, logp, *args)
            terms["recovery"] = masked.mean() / full.mean().clamp_min(1e-6)
            terms["fit"] = 1 - terms["recovery"]
        else:
            terms["fit"] = kl
        terms["loss"] = terms["fit"] + self.config.sparsity * sparsity
        return terms

    def curve_terms(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        """The fit at every circuit size at once (module docstring), weighed as the score does.
        With `max_rows`, the sizes run in passes of at most that many prompt rows: each pass's
        gradient to its masks is taken at once (and its activations freed), and the returned fit
        carries those gradients back to the map (the same value and gradient as one pass). Without
        gradients (the val loss) the passes give the values alone."""
        task = int(batch.task)
        z = self.map.logits(self.training_source(task))
        soft = soft_top_k(z, self.ks, self.config.topk_tau)  # [sizes, n_mapped]
        masks = torch.cat([soft.new_ones(len(self.ks), 1), soft], -1)  # `input` kept
        weights = self.size_w.to(masks)
        k = self.config.sizes_per_step
        sampled = k is not None and k < len(masks) and torch.is_grad_enabled()
        if sampled:
            masks, weights = sample_sizes(masks, weights, k)
        per_pass = len(masks)
        if self.config.max_rows is not None:
            per_pass = rows_per_pass(self.config.max_rows, batch.size)
        if per_pass >= len(masks):
            per_size = self.fit_per_size(batch, masks, task)
            fit = (weights * per_size).sum()
        elif not torch.is_grad_enabled():  # the val loss (no_grad, inference_mode): values alone
            per_size = torch.cat([self.fit_per_size(batch, m, task) for m in masks.split(per_pass)])
            fit = (weights * per_size).sum()
        else:
            values, grads = [], []
            for chunk, w in zip(masks.split(per_pass), weights.split(per_pass), strict=True):
                leaf = chunk.detach().requires_grad_(True)
                with torch.enable_grad():
                    part = self.fit_per_size(batch, leaf, task)
                    (grad,) = torch.autograd.grad((w * part).sum(), leaf)
                values.append(part.detach())
                grads.append(grad)
            per_size, grad = torch.cat(values), torch.cat(grads)
            carried = (masks * grad).sum()
            fit = (weights * per_size).sum() + carried - carried.detach()
        terms = {"fit": fit, "loss": fit}
        if not sampled:  # with drawn sizes the first and last are whichever were drawn
            terms["fit_smallest"] = per_size[0].detach()  # at the smallest circuit size
            terms["fit_largest"] = per_size[-1].detach()
        return terms

    def fit_per_size(self, batch: TrainBatch, masks: torch.Tensor, task: int) -> torch.Tensor:
        """The fit `[sizes]` of the batch under each soft mask of `masks` `[sizes, n_nodes]`."""
        p = batch.prompts
        logits = run_masked(
            self.target, self.graph, p["clean"], batch.donor, masks, hard=False, last=p["last"]
        )
        sizes, b = logits.shape[:2]
        logp = logits.flatten(0, 1).float().log_softmax(-1)
        clean = batch.clean_logprobs
        if self.config.loss == "logit_diff":
            m = self.metrics[self.tasks[task]]
            masked = answer_metric(m, logp, *self._metric_args(batch, sizes)).view(sizes, b).mean(1)
            full = answer_metric(m, clean, *self._metric_args(batch)).mean()
            empty = answer_metric(m, batch.empty_logprobs, *self._metric_args(batch)).mean()
            gap = full - empty
            gap = gap if gap.abs() > 1e-6 else gap.new_tensor(1e-6)
            return 1 - (masked - empty) / gap
        target = clean.repeat(sizes, 1)
        kl = F.kl_div(logp, target, log_target=True, reduction="none").sum(-1).view(sizes, b).mean(1)
        if self.config.loss == "kl_share":  # the share of the empty circuit's KL: one scale per task
            lost = F.kl_div(batch.empty_logprobs.to(logp), clean, log_target=True, reduction="batchmean")
            return kl / lost.clamp_min(1e-6)
        return kl


def sample_sizes(
    masks: torch.Tensor, weights: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`k` circuit sizes drawn with replacement in proportion to their weights, each distinct size
    kept once with weight (times drawn) / k: the weighted sum over the drawn sizes is an unbiased
    estimate of the full weighted sum (the expected weight of size i is its weight), at the cost
    of at most `k` sizes' passes."""
    p = weights.detach().clamp_min(0)
    drawn = torch.multinomial(p / p.sum(), k, replacement=True, generator=generator)
    sizes, counts = torch.unique(drawn, return_counts=True)
    return masks[sizes], counts.to(weights) / k * p.sum()
