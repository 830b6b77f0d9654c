"""dfa: score a small model's circuit nodes and transfer them to a larger model with a learned alignment map."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dfa.core.errors import DfaError

if TYPE_CHECKING:
    from dfa.core.graph import Node, NodeGraph
    from dfa.core.models import ModelSpec, load_model, parse_spec

__all__ = ["DfaError", "ModelSpec", "Node", "NodeGraph", "load_model", "parse_spec"]
__version__ = "0.1.0"

# Loaded on first use (PEP 562), so `import dfa` (and `dfa --help`) does not import torch.
_LAZY = {
    "Node": "dfa.core.graph",
    "NodeGraph": "dfa.core.graph",
    **dict.fromkeys(("ModelSpec", "load_model", "parse_spec"), "dfa.core.models"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'dfa' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
