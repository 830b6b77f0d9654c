"""`python scripts/bench.py ...` is `dfa bench ...`: Time attribution, a curve or a training step against the plain passes they need; prints JSON."""

import sys

from dfa.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
