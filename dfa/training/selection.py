"""Which map `MapTrainer` (`dfa.training.module`) keeps, as a mixin: the start, each epoch's map
and its blends with the start `start + a * (map - start)`, recorded after each validation and
selected by mean val CPR with faithfulness capped at 1 (the module docstring says why). The
mixin reads the module's `map`, `config`, `W0`, `_start_map`, `train_labels`, `holdout_labels`,
`trainer` and `log`, and keeps `start`, `history` and `epoch_params`.

`candidates` lists an epoch's candidates (its map and the blends of `TrainConfig.blends`), `select`
and `kept` choose, `set_blend` puts a blend in the map; the run applies the choice
(`dfa.training.run.keep_map`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from dfa.core.feature_map import FeatureMap


class Selection:
    def candidate_blends(self) -> list[float]:
        """The blends `a` scored at this validation: none at the start (every blend of the start
        is the start), nor with `keep: last`."""
        if self.config.keep == "last" or self._trainer is None:
            return []
        from lightning.pytorch.trainer.states import TrainerFn

        return list(self.config.blends) if self.trainer.state.fn == TrainerFn.FITTING else []

    def start_params(self) -> dict[str, torch.Tensor]:
        """The map's parameters at the start (W0 and b = 0; a features map's start parameters)."""
        if isinstance(self.map, FeatureMap):
            return {n: p.detach() for n, p in self._start_map.named_parameters()}
        return {"W": self.W0, "b": torch.zeros_like(self.map.b)}

    def set_blend(self, alpha: float, params: dict[str, torch.Tensor] | None = None) -> None:
        """Set the map to `start + alpha * (params - start)` (`params`: the map's own by default).
        The dense map's logits are linear in (W, b), so they are the same blend of the start's and
        the map's logits; a features map blends its kernel's parameters."""
        start = self.start_params()
        with torch.no_grad():
            for n, p in self.map.named_parameters():
                end = p.detach().clone() if params is None else params[n]
                s0 = start[n].to(p)
                p.copy_(s0 + alpha * (end.to(p) - s0))

    @contextmanager
    def blended(self, alpha: float, params: dict[str, torch.Tensor] | None = None) -> Iterator[None]:
        """The map set to `start + alpha * (params - start)` for the block's duration (`set_blend`;
        `params`: the map's own by default), then restored as it was."""
        saved = {n: p.detach().clone() for n, p in self.map.named_parameters()}
        self.set_blend(alpha, saved if params is None else params)
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in self.map.named_parameters():
                    p.copy_(saved[n])

    def select(
        self,
        per_task: dict[str, float],
        capped: dict[str, float] | None = None,
        blends: dict[float, dict[str, tuple[float, float]]] | None = None,
    ) -> None:
        """Record an epoch's (or the start's) val CPRs and log `val/select` (module docstring).
        `capped`: the same CPRs with faithfulness capped at 1, which selection reads (default:
        `per_task`); `blends`: alpha -> label -> (CPR, capped CPR)."""
        from lightning.pytorch.trainer.states import TrainerFn

        capped = per_task if capped is None else capped
        train = [t for t in self.train_labels if t in per_task]
        if self.trainer.state.fn != TrainerFn.FITTING:
            # The validation before training (`trainer.validate`) is the start: epoch 0.
            self.start = {t: capped[t] for t in train}
            self.history = []
            self.epoch_params = {}
            epoch = 0
        elif self.start is None:
            return  # fit without a start (tests that call fit alone): nothing to select against
        else:
            epoch = self.current_epoch + 1
            if epoch <= self.config.zero_shot_epochs:  # a zero-shot candidate (`dfa.training.zero_shot`)
                self.epoch_params[epoch] = {
                    n: p.detach().cpu().clone() for n, p in self.map.named_parameters()
                }
        held = [t for t in self.holdout_labels if t in per_task]  # reported, never selected on

        def entry(cpr: dict[str, float], cap: dict[str, float]) -> dict[str, Any]:
            return {
                "val_cpr": {t: cpr[t] for t in train},
                "select_cpr": {t: cap[t] for t in train},
                # No training task validated (`validate: holdout`): nothing to select on.
                "mean": sum(cap[t] for t in train) / len(train) if train else float("-inf"),
                "below_start": [t for t in train if cap[t] < self.start[t]],
                "zero_shot_val_cpr": {t: cpr[t] for t in held},
                "zero_shot_select_cpr": {t: cap[t] for t in held},
            }

        record = {"epoch": epoch, **entry(per_task, capped)}
        if blends:
            record["blends"] = [
                {"alpha": a, **entry({t: v[0] for t, v in b.items()}, {t: v[1] for t, v in b.items()})}
                for a, b in blends.items()
            ]
        self.history.append(record)
        score = max((c["mean"] for c in self.candidates([record])), default=float("-inf"))
        self.log("val/select", score)

    def candidates(self, history: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The maps selection may keep: each entry of `history` (alpha 1) and its blends, with
        `keep: best` only those where no training task is below its start."""
        out = []
        for h in self.history if history is None else history:
            for c in [{**h, "alpha": 1.0}, *({**b, "epoch": h["epoch"]} for b in h.get("blends", []))]:
                if not c["below_start"] or self.config.keep == "mean":
                    out.append(c)
        return out

    def kept(self) -> dict[str, Any]:
        """The candidate with the best mean val CPR (the start, then the earlier epoch and the
        blend nearer the start on ties): what is kept. Its `alpha` is 1 for an epoch's own map."""
        eligible = self.candidates()
        best = max(eligible, key=lambda h: (h["mean"], -h["epoch"], -h["alpha"]), default=None)
        return best if best is not None else {**self.history[0], "alpha": 1.0}

    def restore_start(self) -> None:
        """Put the map back where training started (W0, b = 0; a features map's start parameters)."""
        with torch.no_grad():
            if isinstance(self.map, FeatureMap):
                self.map.load_state_dict(self._start_map.state_dict())
                return
            self.map.W.copy_(self.W0)
            self.map.b.zero_()
