"""Train one toy model with a changed recipe and score it: a wrapper of `dfa zoo trial`."""

import sys

from dfa.cli import main

sys.exit(main(["zoo", "trial", *sys.argv[1:]]))
