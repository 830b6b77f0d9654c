"""`python scripts/transfer.py ...` is `dfa transfer ...`; see `--help`."""

import sys

from dfa.cli import main

if __name__ == "__main__":
    sys.exit(main(["transfer", *sys.argv[1:]]))
