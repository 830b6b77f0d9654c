"""What a real model can do per task (results/real_models.json and .md): `python scripts/real_models.py
--model gemma-3-270m-q4` is `dfa capabilities --model gemma-3-270m-q4`."""

import sys

from dfa.cli import main

if __name__ == "__main__":
    sys.exit(main(["capabilities", *sys.argv[1:]]))
