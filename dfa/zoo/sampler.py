"""The batches a toy model trains on (`TaskBatches`): row indices drawn group by group by weight,
the weights changeable while training runs (the callbacks of `dfa.zoo.callbacks` set them: the
role warm-up, the val checks' boost of lagging tasks); `dfa.zoo.train` builds the groups from the
task texts."""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class TaskBatches(Sampler[list[int]]):
    """`steps` batches of row indices, groups drawn by weight: each batch from one group, or
    (`mixed`) each row drawn on its own, `bucket` batches at a time sorted by length so that
    rows of similar length share a batch (the tasks' prompts differ in length by up to 5x)."""

    def __init__(
        self,
        groups: list[list[int]],
        weights: list[float],
        steps: int,
        batch_size: int,
        seed: int,
        mixed: bool = False,
        lengths: list[int] | None = None,
        bucket: int = 16,
    ):
        self.groups, self.weights = groups, torch.tensor(weights, dtype=torch.double)
        self.steps, self.batch_size, self.seed = steps, batch_size, seed
        self.mixed, self.lengths, self.bucket = mixed, lengths, bucket

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed)
        if self.mixed:
            yield from self._mixed(gen)
            return
        for _ in range(self.steps):  # drawn as it goes: the weights may change (ValChecks)
            group = self.groups[int(torch.multinomial(self.weights, 1, generator=gen))]
            picks = torch.randint(len(group), (self.batch_size,), generator=gen)
            yield [group[i] for i in picks.tolist()]

    def _mixed(self, gen: torch.Generator):
        assert self.lengths is not None
        done = 0
        while done < self.steps:
            n = min(self.bucket, self.steps - done)
            rows = []
            for g in torch.multinomial(
                self.weights, n * self.batch_size, replacement=True, generator=gen
            ).tolist():
                group = self.groups[g]
                rows.append(group[int(torch.randint(len(group), (1,), generator=gen))])
            rows.sort(key=lambda i: self.lengths[i])
            batches = [rows[k * self.batch_size : (k + 1) * self.batch_size] for k in range(n)]
            for k in torch.randperm(n, generator=gen).tolist():
                yield batches[k]
            done += n
