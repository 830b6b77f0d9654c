"""Per-task usable pair counts for a tokenizer: `python scripts/tasks.py --model gpt2` is `dfa tasks ...`."""

import sys

from dfa.cli import main

if __name__ == "__main__":
    sys.exit(main(["tasks", *sys.argv[1:]]))
