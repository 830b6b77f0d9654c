"""`python scripts/loto_table.py ...` is `dfa loto ...`: Leave-one-task-out table on the toy ladders -> results/loto_toy.json (resumable)."""

import sys

from dfa.cli import main

if __name__ == "__main__":
    sys.exit(main(["loto", *sys.argv[1:]]))
