"""Hard and soft node masks as forward hooks: patching, mean or zero ablation, many masks per pass.

Semantics (the one intervention that attribution, evaluation and training all use): the model
runs on the clean prompt; node `j` outputs `m_j * out_j + (1 - m_j) * donor_j`, where `out_j` is
what the node computes from whatever reaches it and `donor_j` is its output on the paired corrupt
prompt (patching), its mean output (mean ablation) or 0 (zero ablation). `m_j = 1` keeps the
node, `m_j = 0` ablates it. Written this way (not `donor + m * (out - donor)`) a mask of 1
returns `out` bit for bit and a mask of 0 returns `donor` bit for bit.

Several masks run in one forward pass: the clean batch is repeated once per mask along the batch
axis, and each hook reshapes its activation to `[n_masks, batch, ...]`. A pass holds at most
`max_rows` prompt copies (default: one copy of the batch, the memory of one plain pass); more
masks run in several passes.

Only the answer position is unembedded: a hook at the unembedding's input (after the final norm)
cuts the residual stream to each row's `last` position, so the `[rows, vocab]` logits of one
position are computed instead of `[rows, pos, vocab]` (`answer_logits`). The final norm acts per
position, so the answer's logits are the same numbers.

Mean ablation refuses to run without the dataset's means, which `dfa.core.attribution.attribute` and
`dfa.core.evaluate.circuit_values` compute. `answer_logits` is the cut at `unembed.hook_in`;
`rows_per_pass` is the budget of `max_rows` prompt rows per pass. The metric on the answer logits is
`dfa.core.metrics.batch_metric`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float

from dfa.core.errors import DfaError
from dfa.core.graph import NodeGraph
from dfa.core.metrics import batch_metric, final_logits
from dfa.core.names import ABLATIONS, Ablation
from dfa.core.tasks.base import Metric

Hook = tuple[str, Callable[[torch.Tensor, Any], torch.Tensor]]

# Activations are cached per hook name as registered (TransformerLens 4 passes the canonical
# name in `hook.name`, e.g. `blocks.0.attn.o.hook_in` for `blocks.0.attn.hook_z`).
Cache = dict[str, torch.Tensor]

# The unembedding's input, after the final norm (TransformerBridge's name for every architecture).
UNEMBED_IN = "unembed.hook_in"


@dataclass(frozen=True)
class HookSlots:
    """The nodes one hook carries: their indices in the graph, and whether they are heads
    (axis 2 of `hook_z`) or a whole activation."""

    hook: str
    indices: torch.Tensor  # long [n_nodes_at_hook]
    heads: bool


def hook_slots(graph: NodeGraph) -> list[HookSlots]:
    """Per distinct hook (in node order) the graph nodes it carries."""
    out = []
    for hook in graph.hooks:
        nodes = [n for n in graph if n.hook == hook]
        out.append(HookSlots(hook, torch.tensor([n.index for n in nodes]), nodes[0].kind == "head"))
    return out


def check_ablation(ablation: str) -> Ablation:
    if ablation not in ABLATIONS:
        raise DfaError(f"Unknown ablation {ablation!r}; choose one of {', '.join(ABLATIONS)}.")
    return ablation  # type: ignore[return-value]


def model_device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # a parameter-free test model
        return torch.device("cpu")


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def answer_logits(
    model: Any, tokens: torch.Tensor, last: torch.Tensor, fwd_hooks: Sequence[Hook] = ()
) -> Float[torch.Tensor, "batch vocab"]:
    """The logits at each row's answer position `last` of one forward pass with `fwd_hooks`:
    the residual stream is cut to that position at the unembedding's input, so the vocabulary
    is unembedded once per row. A model without that hook gives every position's logits, and
    the answer's are read from them."""
    cut_done = []

    def cut(act: torch.Tensor, hook: Any) -> torch.Tensor:
        cut_done.append(True)
        rows = torch.arange(act.shape[0], device=act.device)
        return act[rows, last.to(act.device)][:, None]

    logits = model.run_with_hooks(tokens, fwd_hooks=[*fwd_hooks, (UNEMBED_IN, cut)])
    return logits[:, 0] if cut_done else final_logits(logits, last.to(logits.device))


