"""What a job's passes cost, per model: forward rows, backward rows, tokens, wall seconds and peak
memory, counted by a `Cost` object that a caller passes explicitly (never a global).

`Cost.watch(model)` puts two hooks on the model for the span of a `with` block: one at its
embedding (each forward pass: its prompt rows and token positions, padding included) and one at
its unembedding (a pass whose output requires grad builds an autograd graph, and every such pass
in dfa is backpropagated: its rows are counted as backward rows too). Memory is the peak of
`torch.cuda.max_memory_allocated` over the block on a GPU (reset when the block opens), else the
process's resident set size (psutil) sampled at the end of each forward pass and when the block
closes: the whole process, weights included (`peak_mb`); `added_mb` is how far that peak rose over
what the process held when the block opened: the block's own working memory, comparable between
methods that ran at different points of one process.

One number to compare costs: `rows`, the forward-equivalent rows `forward + 2 * backward` (a
backward pass costs about two forwards in arithmetic). A cost that was spent earlier (scores read
from a cache) travels as the JSON of the `Cost` that made it (`meta["cost"]`) and is `add`ed back,
so a method's cost is what producing its ranking costs, whether or not this run had to.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

BACKWARD_WEIGHT = 2  # a backward pass in forward passes' arithmetic


@dataclass
class ModelCost:
    """One model's share of a cost."""

    forward_rows: int = 0
    backward_rows: int = 0
    tokens: int = 0
    seconds: float = 0.0
    peak_mb: float = 0.0  # the largest of the blocks' peaks
    added_mb: float = 0.0  # the largest rise of a block's peak over what was held when it opened
    memory: str = ""  # what `peak_mb` measured: "cuda max allocated" or "rss"

    @property
    def rows(self) -> int:
        """Forward-equivalent rows: `forward + 2 * backward`."""
        return self.forward_rows + BACKWARD_WEIGHT * self.backward_rows

    def add(self, other: ModelCost) -> None:
        self.forward_rows += other.forward_rows
        self.backward_rows += other.backward_rows
        self.tokens += other.tokens
        self.seconds += other.seconds
        self.peak_mb = max(self.peak_mb, other.peak_mb)
        self.added_mb = max(self.added_mb, other.added_mb)
        self.memory = self.memory or other.memory

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        out["peak_mb"] = round(self.peak_mb, 1)
        out["added_mb"] = round(self.added_mb, 1)
        out["rows"] = self.rows
        return out


def model_label(model: Any) -> str:
    """A loaded model's name (`load_model` records it), else its class name."""
    info = getattr(model, "dfa_info", None)
    return info.spec.text if info is not None else type(model).__name__


def _module(model: Any, name: str) -> torch.nn.Module | None:
    """The model's part `name` (a bridge's `embed`, `unembed`), else the model itself when it is a
    module (its whole forward); None for a stand-in that is neither (its passes go uncounted)."""
    part = getattr(model, name, None)
    if isinstance(part, torch.nn.Module):
        return part
    return model if isinstance(model, torch.nn.Module) else None


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class Cost:
    """Per model name, what the passes watched (or added) cost."""

    def __init__(self, models: Mapping[str, ModelCost] | None = None):
        self.models: dict[str, ModelCost] = dict(models or {})

    def __repr__(self) -> str:
        return f"Cost({', '.join(f'{k}: {v.rows} rows' for k, v in self.models.items()) or 'nothing'})"

    def of(self, name: str) -> ModelCost:
        return self.models.setdefault(name, ModelCost())

    def rows(self, name: str | None = None) -> int:
        """Forward-equivalent rows of model `name` (every model's when None)."""
        if name is not None:
            return self.models[name].rows if name in self.models else 0
        return sum(m.rows for m in self.models.values())

    @contextmanager
    def watch(self, model: Any, name: str | None = None) -> Iterator[ModelCost]:
        """Count every forward (and backward) pass of `model` inside the block under `name`
        (default: the model's own name)."""
        share = ModelCost()
        params = list(model.parameters()) if hasattr(model, "parameters") else []
        cuda = any(p.is_cuda for p in params)
        device = next(p.device for p in params if p.is_cuda) if cuda else None
        share.memory = "cuda max allocated" if cuda else "rss"

        def held() -> float:
            return torch.cuda.memory_allocated(device) / 2**20 if cuda else _rss_mb()

        def sample() -> None:
            mb = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else _rss_mb()
            share.peak_mb = max(share.peak_mb, mb)
            share.added_mb = max(share.added_mb, mb - base)

        def on_forward(module: Any, args: tuple, kwargs: dict) -> None:
            tokens = args[0] if args else next(iter(kwargs.values()), None)
            if isinstance(tokens, torch.Tensor) and tokens.ndim >= 1:
                share.forward_rows += int(tokens.shape[0])
                share.tokens += int(tokens.shape[0] * (tokens.shape[1] if tokens.ndim > 1 else 1))

        def on_output(module: Any, args: tuple, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            if isinstance(out, torch.Tensor) and out.requires_grad and torch.is_grad_enabled():
                share.backward_rows += int(out.shape[0])
            sample()

        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        base = held()
        first, last = _module(model, "embed"), _module(model, "unembed")
        handles = [
            *([first.register_forward_pre_hook(on_forward, with_kwargs=True)] if first is not None else []),
            *([last.register_forward_hook(on_output)] if last is not None else []),
        ]
        start = time.perf_counter()
        try:
            yield share
        finally:
            for h in handles:
                h.remove()
            share.seconds = time.perf_counter() - start
            sample()
            self.of(name or model_label(model)).add(share)

    def add(self, other: Cost | Mapping[str, Any] | None) -> Cost:
        """Add another cost (a `Cost` or its JSON; None adds nothing) into this one; returns self."""
        if other is None:
            return self
        other = other if isinstance(other, Cost) else Cost.from_json(other)
        for name, share in other.models.items():
            self.of(name).add(share)
        return self

    def __add__(self, other: Cost) -> Cost:
        return Cost().add(self).add(other)

    def to_json(self) -> dict[str, dict[str, Any]]:
        return {name: share.to_json() for name, share in self.models.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Cost:
        known = {f.name for f in fields(ModelCost)}
        pick = lambda d: {k: v for k, v in d.items() if k in known}  # noqa: E731 (`rows` is derived)
        return cls({name: ModelCost(**pick(d)) for name, d in (data or {}).items()})


def ratio(rows: int | None, gold_rows: int | None) -> float | None:
    """`rows / gold_rows`, or None where either is unknown or gold's is 0."""
    if rows is None or not gold_rows:
        return None
    return rows / gold_rows


def pays_off_after(training_rows: int, per_task_rows: int, gold_rows: int) -> float | None:
    """After how many new tasks a trained map's total (training + per task) is below gold's per task
    (None: never, the map's per-task cost is not below gold's)."""
    saved = gold_rows - per_task_rows
    if saved <= 0:
        return None
    return training_rows / saved
