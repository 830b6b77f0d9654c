"""Leave-one-task-out table on the toy ladders -> results/loto_toy.json; see `--help`."""

import sys

from dfa.transfer import loto_main

if __name__ == "__main__":
    sys.exit(loto_main())
