"""The methods table on the toy ladders: for each model and task, CPR (with its 95% interval) of
the `exact` and `eap-ig-inputs` circuits against random rankings on the same test prompts.

`python scripts/circuits_table.py [--models ...] [--tasks ...] [--out results/circuits_toy.json]`
writes JSON as it goes (finished cells are kept and not recomputed) and prints a Markdown table."""

import sys

from dfa.circuits import table_main

if __name__ == "__main__":
    sys.exit(table_main())
