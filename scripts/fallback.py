"""The fallback a run of a config would choose for unseen tasks when nothing of its map carries
(`dfa.training.fallback`: depth or role, by their capped val CPR on the config's training tasks),
without training it: forward passes of the target on the val prompts only.

    python scripts/fallback.py --config configs/smollm2-to-gemma-3-270m.yaml --json results/fallback_real_pair.json
"""

import argparse
import sys
import time
from pathlib import Path

from dfa.config import make_config
from dfa.core.io import write_json
from dfa.store import ModelPool
from dfa.training.fallback import choose_fallback

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="a training config (path or shipped name)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    config = make_config(args.config, fallback="auto")
    start = time.perf_counter()
    fb = choose_fallback(config, ModelPool("cpu"), progress=True)
    took = round(time.perf_counter() - start, 1)
    out = {"config": args.config, "tasks": config.train_tasks, "wall_seconds": took, **fb}
    print(f"fallback: {fb['method']}: {fb['why']}")
    if args.json:
        write_json(args.json, out)
        print(f"wrote {args.json}")
    sys.exit(0)
