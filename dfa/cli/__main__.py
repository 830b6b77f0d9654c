"""`python -m dfa.cli` is `dfa`."""

import sys

from dfa.cli import main

sys.exit(main())
