"""Node scores with their metadata, saved as safetensors or as EAP-IG/MIB `importances.json`.

The JSON form is the node-level graph file of EAP-IG and the MIB circuit track:
`{"cfg": {...}, "nodes": {"a0.h1": {"score": s, "in_graph": true}, ...}, "edges": {}}`,
with dfa's metadata under an extra `"dfa"` key. Such files written by EAP-IG/MIB load as well;
nodes they leave unscored (no score, or NaN) are kept in every circuit, as MIB does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dfa.core.errors import DfaError
from dfa.core.graph import NAME_RE, NodeGraph
from dfa.core.io import atomic_write, finite, write_json

SIGN = "score = metric(clean) - metric(clean with the node ablated): positive supports the clean answer"
SCORES_KEY = "scores"


class ScoresError(DfaError, ValueError):
    """A scores file that cannot be read, or scores that do not fit a model."""


@dataclass
class NodeScores:
    """One score per node (NaN: unscored, always kept in a circuit), in `names` order.

    `meta` says what the scores are: model, task, method, split, n_prompts, metric, ablation,
    ig_steps, seed, the sign convention, and the graph's shape (`cfg`)."""

    names: list[str]
    scores: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.scores = self.scores.detach().float().cpu().reshape(-1)
        if len(self.names) != self.scores.numel():
            raise ScoresError(f"{len(self.names)} node names but {self.scores.numel()} scores.")
        if len(set(self.names)) != len(self.names):
            raise ScoresError("Node names repeat in the scores.")

    def as_dict(self) -> dict[str, float]:
        return {n: float(s) for n, s in zip(self.names, self.scores.tolist(), strict=True)}

    def for_graph(self, graph: NodeGraph, what: str = "these scores") -> torch.Tensor:
        """The scores in `graph`'s node order. Nodes of the graph the file does not name are
        unscored (NaN); a name the graph does not have is an error naming both."""
        model = self.meta.get("model", "another model")
        cfg = self.meta.get("cfg") or {}
        shape = (cfg.get("n_layers"), cfg.get("n_heads"))
        if None not in shape and shape != (graph.n_layers, graph.n_heads):
            raise ScoresError(
                f"{what} are for a model of {shape[0]} layers x {shape[1]} heads ({model}); this model "
                f"has {graph.n_layers} layers x {graph.n_heads} heads. Score the model you evaluate."
            )
        extra = [n for n in self.names if n not in graph]
        if extra:
            raise ScoresError(
                f"{what} (from {model}) name nodes this model does not have: {', '.join(extra[:5])}"
                f"{' ...' if len(extra) > 5 else ''}; this model has {graph.n_layers} layers x "
                f"{graph.n_heads} heads. Score the model you evaluate."
            )
        out = torch.full((len(graph),), float("nan"))
        by_name = self.as_dict()
        for node in graph:
            if node.name in by_name:
                out[node.index] = by_name[node.name]
        return out

    def unscored(self, graph: NodeGraph, what: str = "these scores") -> list[str]:
        """The nodes of `graph` these scores leave unscored (NaN, or not named): kept in every
        circuit."""
        values = self.for_graph(graph, what)
        return [graph[i].name for i in torch.nonzero(torch.isnan(values)).flatten().tolist()]

    # --- saving ---------------------------------------------------------------------------------
    def save(self, path: str | Path, in_graph: Collection[str] | None = None) -> Path:
        """`.json`: EAP-IG/MIB importances (`in_graph` true for the nodes named in `in_graph`, for
        every node when not given); `.safetensors`: a float32 tensor and the metadata."""
        path = Path(path)
        if path.suffix == ".json":
            return write_json(path, self.to_importances(in_graph))
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            header = {"names": json.dumps(self.names), "meta": json.dumps(finite(self.meta))}
            return atomic_write(
                path, lambda tmp: save_file({SCORES_KEY: self.scores.contiguous()}, str(tmp), metadata=header)
            )
        raise ScoresError(f"Save scores as .json (importances) or .safetensors, not {path.name!r}.")

    def to_importances(self, in_graph: Collection[str] | None = None) -> dict[str, Any]:
        cfg = dict(self.meta.get("cfg", {}))
        chosen = set(self.names if in_graph is None else in_graph)
        unknown = chosen - set(self.names)
        if unknown:
            raise ScoresError(f"in_graph names nodes the scores do not have: {', '.join(sorted(unknown))}")
        nodes = {
            name: {"in_graph": name in chosen, "score": None if math.isnan(s) else s}
            for name, s in self.as_dict().items()
        }
        return {"cfg": cfg, "nodes": nodes, "edges": {}, "dfa": self.meta}

    @classmethod
    def load(cls, path: str | Path) -> NodeScores:
        path = Path(path)
        if not path.is_file():
            raise ScoresError(
                f"No scores file at {path}. Score the model's nodes on the task and save them there "
                "(.json importances or .safetensors)."
            )
        if path.suffix == ".safetensors":
            return cls._load_safetensors(path)
        if path.suffix == ".json":
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ScoresError(f"{path} is not valid JSON ({err}); was it cut short?") from None
            return cls.from_importances(data, str(path))
        raise ScoresError(f"{path.name}: scores files are .json (importances) or .safetensors.")

    @classmethod
    def _load_safetensors(cls, path: Path) -> NodeScores:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
                tensor = f.get_tensor(SCORES_KEY)
            names = json.loads(header["names"])
            meta = json.loads(header.get("meta", "{}"))
        except (SafetensorError, OSError, RuntimeError, KeyError, ValueError) as err:
            raise ScoresError(
                f"{path} is not a dfa scores file ({type(err).__name__}: {err}). It must hold a "
                f"{SCORES_KEY!r} tensor and node names in its metadata, as `dfa attribute` writes."
            ) from None
        return cls(names, tensor, meta)

    @classmethod
    def from_importances(cls, data: Any, source: str = "importances") -> NodeScores:
        """Node scores from an EAP-IG/MIB graph JSON (`nodes` of `{score, in_graph}`)."""
        nodes = data.get("nodes") if isinstance(data, dict) else None
        if not isinstance(nodes, dict) or not nodes:
            raise ScoresError(f"{source} has no 'nodes' table, so it is not an EAP-IG/MIB graph file.")
        names, values = [], []
        for name, entry in nodes.items():
            if name == "logits":
                continue
            score = entry.get("score") if isinstance(entry, dict) else None
            names.append(name)
            values.append(float("nan") if score is None else float(score))
        if all(math.isnan(v) for v in values):
            what = "edge scores only" if data.get("edges") else "no scores"
            raise ScoresError(
                f"{source} holds {what}: dfa ranks nodes, so it needs node scores (EAP-IG's "
                "node-level attribution, or `dfa attribute`)."
            )
        bad = [n for n in names if not NAME_RE.match(n)]
        if bad:
            raise ScoresError(
                f"{source}: {bad[0]!r} is not a node name (expected 'input', 'a{{layer}}.h{{head}}' "
                "or 'm{layer}')."
            )
        meta = dict(data.get("dfa") or {})
        meta.setdefault("cfg", data.get("cfg", {}))
        meta.setdefault("source", source)
        return cls(names, torch.tensor(values), meta)


def graph_cfg(model: Any, graph: NodeGraph) -> dict[str, Any]:
    """The graph shape EAP-IG/MIB files record."""
    cfg = getattr(model, "cfg", None)
    return {
        "n_layers": graph.n_layers,
        "n_heads": graph.n_heads,
        "parallel_attn_mlp": bool(getattr(cfg, "parallel_attn_mlp", False)),
        "d_model": int(getattr(cfg, "d_model", 0) or 0),
    }


def scores_graph(scores: NodeScores) -> NodeGraph:
    """The node graph of the model that `scores` were computed on, from the shape they record
    (`meta["cfg"]`), without loading the model."""
    cfg = scores.meta.get("cfg") or {}
    if "n_layers" not in cfg:
        raise DfaError(f"Scores of {scores.meta.get('model', '?')} carry no model shape (cfg).")
    return NodeGraph(int(cfg["n_layers"]), int(cfg["n_heads"]))
