"""What a real model does per task under each first token (its tokenizer's BOS, the token dfa pins,
none), on val prompts: `dfa.experiments.real_models.first_token_rows`.

    python scripts/real_bos.py --model smollm2-135m-instruct-q4 --json results/real_bos.json
"""

import argparse
import sys
from pathlib import Path

from dfa.core.io import write_json
from dfa.experiments.real_models import FIRST_TOKEN_TASKS, first_token_rows

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct-q4")
    p.add_argument("--tasks", nargs="+", default=list(FIRST_TOKEN_TASKS))
    p.add_argument("--n", type=int, default=50, help="val prompts per task")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    out = first_token_rows(args.model, args.tasks, args.n, log=lambda s: print(s, flush=True))
    if args.json:
        write_json(args.json, out)
        print(f"wrote {args.json}")
    sys.exit(0)
