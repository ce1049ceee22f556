#!/usr/bin/env python3
"""Two runs side by side: ``tff_prune.cli.compare`` (installed as ``tff-prune-compare``; ``--help`` lists the flags)."""

import sys

from tff_prune.cli.compare import main

if __name__ == "__main__":
    sys.exit(main())
