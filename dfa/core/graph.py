"""A model's node set (`input`, heads `a{l}.h{h}`, MLPs `m{l}`): order, names, depths and hooks.

`NodeGraph.mapped` (`mapped_names`, `mapped_scores`) are the nodes a map ranks; `input` is not
mapped and is always kept (`with_input`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from dfa.core.errors import DfaError

NodeKind = Literal["input", "head", "mlp"]

INPUT = "input"
NAME_RE = re.compile(r"^(?:input|a(\d+)\.h(\d+)|m(\d+))$")


def head_hook(layer: int) -> str:
    """Per-head attention output before W_O, `[batch, pos, n_heads, d_head]`."""
    return f"blocks.{layer}.attn.hook_z"


def mlp_hook(layer: int) -> str:
    """MLP output added to the residual stream, `[batch, pos, d_model]`."""
    return f"blocks.{layer}.hook_mlp_out"


# The embeddings (token + learned position for GPT-2; token only for rotary Pythia) as they
# enter block 0: what every later node reads from the `input` node.
INPUT_HOOK = "blocks.0.hook_resid_pre"


@dataclass(frozen=True)
class Node:
    """One node. `layer` is -1 for `input`; `head` is set for heads only."""

    index: int
    name: str
    kind: NodeKind
    layer: int
    head: int | None
    depth: float
    hook: str

    @property
    def slice(self) -> tuple[Any, ...]:
        """Index into the hook's activation that holds this node's output: the head's slot
        on axis 2 of `hook_z`, the whole tensor otherwise."""
        if self.head is None:
            return (Ellipsis,)
        return (slice(None), slice(None), self.head)


def relative_depth(layer: int, n_layers: int) -> float:
    """Centre of the layer's share of [0, 1]: layer l of L covers [l/L, (l+1)/L].

    `input` sits at 0. Centres (not l/(L-1)) let layers of models of different depth be
    compared by overlap: gpt2's layer 0 covers exactly gpt2-large's layers 0-2."""
    if layer < 0:
        return 0.0
    return (layer + 0.5) / n_layers


class NodeGraph:
    """The nodes of a model in a fixed order: `input`, then per layer its heads `a{l}.h0..`,
    then its MLP `m{l}` (the EAP-IG / MIB order and names)."""

    def __init__(self, n_layers: int, n_heads: int, include_input: bool = True):
        if n_layers < 1 or n_heads < 1:
            raise DfaError(
                f"A node graph needs at least one layer and one head, got {n_layers=}, {n_heads=}."
            )
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.include_input = include_input
        nodes: list[Node] = []

        def add(name: str, kind: NodeKind, layer: int, head: int | None, hook: str) -> None:
            nodes.append(Node(len(nodes), name, kind, layer, head, relative_depth(layer, n_layers), hook))

        if include_input:
            add(INPUT, "input", -1, None, INPUT_HOOK)
        for layer in range(n_layers):
            for head in range(n_heads):
                add(f"a{layer}.h{head}", "head", layer, head, head_hook(layer))
            add(f"m{layer}", "mlp", layer, None, mlp_hook(layer))
        self.nodes: tuple[Node, ...] = tuple(nodes)
        self._by_name = {n.name: n for n in nodes}

    @classmethod
    def from_model(cls, model: Any, include_input: bool = True) -> NodeGraph:
        """The graph of a loaded `TransformerBridge` (anything with `cfg.n_layers/n_heads`)."""
        return cls(int(model.cfg.n_layers), int(model.cfg.n_heads), include_input)

    @classmethod
    def from_names(cls, names: list[str]) -> NodeGraph:
        """The graph whose heads and MLPs are exactly `names` (in graph order; `input` optional),
        e.g. a saved map's node list."""
        parsed = [NAME_RE.match(n) for n in names]
        if not names or not all(parsed):
            bad = [n for n, m in zip(names, parsed, strict=True) if not m][:3]
            raise DfaError(f"Not a node list: {bad or 'empty'}.")
        layers = [int(m.group(1) or m.group(3)) for m in parsed if m and m.group(0) != INPUT]
        heads = [int(m.group(2)) for m in parsed if m and m.group(2) is not None]
        graph = cls(max(layers) + 1, max(heads) + 1 if heads else 1, INPUT in names)
        if graph.names != list(names):
            raise DfaError(
                f"{len(names)} node names are not the nodes of a {graph.n_layers}-layer, "
                f"{graph.n_heads}-head model in graph order."
            )
        return graph

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, key: int | str) -> Node:
        if isinstance(key, int):
            return self.nodes[key]
        return self.node(key)

    def __repr__(self) -> str:
        return (
            f"NodeGraph(n_layers={self.n_layers}, n_heads={self.n_heads}, nodes={len(self)}: "
            f"{self.n_heads * self.n_layers} heads + {self.n_layers} MLPs"
            f"{' + input' if self.include_input else ''})"
        )

    def node(self, name: str) -> Node:
        try:
            return self._by_name[name]
        except KeyError:
            if NAME_RE.match(name):
                why = f"outside this model ({self.n_layers} layers x {self.n_heads} heads)"
            else:
                why = "not a node name (expected 'input', 'a{layer}.h{head}' or 'm{layer}')"
            raise DfaError(f"Node {name!r} is {why}.") from None

    def index(self, name: str) -> int:
        return self.node(name).index

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def heads(self) -> list[Node]:
        return [n for n in self.nodes if n.kind == "head"]

    @property
    def mlps(self) -> list[Node]:
        return [n for n in self.nodes if n.kind == "mlp"]

    @property
    def hooks(self) -> list[str]:
        """Distinct hook names in node order (one `hook_z` per layer serves all its heads)."""
        return list(dict.fromkeys(n.hook for n in self.nodes))

    @property
    def mapped(self) -> list[Node]:
        """The nodes an alignment map maps and circuits rank: heads and MLPs. `input` never is: it
        is kept in every circuit (ablating it zeroes faithfulness at every size)."""
        return [n for n in self.nodes if n.kind != INPUT]

    @property
    def mapped_index(self) -> list[int]:
        return [n.index for n in self.mapped]

    @property
    def mapped_names(self) -> list[str]:
        return [n.name for n in self.mapped]

    def mapped_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """Whole-graph scores -> the mapped nodes' scores (float32)."""
        return scores[self.mapped_index].float()

    def with_input(self, mapped: torch.Tensor) -> torch.Tensor:
        """Mapped-node scores -> whole-graph scores with `input` (when the graph has it) kept at 1."""
        if not self.include_input:
            return mapped
        return torch.cat([mapped.new_ones(1), mapped])

    def depths(self) -> torch.Tensor:
        return torch.tensor([n.depth for n in self.nodes])

    def layers(self) -> torch.Tensor:
        return torch.tensor([n.layer for n in self.nodes])

    def kind_mask(self, kind: NodeKind) -> torch.Tensor:
        return torch.tensor([n.kind == kind for n in self.nodes])

    def to_records(self) -> list[dict[str, Any]]:
        return [asdict(n) for n in self.nodes]
