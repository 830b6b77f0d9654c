"""List the model ladders: `python scripts/models.py` is `dfa models`."""

import sys

from dfa.cli import main

if __name__ == "__main__":
    sys.exit(main(["models", *sys.argv[1:]]))
