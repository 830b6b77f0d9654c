"""Load a model and print its node graph: `python scripts/nodes.py --model gpt2:random --check` is `dfa nodes ...`."""

import sys

from dfa.cli import main

if __name__ == "__main__":
    sys.exit(main(["nodes", *sys.argv[1:]]))
