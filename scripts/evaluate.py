"""`python scripts/evaluate.py ...` is `dfa evaluate ...`; see `--help`."""

import sys

from dfa.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