def capture(
    model: Any, tokens: torch.Tensor, hooks: Sequence[str], last: torch.Tensor | None = None
) -> tuple[torch.Tensor, Cache]:
    """One forward pass without gradients; the logits (`[batch, vocab]` at the positions `last`
    when given, else `[batch, pos, vocab]`) and the activations at `hooks`."""
    cache: Cache = {}

    def keep(name: str):
        def fn(act: torch.Tensor, hook: Any) -> torch.Tensor:
            cache[name] = act.detach()
            return act

        return fn

    fwd_hooks = [(h, keep(h)) for h in hooks]
    # no_grad, not inference_mode: the cached activations are donors of masked passes that
    # training and EAP-IG differentiate, and autograd refuses to save inference tensors.
    with torch.no_grad():
        if last is None:
            logits = model.run_with_hooks(tokens, fwd_hooks=fwd_hooks)
        else:
            logits = answer_logits(model, tokens, last, fwd_hooks)
    return logits, cache


def real_positions(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """`[batch, pos]` True where a prompt has a token (right padding after `last` is False)."""
    width = batch["clean"].shape[1]
    return torch.arange(width, device=batch["last"].device)[None, :] <= batch["last"][:, None]


def mean_activations(model: Any, graph: NodeGraph, batches: Sequence[dict[str, torch.Tensor]]) -> Cache:
    """Each node's output averaged over every real token position of the clean prompts of
    `batches` (one vector per node, the same at every position): the donor of mean ablation."""
    sums: Cache = {}
    count = 0
    device = model_device(model)
    for batch in batches:
        batch = to_device(batch, device)
        _, acts = capture(model, batch["clean"], graph.hooks, batch["last"])
        real = real_positions(batch)
        count += int(real.sum())
        for hook, act in acts.items():
            total = act[real].double().sum(0)
            sums[hook] = sums[hook] + total if hook in sums else total
    if count == 0:
        raise DfaError("Mean ablation needs at least one prompt to average over.")
    return {hook: (s / count).float()[None, None] for hook, s in sums.items()}


def donor_activations(
    model: Any,
    graph: NodeGraph,
    batch: dict[str, torch.Tensor],
    ablation: Ablation,
    means: Cache | None = None,
) -> Cache:
    """What an ablated node outputs on this batch: its activations on the corrupt prompts
    (patching, one pass cached for every mask), `means` (mean ablation: the averages over the
    dataset's prompts: `mean_activations`, computed once by the caller over every batch), or zeros
    (zero ablation)."""
    ablation = check_ablation(ablation)
    if ablation == "patching":
        return capture(model, batch["corrupt"], graph.hooks, batch["last"])[1]
    if ablation == "mean":
        if means is None:
            raise DfaError(
                "Mean ablation needs the dataset's means (`mean_activations` over every batch); "
                "one batch's means would be another intervention."
            )
        return means
    return {}  # zero ablation: an empty cache means 0 at every hook


def repeat_batch(batch: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """Every tensor of a collated batch repeated `n` times along the batch axis."""
    return {k: v.repeat(n, *([1] * (v.ndim - 1))) for k, v in batch.items()}


def donor_at(donor: Cache, hook: str, like: torch.Tensor) -> torch.Tensor:
    """The donor activation at `hook` in `like`'s dtype (a zero scalar for zero ablation)."""
    if hook in donor:
        return donor[hook].to(like.dtype)
    return torch.zeros((), dtype=like.dtype, device=like.device)


def _mask_hook(slots: HookSlots, masks: torch.Tensor, donor: Cache, hard: bool):
    n_masks = masks.shape[0]
    m = masks[:, slots.indices.to(masks.device)]  # [n_masks, n_nodes_at_hook]
    skip = not masks.requires_grad and bool((m == 1).all())

    def fn(act: torch.Tensor, hook: Any) -> torch.Tensor:
        if skip:
            return act
        a = act.reshape(n_masks, act.shape[0] // n_masks, *act.shape[1:])
        # [n_masks, batch, pos, n_heads, d_head] for heads; [n_masks, batch, pos, d] otherwise.
        # A soft blend runs in float32 at least: a bf16 mask near 1 is quantised to steps of
        # 1/256, and the mask's gradient (a sum over batch, positions and features) would be
        # summed in bf16. The result returns to the model's dtype.
        wide = act.dtype if hard else torch.promote_types(act.dtype, torch.float32)
        shape = (n_masks, 1, 1, -1, 1) if slots.heads else (n_masks, 1, 1, 1)
        w, a = m.to(wide).view(*shape), a.to(wide)
        d = donor_at(donor, slots.hook, a)
        out = torch.where(w > 0.5, a, d) if hard else w * a + (1 - w) * d
        return out.to(act.dtype).reshape(act.shape)

    return fn


def mask_hooks(graph: NodeGraph, masks: torch.Tensor, donor: Cache, hard: bool = False) -> list[Hook]:
    """Forward hooks applying `masks` `[n_masks, n_nodes]` (graph order) to a batch repeated
    `n_masks` times. `hard`: a node is kept where its mask is above 0.5 and ablated elsewhere."""
    if masks.ndim != 2 or masks.shape[1] != len(graph):
        raise DfaError(f"Masks must be [n_masks, {len(graph)}] for this graph, got {list(masks.shape)}.")
    return [(s.hook, _mask_hook(s, masks, donor, hard)) for s in hook_slots(graph)]


def run_masked(
    model: Any,
    graph: NodeGraph,
    tokens: torch.Tensor,
    donor: Cache,
    masks: Float[torch.Tensor, "n_masks n_nodes"] | Float[torch.Tensor, " n_nodes"],
    hard: bool = False,
    last: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits `[n_masks, batch, pos, vocab]` (`[batch, pos, vocab]` for one 1-d mask) of the
    clean `tokens` under each mask; with `last` `[batch]`, the answer position's alone
    (`[n_masks, batch, vocab]`, `answer_logits`). Gradients flow to `masks` when they require them."""
    single = masks.ndim == 1
    masks = masks[None] if single else masks
    n = masks.shape[0]
    repeated = tokens.repeat(n, 1) if n > 1 else tokens
    hooks = mask_hooks(graph, masks, donor, hard)
    if last is None:
        logits = model.run_with_hooks(repeated, fwd_hooks=hooks)
    else:
        logits = answer_logits(model, repeated, last.repeat(n), hooks)
    logits = logits.view(n, tokens.shape[0], *logits.shape[1:])
    return logits[0] if single else logits


def rows_per_pass(max_rows: int | None, batch: int) -> int:
    """Copies of a `batch`-prompt batch one stacked pass may hold under `max_rows` prompt rows
    (None: one copy, the memory of a plain pass; at least one copy whatever the budget)."""
    if max_rows is None:
        return 1
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise DfaError(f"The `max_rows` setting must be a positive number of prompt rows, got {max_rows!r}.")
    return max(1, max_rows // batch)


def masked_metric(
    model: Any,
    graph: NodeGraph,
    batch: dict[str, torch.Tensor],
    donor: Cache,
    masks: Float[torch.Tensor, "n_masks n_nodes"],
    metric: Metric,
    hard: bool = True,
    max_rows: int | None = None,
) -> Float[torch.Tensor, "n_masks batch"]:
    """The task metric of every prompt under every mask, `max_rows` prompt copies per pass at
    most (`rows_per_pass`; default: one mask per pass)."""
    b = batch["clean"].shape[0]
    per_pass = rows_per_pass(max_rows, b)
    rows = []
    for start in range(0, masks.shape[0], per_pass):
        chunk = masks[start : start + per_pass]
        logits = run_masked(model, graph, batch["clean"], donor, chunk, hard, batch["last"])
        flat = logits.reshape(-1, logits.shape[-1])
        rows.append(batch_metric(metric, flat, repeat_batch(batch, chunk.shape[0])).view(chunk.shape[0], b))
    return torch.cat(rows)
