"""dfa: score a small model's circuit nodes and transfer them to a larger model with a learned alignment map."""

from dfa.core.errors import DfaError
from dfa.core.graph import Node, NodeGraph
from dfa.core.models import ModelSpec, load_model, parse_spec

__all__ = ["DfaError", "ModelSpec", "Node", "NodeGraph", "load_model", "parse_spec"]
__version__ = "0.1.0"
