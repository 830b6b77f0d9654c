"""The callbacks of a toy model's training (`dfa.zoo.train`): the val checks (task and role
bars, boosts, the stop), the role warm-up, and the step reporter of `dfa zoo build`'s bars."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lightning as L
import torch

from dfa.core.errors import DfaError
from dfa.core.tasks import TASKS
from dfa.zoo.text import ROLE_GROUPS

if TYPE_CHECKING:
    from dfa.zoo.sampler import TaskBatches


class ValChecks(L.Callback):
    """The val checks of TrainConfig.check_every: score every task on its val split, boost the
    sampling weight of the tasks short of the bar and, within them, of the variation families
    short of the accuracy bar, and stop when no task is short. The boosts move rows between the
    tasks; the texts (the parts with no family) keep their share. The role checks boost the text
    that grows a role while the role is short (`TrainConfig.role_bars`), and training goes on
    until no role is short either. `log` receives each check (step, per-task accuracy and
    corrupt share, role scores, what was boosted) and the steps trained. `keys` are the
    sampler's parts, `(group, family)` as `TaskText.groups` gives them."""

    def __init__(self, tokenizer, seed: int, sampler: TaskBatches, keys: list, config, log: dict):
        self.tokenizer, self.seed, self.sampler, self.keys = tokenizer, seed, sampler, keys
        self.config, self.record = config, log
        self.base = sampler.weights.clone()
        self.is_task = torch.tensor([family is not None for _, family in keys])  # not a text
        self.batches: dict = {}
        log.setdefault("checks", [])

    def on_train_batch_end(self, trainer, pl_module, *_):
        from dfa.zoo.card import MIN_ACCURACY, score_batch, task_batch

        step = trainer.global_step
        self.record["steps"] = step
        if step % self.config.check_every or step <= self.config.role_warmup:
            return  # no checks while the role warm-up draws the role texts alone
        if not self.batches:
            self.batches = {
                task: task_batch(self.tokenizer, task, self.config.val_pairs, "val", self.seed)
                for task in TASKS
            }
        model = pl_module.model
        model.eval()
        scores = {
            task: score_batch(lambda ids: model(input_ids=ids).logits, data, batch)
            for task, (data, batch) in self.batches.items()
        }
        roles = self.role_scores(model)
        model.train()
        short = [
            t for t, sc in scores.items() if not sc.passes_by(self.config.margin, self.config.share_margin)
        ]
        short_roles = [r for r, bar in self.config.role_bars.items() if roles[r] < bar + self.config.margin]
        lagging = [
            (t, f)
            for t in short
            for f, acc in scores[t].family_accuracy.items()
            if acc < MIN_ACCURACY + self.config.margin
        ]
        self.record["checks"].append(
            {
                "step": step,
                "accuracy": {t: sc.accuracy for t, sc in scores.items()},
                "corrupt_share": {t: round(sc.corrupt_share, 4) for t, sc in scores.items()},
                "boosted": short,
                "boosted_families": [f"{t}/{f}" for t, f in lagging],
                "roles": {r: round(v, 4) for r, v in roles.items()},
                "boosted_roles": short_roles,
            }
        )
        if not short and not short_roles:
            trainer.should_stop = True
            return
        weights = self.base.clone()
        boosted_texts = {ROLE_GROUPS[r] for r in short_roles}
        for i, key in enumerate(self.keys):
            if key[0] in short or key[0] in boosted_texts:
                weights[i] *= self.config.boost ** (1 + (key in lagging))
        # The boosts share out the task rows; the texts keep their share of every batch.
        weights[self.is_task] *= self.base[self.is_task].sum() / weights[self.is_task].sum()
        self.sampler.weights = weights

    @torch.no_grad()
    def role_scores(self, model) -> dict[str, float]:
        """The best head's score per role of `role_bars`, on 32 repeated spans of 20 tokens drawn
        with another seed than the cards' census (so the census is not what training stops on)."""
        from dfa.core.roles import attention_role_scores, candidate_tokens, repeated_tokens

        if not self.config.role_bars:
            return {}
        if not hasattr(self, "probe"):
            gen = torch.Generator().manual_seed(1000 + self.seed)  # the census draws with seed 0
            cands = candidate_tokens(self.tokenizer, len(self.tokenizer))
            self.probe = repeated_tokens(cands, 32, 20, self.tokenizer.bos_token_id, gen)
        attentions = model(input_ids=self.probe, output_attentions=True).attentions
        best: dict[str, float] = {}
        for pattern in attentions:
            for role, s in attention_role_scores(pattern, 20, start=1).items():
                best[role] = max(best.get(role, 0.0), float(s.max()))
        return {r: best[r] for r in self.config.role_bars}


class RoleWarmup(L.Callback):
    """Draw only the role texts (TrainConfig.role_warmup_weights) for the first `steps` steps,
    then the sampler's own weights (which the val checks go on to adjust)."""

    def __init__(self, sampler: TaskBatches, keys: list, weights: dict[str, float], steps: int):
        self.sampler, self.steps = sampler, steps
        self.base = sampler.weights.clone()
        sampler.weights = torch.tensor(
            [weights.get(g, 0.0) if f is None else 0.0 for g, f in keys], dtype=torch.double
        )
        if not sampler.weights.sum() > 0:
            raise DfaError(
                f"The role warm-up draws {', '.join(sorted(weights))}, and none of them is in the "
                "training text: give them a sampling weight (for example --weight repeats=1)."
            )

    def on_train_batch_end(self, trainer, *_):
        if trainer.global_step == self.steps:
            self.sampler.weights = self.base.clone()


class StepReporter(L.Callback):
    """Sends `(label, steps done since the last report)` to a queue, for a progress bar kept by
    another process."""

    def __init__(self, queue, label: tuple[str, str], every: int = 20):
        self.queue, self.label, self.every = queue, label, every

    def on_train_batch_end(self, trainer, *_):
        if trainer.global_step % self.every == 0:
            self.queue.put((self.label, self.every))
