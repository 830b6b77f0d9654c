"""`python scripts/cross_scale.py ...` is `dfa cross-scale ...`: Circuits of a ladder discovered per model, aligned by roles, with their overlaps."""

import sys

from dfa.cli import main

if __name__ == "__main__":
    sys.exit(main(["cross-scale", *sys.argv[1:]]))
