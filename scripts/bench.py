"""Time EAP-IG-inputs and a faithfulness curve against the plain passes they need; prints JSON.

`python scripts/bench.py` (architecture-only gpt2 on the CPU); see `--help`."""

import sys

from dfa.bench import main

if __name__ == "__main__":
    sys.exit(main())
