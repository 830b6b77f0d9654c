"""The val check on a budget: successive halving of the candidate maps on the task's val prompts,
forward passes of the target only, within a budget of target rows (a share of what gold costs on the
task at the run's `n_src`; `dfa.experiments.costs.predicted_gold_rows`).

Each round reads new val prompts (each prompt is read once: its corrupt pass as the donor, its clean
pass, and one row per distinct circuit) under every candidate still in the race, depth's draws and
the empty circuit and random rankings (the chosen circuit's control, no part of the decision), at
the circuit sizes that decide CPR (`check_sizes`: the largest trapezoid weights,
together `COVER` of the area a ranking can change; the full circuit is the clean pass). After each
round the candidates are ranked by the decision's own key (the lower bound of their paired capped-CPR
gain over depth on every prompt read so far, then the gain) and the better half goes on; once one
is left, the rounds read it, depth and random on more prompts until the budget or the split runs
out. The decision rule is the full check's (`val_check.choose`): the survivor if its lower bound
is above 0, else depth. A round's rows are planned before it runs: the budget is never overspent,
except by the first round's floor of `MIN_ROUND` prompts, which the record says.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from dfa.core.circuits import Prompts
from dfa.core.errors import DfaError
from dfa.core.evaluate import Curve, circuit_masks, circuit_values, cluster_weights, curve
from dfa.core.interventions import mean_activations
from dfa.core.names import FRACTIONS
from dfa.core.tasks import make_batches, make_dataset

COVER = 0.8  # the circuit sizes read cover this share of what a ranking can change in CPR
MIN_ROUND = 4  # prompts the first round reads, whatever the budget
VAL_FLOOR = 10  # fewer val prompts than this: no check (an interval on fewer says little)
BATCH = 50


def check_sizes(n_ranked: int, fractions=FRACTIONS, cover: float = COVER) -> list[float]:
    """The circuit fractions the budgeted check reads: by CPR trapezoid weight, largest first, until
    they hold `cover` of the weight of the sizes a ranking changes (`0 < k < n`); rising."""
    x = np.asarray(fractions, dtype=float)
    w = np.zeros_like(x)
    w[:-1] += np.diff(x) / 2
    w[1:] += np.diff(x) / 2
    ks = [min(n_ranked, int(f * n_ranked + 1e-9)) for f in x]
    open_ = [(float(w[i]), float(x[i])) for i in range(len(x)) if 0 < ks[i] < n_ranked]
    total, out, have = sum(v for v, _ in open_), [], 0.0
    for v, f in sorted(open_, reverse=True):
        if total and have / total >= cover:
            break
        out.append(f)
        have += v
    return sorted(out)


def val_prompts(target: Any, task: str, n: int, seed: int, floor: int = VAL_FLOOR) -> tuple[Prompts, str]:
    """Up to `n` of the task's val prompts; fewer when the split holds fewer (said in the note),
    an error under `floor`."""
    data = make_dataset(task, target.tokenizer, n, "val", seed, allow_fewer=True)
    if len(data) < floor:
        raise DfaError(
            f"Task {task!r}: its val split holds {len(data)} usable prompts for {data.tokenizer!r}, "
            f"under the val check's floor of {floor}: too few to read a map on. Give the task more rows, "
            "or pass --no-val-check (the zero-shot map, unchecked)."
        )
    note = (
        f"the val split holds {len(data)} usable prompts, fewer than the {n} asked for: the check reads "
        f"from those {len(data)} (floor {floor}), its budget in proportion"
        if len(data) < n
        else ""
    )
    return Prompts(data, make_batches(data.examples, target.tokenizer, BATCH)), note


class Race:
    """Per prompt, the metric under every circuit read so far (NaN where not read)."""

    def __init__(
        self, target, graph, prompts: Prompts, sizes: list[float], ablation: str, max_rows, seed: int
    ):
        self.target, self.graph, self.prompts, self.sizes = target, graph, prompts, sizes
        self.ablation, self.max_rows, self.seed = ablation, max_rows, seed
        self.n = len(prompts.data)
        self.values: dict[bytes, np.ndarray] = {}
        self.masks: dict[bytes, torch.Tensor] = {}
        self.full = np.full(self.n, np.nan)
        self.read = 0  # prompts read: the first `read` of the split
        self.rows = 0  # rows planned and run
        empty = torch.zeros(len(graph))
        if graph.include_input:
            empty[0] = 1
        self.empty = self._key(empty)
        self.means = (
            mean_activations(target, graph, prompts.batches) if ablation == "mean" else None
        )  # mean ablation's donor: the means over every val prompt (its passes count too)
        if self.means is not None:
            self.rows += self.n

    def _key(self, mask: torch.Tensor) -> bytes:
        key = mask.to(torch.uint8).numpy().tobytes()
        self.masks.setdefault(key, mask)
        return key

    def keys(self, score_list: list[torch.Tensor]) -> list[bytes]:
        """The circuits of a ranking (or its draws) at the check's sizes, in draw x size order."""
        out = []
        for s in score_list:
            masks, _ = circuit_masks(s, self.graph, self.sizes)
            out += [self._key(m) for m in masks]
        return out

    def per_prompt(self, keys: set[bytes]) -> int:
        """Rows one prompt costs under `keys`: the donor and clean passes, one per distinct circuit."""
        return 2 + len(keys | {self.empty})

    def run(self, p: int, keys: set[bytes]) -> None:
        """Read the next `p` prompts under `keys` (and the empty circuit)."""
        keys = sorted(keys | {self.empty})
        idx = range(self.read, self.read + p)
        batches = make_batches([self.prompts.data.examples[i] for i in idx], self.target.tokenizer, BATCH)
        values, full = circuit_values(
            self.target, self.graph, batches, self.prompts.data.metric,
            torch.stack([self.masks[k] for k in keys]), self.ablation, self.means,  # type: ignore[arg-type]
            max_rows=self.max_rows,
        )  # fmt: skip
        for k, v in zip(keys, values, strict=True):
            self.values.setdefault(k, np.full(self.n, np.nan))[self.read : self.read + p] = v
        self.full[self.read : self.read + p] = full
        self.read += p
        self.rows += p * (2 + len(keys))

    def curve(
        self, label: str, keys: list[bytes], upto: tuple[int, int] | None = None, n_boot: int = 1000
    ) -> Curve:
        """The capped-CPR-ready curve of a ranking's `keys` on prompts `upto` (default: all read),
        over the check's sizes and the full circuit; bootstrap over the distinct clean prompts with
        the check's one seed (the same prompts give the same interval)."""
        lo, hi = upto or (0, self.read)
        d, nf = len(keys) // len(self.sizes), len(self.sizes)
        m = np.stack([self.values[k][lo:hi] for k in keys]).reshape(d, nf, hi - lo)
        full, empty = self.full[lo:hi], self.values[self.empty][lo:hi]
        m = np.concatenate([m, np.broadcast_to(full, (d, 1, hi - lo))], axis=1)  # the full circuit
        texts = self.prompts.texts[lo:hi]
        counts = cluster_weights(texts, n_boot, np.random.default_rng(self.seed)) if n_boot else None
        return curve(label, m, full, empty, [*self.sizes, 1.0], counts)


