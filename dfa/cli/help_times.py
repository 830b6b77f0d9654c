"""How long `dfa --help` and every subcommand's `--help` take, each in a fresh interpreter (what a
user waits for, start-up included), and which heavy modules parsing loaded: `dfa bench
--help-times`. Parsing imports no torch, Lightning, transformers or matplotlib; the commands
import them when they run."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HEAVY = ("torch", "lightning", "transformers", "transformer_lens", "matplotlib")
_PROBE = (
    "import json, sys\n"
    "from dfa.cli import main\n"
    "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
    "print(json.dumps([m for m in {heavy!r} if m in sys.modules]), file=sys.stderr)\n"
)


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command line `parser` (`dfa.cli.build_parser()`) parses: `()` for `dfa` itself, then each
    (nested) subcommand."""
    out = [prefix]
    for action in parser._actions:  # argparse keeps its subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += commands(sub, (*prefix, name))
    return out


def help_times(parser: argparse.ArgumentParser, repeats: int = 1) -> list[dict[str, Any]]:
    """Per command of `parser` (the whole tree: `dfa.cli.build_parser()`), the wall time of
    `dfa ... --help` in a fresh interpreter (the best of `repeats`: what a user waits for, start-up
    included) and the heavy modules it loaded."""
    root = str(Path(__file__).resolve().parents[2])  # this checkout's dfa, not another install
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}
    rows = []
    for cmd in commands(parser):
        best, heavy, rc = float("inf"), None, None
        for _ in range(repeats):
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", _PROBE.format(heavy=HEAVY), *cmd, "--help"],
                capture_output=True,
                text=True,
                check=False,
                env=env,
            )
            best = min(best, time.perf_counter() - start)
            rc = done.returncode
            heavy = json.loads(done.stderr.strip().splitlines()[-1]) if done.stderr.strip() else None
        rows.append(
            {
                "command": " ".join(("dfa", *cmd, "--help")),
                "seconds": round(best, 3),
                "heavy": heavy,
                "rc": rc,
            }
        )
    return rows
