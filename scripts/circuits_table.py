"""`python scripts/circuits_table.py ...` is `dfa circuits-table ...`: The circuits table on the toy ladders (exact and EAP-IG circuits against random), resumable."""

import sys

from dfa.cli import main

if __name__ == "__main__":
    sys.exit(main(["circuits-table", *sys.argv[1:]]))
