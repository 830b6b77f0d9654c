"""`python scripts/cross_scale.py --tasks ioi sva --models toy-gpt2-s toy-gpt2-m toy-gpt2-l`: circuits
discovered in each model, aligned by roles, their overlaps and readings; see `--help`."""

import sys

from dfa.cross_scale import main

if __name__ == "__main__":
    sys.exit(main())
