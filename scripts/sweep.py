"""`python scripts/sweep.py ...` is `dfa sweep ...`; see `--help`."""

import sys

from dfa.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", *sys.argv[1:]]))
