"""How the model commands write a parameter count for a reader (`124.4M`, `1.50B`): the ladders and
toy models of `dfa models` (`dfa.cli.models`) and the real models' rows (`dfa.cli.real`)."""

from __future__ import annotations


def human_count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"
