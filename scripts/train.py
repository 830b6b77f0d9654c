"""`python scripts/train.py ...` is `dfa train ...`; see `--help`."""

import sys

from dfa.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