def race(
    rc: Race,
    candidates: dict[str, list[torch.Tensor]],
    depth: list[torch.Tensor],
    random: list[torch.Tensor],
    budget: int,
    gain,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Successive halving of `candidates` against `depth` within `budget` rows (module docstring);
    `gain(curve_a, curve_b)` the paired capped gain. Returns the survivors' gains, every dropped
    candidate's at its drop, and the rounds."""
    keys = {name: rc.keys(s) for name, s in candidates.items()}
    dkeys, rkeys = rc.keys(depth), rc.keys(random)
    alive = list(candidates)
    rounds: list[dict[str, Any]] = []
    dropped: dict[str, dict[str, Any]] = {}
    gains: dict[str, dict[str, Any]] = {}
    left = math.ceil(math.log2(max(1, len(alive)))) + 1  # rounds planned: halvings, then one more
    while rc.read < rc.n:
        want = {k for a in alive for k in keys[a]} | set(dkeys) | set(rkeys)
        each = rc.per_prompt(want)
        remaining = budget - rc.rows
        p = (remaining // left if left > 1 else remaining) // each
        p = min(rc.n - rc.read, p if p > 0 or remaining < each else 1)
        if not rounds:
            p = max(p, min(MIN_ROUND, rc.n))  # the first round's floor
        if p < 1:
            break
        rc.run(p, want)
        depth_curve = rc.curve("depth", dkeys, n_boot=n_boot)
        gains = {a: gain(rc.curve(a, keys[a], n_boot=n_boot), depth_curve) for a in alive}
        gains = {a: g | {"n_prompts": rc.read} for a, g in gains.items()}
        rounds.append({"prompts": p, "candidates": len(alive), "rows": p * each})
        if len(alive) > 1:
            key = lambda a: (gains[a]["ci"][0], gains[a]["diff"], -alive.index(a))  # noqa: E731 (choose's)
            keep = sorted(alive, key=key, reverse=True)[: math.ceil(len(alive) / 2)]
            gone = [a for a in alive if a not in keep]
            dropped.update({a: gains[a] | {"dropped_after_round": len(rounds)} for a in gone})
            alive = [a for a in alive if a in keep]
        left = max(1, left - 1)
    gains = {a: g for a, g in gains.items() if a in alive}
    return {"alive": alive, "gains": gains, "dropped": dropped, "rounds": rounds}


def enough_for(usable: dict[str, int]) -> str:
    """What a task file's usable pairs per split are enough for, at the default sizes: a run's task,
    `transfer`'s val check (down to its floor), a tight test interval."""
    from dfa.config import TrainConfig
    from dfa.report.tables import FEW_PROMPTS

    c = TrainConfig()
    train, val, test = usable["train"], usable["val"], usable["test"]
    need = max(c.n_src, c.n_train)
    run = (
        "yes" if train >= need else f"with --n-src and --n-train at most {train} (default {c.n_src}, {c.n_train})"
    )
    check = (
        f"all {c.n_val} it reads"
        if val >= c.n_val
        else f"read whole (under its {c.n_val}, over its floor of {VAL_FLOOR})"
        if val >= VAL_FLOOR
        else f"NO: under its floor of {VAL_FLOOR} (transfer --no-val-check)"
    )
    tight = "yes" if test >= FEW_PROMPTS else f"no (under {FEW_PROMPTS} pairs)"
    return (
        f"training ({train} train pairs): {run}; transfer's val check ({val} val pairs): {check}; "
        f"a tight test interval ({test} test pairs): {tight}"
    )
